"""pyiqa's metrics without pyiqa: the metric cards (pinned files, licences, directions), the ``pyiqa:`` namespace,
and the verified fetch of a card's files into the folders pyiqa, torchvision, CLIP and timm read, against a local
server on 127.0.0.1 (wrong digest, cut-off transfer, wrong name prefix: refused, nothing left; offline: every
missing file named with where it goes)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

from cirbench.cli import main
from cirbench.errors import CheckpointError, ConfigError, FetchError, WeightsMissing
from cirbench.eval.protocols import load_protocol
from cirbench.metrics import REGISTRY, get_metric, iqa
from cirbench.registry import is_import_path

PYIQA_IMPORTABLE = importlib.util.find_spec("pyiqa") is not None
CURATED = ("lpips", "dists", "musiq", "maniqa", "clipiqa", "niqe")


def test_packaged_cards_pin_their_files():
    cards = {n: iqa.load_card(p) for n, p in iqa.list_cards().items()}
    assert set(CURATED) <= set(cards)
    for name, card in cards.items():
        m = get_metric(name, allow_code=False)  # registered: a protocol may name it
        assert (m.name, m.higher_is_better, m.reference) == (card.name, card.higher_is_better, card.reference)
        assert m.spaces == iqa.IQA_SPACES and m.batched and m.device == "any" and m.fn is None
        assert card.files, f"{name}: every curated metric loads at least one file"
        for f in card.files:
            assert f.license, f"{name}: {f.name} names no licence"
            if "chaofengc/IQA-PyTorch-Weights" in f.url:
                assert f.license.startswith("cc-by-nc-sa-4.0"), f.name
            if f.folder == "checkpoints":  # torchvision's names carry their sha256's prefix, always checked
                assert f.hash_prefix and f"-{f.hash_prefix}." in f.name, f.name
            if f.sha256:
                assert not f.hash_prefix or f.sha256.startswith(f.hash_prefix)
            else:  # the model-card rule: fetched anyway, digest printed and recorded; the card says so
                assert "run.json" in f.note, f"{name}: {f.name} has no digest and its note does not say so"
    lower = {n for n, c in cards.items() if not c.higher_is_better}
    assert lower >= {"lpips", "dists", "niqe"} and not lower & {"musiq", "maniqa", "clipiqa"}


def test_pyiqa_prefix_is_a_namespace_not_an_import_path():
    assert is_import_path("pyiqa:lpips") and REGISTRY.namespace_of("pyiqa:lpips") == ("pyiqa", "lpips")
    m = get_metric("pyiqa:lpips", allow_code=False, where="protocols/x.toml metrics")
    assert m is get_metric("lpips") and m.name == "lpips"  # the record key is the plain name
    assert iqa.card_of("pyiqa:lpips").name == "lpips"
    with pytest.raises(ConfigError, match="asked for twice"):
        from cirbench.metrics import resolve_metrics

        resolve_metrics(["lpips", "pyiqa:lpips"])


@pytest.mark.skipif(PYIQA_IMPORTABLE, reason="pyiqa is installed here: the error for its absence cannot be seen")
def test_uncurated_name_without_pyiqa_says_how_to_set_it_up():
    with pytest.raises(ConfigError) as err:
        get_metric("pyiqa:gmsd")
    msg = str(err.value)
    assert "\n" not in msg and "cannot be imported" in msg and "nox -s iqa" in msg and "cirbench[iqa]" in msg


def test_perceptual_protocol_names_registered_metrics():
    p = load_protocol("perceptual")
    assert p.metrics == ("psnr", "ssim", "lpips", "dists", "musiq", "maniqa", "clipiqa")
    assert {g.qf for _, g in p.jobs} == {5, 10, 20} and set(p.datasets) == {"live1", "bsds500", "div2k"}


BASE = """pyiqa = "gmsd"\nlabel = "X"\nhigher_is_better = false\nreference = "full"\n"""


@pytest.mark.parametrize("files, match", [
    ('name = "a.pth"\nurl = "ftp://x/a.pth"\nfolder = "pyiqa"', "http"),
    ('name = "a.pth"\nurl = "https://x/a.pth"\nfolder = "pyiqa"\nsha256 = "ABC"', "64 lower-case hex"),
    ('name = "a-1234abcd.pth"\nurl = "https://x/a.pth"\nfolder = "checkpoints"\nhash_prefix = "deadbeef"',
     "hash_prefix must be hex digits the file name carries"),
    ('name = "a-deadbeef.pth"\nurl = "https://x/a.pth"\nfolder = "checkpoints"\nhash_prefix = "deadbeef"\n'
     f'sha256 = "{"0" * 64}"', "does not start with hash_prefix"),
    ('name = "m.safetensors"\nurl = "https://x/m"\nfolder = "hf"\nrepo = "a/b"', "needs both"),
    ('name = "../a.pth"\nurl = "https://x/a.pth"\nfolder = "pyiqa"', "plain file name"),
    ('name = "a.pth"\nurl = "https://x/a.pth"\nfolder = "elsewhere"', "folder"),
    ('name = "a.pth"\nurl = "https://x/a.pth"\nfolder = "pyiqa"\nmd5 = "x"', "unknown key"),
])
def test_card_validation(tmp_path, files, match):
    p = tmp_path / "bad.toml"
    p.write_text(BASE + "\n[[files]]\n" + files + "\n")
    with pytest.raises(ConfigError, match=match) as err:
        iqa.load_card(p)
    assert str(p) in str(err.value)


# ------------------------------------------------------------------------------------ the fetch, on 127.0.0.1

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CIRBENCH_CACHE", str(root))
    monkeypatch.delenv("CIRBENCH_OFFLINE", raising=False)  # the conftest's; these fetch from 127.0.0.1
    monkeypatch.setattr(REGISTRY, "entries", dict(REGISTRY.entries))
    monkeypatch.setattr(iqa, "_CARDS", dict(iqa._CARDS))
    monkeypatch.setattr(iqa, "_BY_PYIQA", dict(iqa._BY_PYIQA))
    return root


def _served(server, name: str, data: bytes) -> tuple[str, str]:
    (server.root / name).write_bytes(data)
    return f"{server.url}/{name}", hashlib.sha256(data).hexdigest()


def _card(tmp_path, entries: list[str], name: str = "standin") -> iqa.MetricCard:
    p = tmp_path / "cards" / f"{name}.toml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(BASE + "".join(f"\n[[files]]\n{e}\nlicense = \"test\"\n" for e in entries))
    card = iqa.load_card(p)
    iqa.register_card(card)
    return card


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_fetch_places_every_file_where_its_consumer_looks(tmp_path, cache, http_server, capsys):
    a = b"pyiqa's own weights"
    b = b"a torchvision backbone"
    prefix = hashlib.sha256(b).hexdigest()[:8]
    url_a, sha_a = _served(http_server, "own.pth", a)
    url_b, _ = _served(http_server, f"net-{prefix}.pth", b)
    url_c, sha_c = _served(http_server, "RN50.pt", b"clip")
    url_d, _ = _served(http_server, "model.safetensors", b"a vit")
    _card(tmp_path, [
        f'name = "own.pth"\nurl = "{url_a}"\nfolder = "pyiqa"\nsha256 = "{sha_a}"\nbytes = {len(a)}',
        f'name = "net-{prefix}.pth"\nurl = "{url_b}"\nfolder = "checkpoints"\nhash_prefix = "{prefix}"',
        f'name = "RN50.pt"\nurl = "{url_c}"\nfolder = "clip"\nsha256 = "{sha_c}"',
        f'name = "model.safetensors"\nurl = "{url_d}"\nfolder = "hf"\nrepo = "timm/vit_x"\nrevision = "{REVISION}"',
    ])
    assert main(["metrics", "fetch", "standin"]) == 0
    snap = f"hf/hub/models--timm--vit_x/snapshots/{REVISION}/model.safetensors"
    assert _files(cache) == sorted(["torch/hub/pyiqa/own.pth", f"torch/hub/checkpoints/net-{prefix}.pth",
                                    "torch/hub/clip/RN50.pt", snap, "hf/hub/models--timm--vit_x/refs/main"])
    assert (cache / "hf/hub/models--timm--vit_x/refs/main").read_text() == REVISION
    err = capsys.readouterr().err
    assert "matches the card" in err and "no full digest on the card: recorded in run.json" in err
    assert main(["metrics", "fetch", "standin"]) == 0  # a second fetch: all there, each checked
    assert capsys.readouterr().err.count("already there") == 4
    digests = iqa.verify(iqa.card_of("standin"))
    assert digests["own.pth"] == sha_a and digests[f"net-{prefix}.pth"].startswith(prefix)


@pytest.mark.parametrize("case", ["digest", "truncated", "prefix", "size"])
def test_a_refused_fetch_leaves_nothing(tmp_path, cache, http_server, case):
    data = b"x" * 50_000
    url, sha = _served(http_server, "w.pth", data)
    entry = {
        "digest": f'name = "w.pth"\nurl = "{url}"\nfolder = "pyiqa"\nsha256 = "{"0" * 64}"',
        "truncated": f'name = "w.pth"\nurl = "{http_server.url}/truncated/w.pth"\nfolder = "pyiqa"\nsha256 = "{sha}"',
        "prefix": f'name = "w-deadbeef.pth"\nurl = "{url}"\nfolder = "checkpoints"\nhash_prefix = "deadbeef"',
        "size": f'name = "w.pth"\nurl = "{url}"\nfolder = "pyiqa"\nbytes = 49999',
    }[case]
    card = _card(tmp_path, [entry])
    with pytest.raises(FetchError) as err:
        iqa.fetch(card)
    assert "nothing was kept" in str(err.value) and "\n" not in str(err.value)
    assert not cache.exists() or list(cache.rglob("*")) == [], "a refused fetch left something in the cache"


def test_offline_names_each_missing_file_and_where(tmp_path, cache, monkeypatch):
    card = _card(tmp_path, ['name = "a.pth"\nurl = "https://example.invalid/a.pth"\nfolder = "pyiqa"',
                            'name = "b-abcdef12.pth"\nurl = "https://example.invalid/b-abcdef12.pth"\n'
                            'folder = "checkpoints"\nhash_prefix = "abcdef12"'])
    monkeypatch.setenv("CIRBENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissing) as err:
        iqa.verify(card)
    msg = str(err.value)
    assert "2 file(s) not found" in msg and "--offline" in msg
    for f in card.files:
        assert f"{f.url} -> {iqa.destination(f)}" in msg
    assert iqa.destination(card.files[1]) == cache / "torch" / "hub" / "checkpoints" / "b-abcdef12.pth"


def test_unreachable_host_is_one_line(tmp_path, cache, closed_url):
    card = _card(tmp_path, [f'name = "a.pth"\nurl = "{closed_url}/a.pth"\nfolder = "pyiqa"'])
    with pytest.raises(WeightsMissing, match=r"could not reach 127\.0\.0\.1:\d+ \(connection refused\).*by hand"):
        iqa.fetch(card)
    assert _files(cache) == []


def test_a_changed_file_in_place_is_refused_before_use(tmp_path, cache, http_server):
    url, sha = _served(http_server, "w.pth", b"good")
    card = _card(tmp_path, [f'name = "w.pth"\nurl = "{url}"\nfolder = "pyiqa"\nsha256 = "{sha}"'])
    iqa.fetch(card)
    iqa.destination(card.files[0]).write_bytes(b"evil")  # replaced by hand, or corrupted on disk
    with pytest.raises(CheckpointError, match=re.escape(str(iqa.destination(card.files[0]))) + ".*the card pins"):
        iqa.verify(card)  # what a run calls before pyiqa builds the network (test_iqa.py: the whole path)


def test_a_card_cannot_take_a_builtin_name(tmp_path, cache):
    p = tmp_path / "psnr.toml"
    p.write_text(BASE)
    with pytest.raises(ConfigError, match="already registered"):
        iqa.register_card(iqa.load_card(p))
