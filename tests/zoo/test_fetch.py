"""Weights fetching against a local HTTP server: cache, hash check, truncated transfers, offline mode."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench.archs import FBCNN
from cirbench.cli import main
from cirbench.errors import FetchError, WeightsMissing
from cirbench.files import sha256_file
from cirbench.zoo import create_model, load_card
from cirbench.zoo.checkpoints import save_state_dict
from cirbench.zoo.fetch import fetch_card, missing_files

TINY = dict(nc=[8, 8, 8, 8], nb=1)


@pytest.fixture
def env(tmp_path, monkeypatch, http_server):
    """Cards in their own folder, an empty cache, downloads allowed, and a served weights file."""
    monkeypatch.setenv("CIRBENCH_MODELS", str(tmp_path / "cards"))
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CIRBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("CIRBENCH_WEIGHTS", raising=False)
    (tmp_path / "cards").mkdir()
    torch.manual_seed(0)
    save_state_dict(FBCNN(**TINY).state_dict(), http_server.root / "tiny.safetensors")
    return tmp_path


def card(folder, name: str, url: str, sha256: str = "", size: int = 0, path: str = "") -> str:
    kwargs = "\n".join(f"{k} = {json.dumps(v)}" for k, v in TINY.items())
    weights = f'url = "{url}"\n' + (f'sha256 = "{sha256}"\n' if sha256 else "") + (f"bytes = {size}\n" if size else "")
    weights += f'path = "{path}"\n' if path else ""
    (folder / "cards" / f"{name}.toml").write_text(
        f'name = "{name}"\narch = "fbcnn"\npad_multiple = 8\npad_mode = "none"\ntakes_qf = true\n'
        f"[kwargs]\n{kwargs}\n[weights]\n{weights}")
    return name


def _cache_files(root):
    """Files in the cache, but the record of digests already checked (verified.json)."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "cache").rglob("*")
                  if p.is_file() and p.name != "verified.json")


def test_fetch_puts_the_verified_file_in_the_cache(env, http_server, capsys):
    served = http_server.root / "tiny.safetensors"
    digest = sha256_file(served)
    card(env, "tiny", f"{http_server.url}/tiny.safetensors", digest, served.stat().st_size)
    assert main(["models", "fetch", "tiny"]) == 0
    assert _cache_files(env) == ["cache/weights/tiny.safetensors"]  # under its URL's file name, nothing else
    assert sha256_file(env / "cache" / "weights" / "tiny.safetensors") == digest
    assert "matches the card" in capsys.readouterr().err
    assert main(["models", "fetch", "tiny"]) == 0 and "present" in capsys.readouterr().err


