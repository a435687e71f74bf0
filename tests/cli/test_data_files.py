"""No data file makes cirbench import or run code, or write outside its folder (issue 23, section 1): one test per
kind of data file a user may be handed — a model card, a protocol, a training config, a dataset manifest,
records.jsonl and run.json.

Each file is hostile: it names ``pwnmod:...`` (a module in the current folder that writes ``IMPORTED`` when it is
imported) or ``os:system`` with a command that would create ``PWNED``, and paths that climb out with ``..``.
Every test snapshots the whole temporary tree before and after, so a file written anywhere but the folders the
command owns fails it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench.cli import main

PWNMOD = '''"""Imported means code from a data file ran."""
import pathlib

pathlib.Path(__file__).with_name("IMPORTED").write_text("code ran")


class Net:
    pass


def mae(restored, target):
    return 0.0
'''


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The current folder, holding pwnmod.py (and a folder of two small images, ``imgs``)."""
    w = tmp_path / "work"
    w.mkdir()
    (w / "pwnmod.py").write_text(PWNMOD)
    imgs = w / "imgs"
    imgs.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    monkeypatch.chdir(w)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the registry may append the current folder: undone after
    sys.modules.pop("pwnmod", None)
    yield w
    sys.modules.pop("pwnmod", None)


def no_code_ran(work: Path) -> None:
    assert not (work / "IMPORTED").exists() and "pwnmod" not in sys.modules, "a data file imported code"
    assert not (work / "PWNED").exists(), "a data file ran a command"


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its size and mtime (folders: None)."""
    out = {}
    for p in root.rglob("*"):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = None if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def changed_outside(before: dict, after: dict, *allowed: str) -> list[str]:
    """Paths created, changed or removed, but those under an ``allowed`` folder (relative to the root)."""
    diff = {k for k in before.keys() | after.keys() if before.get(k, "gone") != after.get(k, "gone")}
    return sorted(k for k in diff if not any(k == a or k.startswith(a + "/") for a in allowed))


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("cirbench: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# --- a model card --------------------------------------------------------------------------------------------
def test_a_card_never_runs_code_nor_writes_outside_the_cache(tmp_path, work, capsys, monkeypatch, http_server):
    cards = tmp_path / "cards"
    cards.mkdir()
    monkeypatch.setenv("CIRBENCH_MODELS", str(cards))
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CIRBENCH_OFFLINE", raising=False)
    (cards / "evil.toml").write_text('name = "evil"\narch = "os:system"\n[kwargs]\ncommand = "touch PWNED"\n'
                                     '[weights]\npath = "evil.safetensors"\n')
    torch.save({}, cards / "evil.safetensors")  # weights beside the card: the run gets as far as building it
    (http_server.root / "w.safetensors").write_bytes(b"{}")
    (cards / "climb.toml").write_text(f'name = "climb"\narch = "fbcnn"\n[weights]\npath = "../../escape.safetensors"\n'
                                      f'url = "{http_server.url}/w.safetensors"\n')
    (cards / "perqf.toml").write_text('name = "perqf"\narch = "fbcnn"\n[weights.per_qf]\n10 = "../q10.pth"\n')
    before = tree(tmp_path)

    for args in (["models", "info", "evil"], ["run", "--models", "evil", "--datasets", "folder:imgs", "--qf", "10",
                                              "--out", "run"]):
        rc, _, err = cli(capsys, *args)
        assert rc == 2
        one_line(err, str(cards / "evil.toml"), "key 'arch'", "import path", "--models module:attr")
    rc, _, err = cli(capsys, "models", "fetch", "climb")
    assert rc == 2
    one_line(err, str(cards / "climb.toml"), "key 'weights.path'", "../../escape.safetensors")
    rc, _, err = cli(capsys, "models", "info", "perqf")
    assert rc == 2
    one_line(err, "key 'weights.per_qf'", "../q10.pth")

    no_code_ran(work)
    assert not list(tmp_path.parent.rglob("escape.safetensors"))
    assert changed_outside(before, tree(tmp_path), "cache", "work/run") == []


# --- a protocol ----------------------------------------------------------------------------------------------
PROTOCOL = 'name = "{name}"\nversion = "1"\nmodels = {models}\n[[tasks]]\ndatasets = {datasets}\nqfs = [10]\n'


def _protocol(path: Path, name="p", models='["jpeg"]', datasets='["folder:imgs"]') -> Path:
    path.write_text(PROTOCOL.format(name=name, models=models, datasets=datasets))
    return path


def test_a_protocol_never_runs_code_nor_writes_outside_runs(tmp_path, work, capsys):
    code = _protocol(work / "code.toml", models='["jpeg", "pwnmod:Net"]')
    climb = _protocol(work / "climb.toml", name="../../evil")
    outside = _protocol(work / "outside.toml", datasets='["folder:../elsewhere"]')
    (tmp_path / "elsewhere").mkdir()
    before = tree(tmp_path)

    rc, _, err = cli(capsys, "run", "--protocol", code)
    assert rc == 2
    one_line(err, str(code), "key 'models'", "'pwnmod:Net'", "import path")
    rc, out, _ = cli(capsys, "protocols", "validate", code, climb, outside)
    assert rc == 1
    assert out.count("NOT OK") == 3 and "key 'models'" in out and "key 'name'" in out
    rc, _, err = cli(capsys, "run", "--protocol", climb)  # the default --out is runs/NAME
    assert rc == 2
    one_line(err, str(climb), "key 'name' must be a plain name", "../../evil")
    rc, _, err = cli(capsys, "run", "--protocol", outside, "--out", "run")
    assert rc == 2
    one_line(err, str(outside), "[tasks #1] datasets", "'../elsewhere'", "not inside the protocol's folder")

    no_code_ran(work)
    assert not (tmp_path.parent / "evil").exists() and not (tmp_path / "evil").exists()
    assert changed_outside(before, tree(tmp_path)) == []
    # the same protocol with registered names and a folder inside its own folder runs
    rc, _, err = cli(capsys, "run", "--protocol", _protocol(work / "good.toml"), "--out", "run")
    assert rc == 0, err


# --- a training config ---------------------------------------------------------------------------------------
def test_a_training_config_never_runs_code_without_allow_code(tmp_path, work, capsys):
    cfg = work / "train.toml"
    cfg.write_text('[model]\narch = "pwnmod:Net"\n[data]\nfolders = ["imgs"]\n[stage1]\nsteps = 1\n'
                   '[optim]\nwarmup_steps = 0\n')
    before = tree(tmp_path)
    rc, _, err = cli(capsys, "train", "--config", cfg, "--out", "train")
    assert rc == 2
    one_line(err, str(cfg), "[model] arch", "'pwnmod:Net' is an import path")
    no_code_ran(work)
    assert changed_outside(before, tree(tmp_path), "work/train") == []


# --- a dataset manifest ----------------------------------------------------------------------------------------
def test_a_manifest_never_makes_a_fetch_write_outside_the_data_root(tmp_path, work, capsys, monkeypatch,
                                                                    http_server):
    import hashlib
    import shutil

    from cirbench.eval import datasets as ds_mod

    data = tmp_path / "pkgdata"
    shutil.copytree(ds_mod._DATA / "manifests", data / "manifests")
    served = b"BM" + bytes(range(48))
    (http_server.root / "escape.bmp").write_bytes(served)
    (data / "manifests" / "evil.tsv").write_text("filename\twidth\theight\tmode\tbytes\tsha256\n../../escape.bmp\t"
                                                 f"4\t4\tRGB\t{len(served)}\t{hashlib.sha256(served).hexdigest()}\n")
    monkeypatch.setattr(ds_mod, "_DATA", data)
    monkeypatch.setitem(ds_mod.REGISTRY, "classic5", replace(ds_mod.REGISTRY["classic5"], manifest="evil.tsv"))
    monkeypatch.delenv("CIRBENCH_OFFLINE", raising=False)
    before = tree(tmp_path)
    rc, _, err = cli(capsys, "datasets", "fetch", "classic5", "--from", f"{http_server.url}/", "--data-root",
                     tmp_path / "root")
    assert rc == 2
    one_line(err, "evil.tsv:2", "key 'filename'", "'../../escape.bmp'")
    no_code_ran(work)
    assert not (tmp_path / "escape.bmp").exists()
    assert changed_outside(before, tree(tmp_path)) == []  # not even the data root was created


# --- records.jsonl and run.json ----------------------------------------------------------------------------------
def _run(capsys, out: Path) -> None:
    rc, _, err = cli(capsys, "run", "--models", "jpeg", "--datasets", "folder:imgs", "--qf", "10", "--out", out,
                     "--save-images")
    assert rc == 0, err


def _reads(capsys, run: Path, tmp_path: Path) -> None:
    """Everything that reads a run folder: every report format, plots, records check, merge, a resume."""
    for fmt in ("table", "md", "csv", "json", "latex", "html"):
        assert cli(capsys, "report", run, "--format", fmt)[0] in (0, 2)
    assert cli(capsys, "report", run, "--plots", tmp_path / "plots", "--ci")[0] in (0, 2)
    assert cli(capsys, "records", "check", run)[0] in (0, 1)
    assert cli(capsys, "merge", run, "--out", tmp_path / "merged")[0] in (0, 2)
    assert cli(capsys, "run", "--models", "jpeg", "--datasets", "folder:imgs", "--qf", "10", "--out", run,
               "--save-images")[0] in (0, 2)


def test_records_never_run_code_nor_write_outside_their_folders(tmp_path, work, capsys):
    run = work / "run"
    _run(capsys, run)
    recs = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    hostile = dict(recs[0], model="pwnmod:Net", setting="../../s", dataset="../../../d",
                   image="../../../../escape.png", degradation="../x", psnr="os:system")
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*recs, hostile]))
    before = tree(tmp_path)
    _reads(capsys, run, tmp_path)
    no_code_ran(work)
    assert not list(tmp_path.parent.rglob("escape.png"))
    assert changed_outside(before, tree(tmp_path), "work/run", "plots", "merged") == []


def test_run_json_never_runs_code_nor_writes_outside_its_folder(tmp_path, work, capsys):
    run = work / "run"
    _run(capsys, run)
    info = json.loads((run / "run.json").read_text())
    info["metrics"].append({"name": "pwnmod:mae", "label": "os:system", "source": "pwnmod:mae", "decimals": 2,
                            "higher_is_better": False, "spaces": ["y", "gray"]})
    info["models"]["pwnmod:Net"] = {"user": "pwnmod:Net", "arch": "os:system", "card": "../../card.toml"}
    info["datasets"]["imgs"]["path"] = "../../elsewhere"
    info["protocol"]["name"] = "../../evil"
    (run / "run.json").write_text(json.dumps(info))
    before = tree(tmp_path)
    _reads(capsys, run, tmp_path)
    no_code_ran(work)
    assert changed_outside(before, tree(tmp_path), "work/run", "plots", "merged") == []