def test_run_fetches_on_first_use_and_records_the_digest(env, http_server, tmp_path):
    served = http_server.root / "tiny.safetensors"
    card(env, "tiny", f"{http_server.url}/tiny.safetensors")  # no digest on the card
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    assert main(["run", "--models", "tiny", "--datasets", f"folder:{folder}", "--qf", "10",
                 "--out", str(tmp_path / "run")]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["models"]["tiny"]["weights_sha256"] == [sha256_file(served)]


def test_wrong_digest_is_refused_and_nothing_is_left(env, http_server):
    card(env, "tiny", f"{http_server.url}/tiny.safetensors", "0" * 64)
    with pytest.raises(FetchError) as err:
        fetch_card(load_card("tiny"))
    msg = str(err.value)
    assert "expected " + "0" * 64 in msg and sha256_file(http_server.root / "tiny.safetensors") in msg
    assert "\n" not in msg and _cache_files(env) == []


def test_wrong_size_is_refused(env, http_server):
    served = http_server.root / "tiny.safetensors"
    card(env, "tiny", f"{http_server.url}/tiny.safetensors", sha256_file(served), served.stat().st_size + 1)
    with pytest.raises(FetchError, match="bytes, expected"):
        fetch_card(load_card("tiny"))
    assert _cache_files(env) == []


def test_truncated_transfer_leaves_nothing(env, http_server):
    served = http_server.root / "tiny.safetensors"
    card(env, "tiny", f"{http_server.url}/truncated/tiny.safetensors", sha256_file(served))
    with pytest.raises(FetchError, match="download failed"):
        fetch_card(load_card("tiny"))
    assert _cache_files(env) == []


def test_missing_url_404(env, http_server):
    card(env, "tiny", f"{http_server.url}/absent.safetensors", "1" * 64)
    assert main(["models", "fetch", "tiny"]) == 2
    assert _cache_files(env) == []


def test_an_unreachable_host_is_one_line_with_the_manual_way(env, closed_url, capsys):
    card(env, "tiny", f"{closed_url}/tiny.safetensors")
    assert main(["models", "fetch", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    host = closed_url.removeprefix("http://")
    assert err == (f"cirbench: error: model 'tiny': could not reach {host} (connection refused); nothing was kept; "
                   f"check the network and retry, or put them in place by hand: {closed_url}/tiny.safetensors -> "
                   f"{env / 'cache' / 'weights' / 'tiny.safetensors'} (or pass --weights PATH)")
    assert _cache_files(env) == []


def test_offline_says_where_to_put_the_file(env, http_server, monkeypatch, capsys):
    card(env, "tiny", f"{http_server.url}/tiny.safetensors")
    monkeypatch.setenv("CIRBENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissing, match="downloads are off") as err:
        create_model("tiny")
    assert str(env / "cache" / "weights" / "tiny.safetensors") in str(err.value)
    assert _cache_files(env) == []
    assert main(["run", "--offline", "--models", "tiny", "--datasets", "samples", "--qf", "10"]) == 2
    assert "put them in place by hand" in capsys.readouterr().err


def test_drive_folders_need_gdown_and_say_so(env, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gdown(name, *a, **k):
        if name == "gdown":
            raise ImportError("no gdown")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_gdown)
    card(env, "drive", "https://drive.google.com/drive/folders/abc", path="sub/model.pth")
    with pytest.raises(WeightsMissing, match=r"cirbench\[gdrive\]"):
        fetch_card(load_card("drive"))


def test_drive_folder_files_are_verified_before_they_enter_the_cache(env, monkeypatch, tmp_path):
    """gdown faked: the folder's file goes to the cache only when it hashes as the card says."""
    import sys
    import types

    payload = b"weights"

    def download_folder(url, output, quiet):
        (tmp_path / "dl").mkdir(exist_ok=True)
        with open(f"{output}/model.pth", "wb") as fh:
            fh.write(payload)

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download_folder=download_folder))
    card(env, "drive", "https://drive.google.com/drive/folders/abc", "2" * 64, path="sub/model.pth")
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_card(load_card("drive"))
    assert _cache_files(env) == []
    card(env, "drive", "https://drive.google.com/drive/folders/abc", hashlib.sha256(payload).hexdigest(),
         path="sub/model.pth")
    fetch_card(load_card("drive"))
    assert _cache_files(env) == ["cache/weights/sub/model.pth"]


def test_fbcnn_cards_pin_the_published_digests():
    for name, size, digest in (
        ("fbcnn-color", 287_755_111, "8b0e4ef23d59cf7ac934a342cb31a17619e4fa4a0b3374a9d78c5174312387e8"),
        ("fbcnn-gray-double", 287_745_895, "4444b8b2393649a4acd5d8730410ec3106d15b6e262a49081e4e87b44cfa5cea"),
    ):
        (f,) = load_card(name).files
        assert (f.size, f.sha256) == (size, digest)


# --- issue 23 -----------------------------------------------------------------------------------------------
def test_a_cached_file_of_another_digest_is_never_used(env, http_server, capsys, monkeypatch):
    """Two cards name one file name; the second expects another sha256. `fetch second` said "present" and `run`
    would have loaded the first card's weights."""
    served = http_server.root / "tiny.safetensors"
    (http_server.root / "other").mkdir()
    torch.manual_seed(1)
    other = http_server.root / "other" / "tiny.safetensors"
    save_state_dict(FBCNN(**TINY).state_dict(), other)
    card(env, "first", f"{http_server.url}/tiny.safetensors", sha256_file(served))
    card(env, "second", f"{http_server.url}/other/tiny.safetensors", sha256_file(other))
    assert main(["models", "fetch", "first", "second"]) == 0
    err = capsys.readouterr().err
    assert "present" not in err and err.count("matches the card") == 2
    first, second = load_card("first").weight_paths()[0], load_card("second").weight_paths()[0]
    assert first == env / "cache" / "weights" / "tiny.safetensors"  # the first card's file stays where it was
    assert second.parent.name == f"sha256-{sha256_file(other)[:16]}" and sha256_file(second) == sha256_file(other)
    assert main(["models", "fetch", "first", "second"]) == 0 and capsys.readouterr().err.count("present") == 2
    # A file of that name that is not the first card's (say, copied by hand) is never used as its own.
    second.unlink()
    first.write_bytes(other.read_bytes())
    assert [f.name for f in missing_files(load_card("first"))] == ["tiny.safetensors"]
    monkeypatch.setenv("CIRBENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissing, match=f"{first} has another sha256 than the card's and is not used"):
        create_model("first")


def test_a_body_cut_short_without_a_length_is_not_kept(env, http_server):
    """A card without a digest and a body that ends early with no Content-Length: once kept, "present", and
    `run` then failed on "incomplete metadata"."""
    card(env, "tiny", f"{http_server.url}/nolength/tiny.safetensors")
    with pytest.raises(FetchError, match=r"the download is incomplete \(\d+ bytes, but its tensors need \d+\)"):
        fetch_card(load_card("tiny"))
    assert _cache_files(env) == []
    card(env, "tiny", f"{http_server.url}/tiny.safetensors")
    assert fetch_card(load_card("tiny"))[0].is_file()  # the whole file passes the same check
