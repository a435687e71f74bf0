"""One writer per folder, and faults injected where data is written (merge, report -o, weights export,
weights and dataset fetch): the previous file is intact, the error is one line, and a rerun completes."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import read_state_dict
from PIL import Image

from cirbench import files
from cirbench.cli import main
from cirbench.errors import CheckpointError, FetchError
from cirbench.eval import fetch as dataset_fetch
from cirbench.files import FolderLock, sha256_file
from cirbench.metrics import spaces_of
from cirbench.records import KEY, iter_records
from cirbench.zoo.checkpoints import save_state_dict

SLOW = '''import time, torch
class Slow(torch.nn.Module):
    def forward(self, x):
        time.sleep(0.4)
        return x
'''


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    for i in range(6):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def test_a_second_run_on_the_same_out_is_refused_and_the_first_completes(tmp_path, folder, capsys):
    (tmp_path / "slowmod.py").write_text(SLOW)
    out = tmp_path / "run"
    args = ["run", "--models", "slowmod:Slow", "--datasets", f"folder:{folder}", "--qf", "10", "--out", str(out),
            "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "cirbench", *args], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "run.json").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, first.communicate()[1]
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(args) == 2
    finally:
        sys.path.remove(str(tmp_path))
    err = capsys.readouterr().err
    assert "another cirbench process is writing this folder (pid" in err and err.count("\n") == 1
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    recs = list(iter_records(out))
    keys = [tuple(r[k] for k in KEY) for r in recs]
    assert len(keys) == len(set(keys)) == 6 * len(spaces_of(3))  # every record once


def _tiny_run(tmp_path, folder, name):
    out = tmp_path / name
    assert main(["run", "--models", "jpeg", "--datasets", f"folder:{folder}", "--qf", "10", "--out", str(out),
                 "--shard", f"{1 if name == 's1' else 2}/2"]) == 0
    return out


def test_merge_refuses_a_shard_being_written_and_survives_a_full_disk(tmp_path, folder, capsys, monkeypatch):
    shards = [_tiny_run(tmp_path, folder, "s1"), _tiny_run(tmp_path, folder, "s2")]
    merged = tmp_path / "merged"
    with FolderLock(shards[1], "run"):
        assert main(["merge", *map(str, shards), "--out", str(merged)]) == 2
    assert "another cirbench process is writing" in capsys.readouterr().err
    monkeypatch.setattr(files.os, "fsync", _enospc)
    assert main(["merge", *map(str, shards), "--out", str(merged)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the merged run" in err and err.count("\n") == 1
    assert not (merged / "records.jsonl").exists() and not list(merged.glob(".*.tmp"))
    monkeypatch.undo()
    assert main(["merge", *map(str, shards), "--out", str(merged)]) == 0
    assert len(list(iter_records(merged))) == 6 * len(spaces_of(3))


def test_report_output_is_atomic(tmp_path, folder, capsys, monkeypatch):
    run = _tiny_run(tmp_path, folder, "s1")
    capsys.readouterr()
    report = tmp_path / "report.md"
    report.write_text("previous report\n")
    monkeypatch.setattr(files.os, "replace", _enospc)
    assert main(["report", str(run), "--format", "md", "-o", str(report)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the report" in err and err.count("\n") == 1
    assert report.read_text() == "previous report\n" and sorted(p.name for p in tmp_path.glob(".report*")) == []
    monkeypatch.undo()
    assert main(["report", str(run), "--format", "md", "-o", str(report)]) == 0
    assert report.read_text().startswith("### ")


def test_weights_export_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_state_dict({"a": torch.zeros(3)}, path)
    monkeypatch.setattr(files.os, "fsync", _enospc)
    with pytest.raises(CheckpointError, match="previous file, if any, is intact"):
        save_state_dict({"a": torch.ones(3)}, path)
    monkeypatch.undo()
    assert torch.equal(read_state_dict(path)["a"], torch.zeros(3)) and len(list(tmp_path.iterdir())) == 1
    save_state_dict({"a": torch.ones(3)}, path)
    assert torch.equal(read_state_dict(path)["a"], torch.ones(3))


def test_weights_fetch_with_a_full_disk_leaves_nothing(tmp_path, monkeypatch, http_server):
    (http_server.root / "w.bin").write_bytes(b"w" * 5000)
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    dest = tmp_path / "cache" / "weights" / "w.bin"
    monkeypatch.setattr(shutil, "move", _enospc)  # pooch moves the verified temporary file into place
    with pytest.raises(FetchError, match="nothing was kept"):
        files.download(f"{http_server.url}/w.bin", dest, sha256_file(http_server.root / "w.bin"))
    assert not list((tmp_path / "cache").rglob("*.*"))
    monkeypatch.undo()
    files.download(f"{http_server.url}/w.bin", dest, sha256_file(http_server.root / "w.bin"))
    assert dest.read_bytes() == b"w" * 5000


def test_dataset_fetch_into_an_existing_folder_is_all_or_nothing(tmp_path, monkeypatch, data_root):
    root = tmp_path / "root"
    shutil.copytree(data_root / "classic5", root / "classic5")
    for name in ("lena.bmp", "peppers.bmp"):
        (root / "classic5" / name).write_bytes(b"damaged")  # bad copies the fetch will replace
    before = {p.name: p.read_bytes() for p in (root / "classic5").iterdir()}
    real, installed = os.replace, []

    def flaky(src, dst):
        if Path(dst).parent == root / "classic5":
            installed.append(dst)
            if len(installed) == 2:  # one file is in place, the second fails: part-way through
                _enospc()
        return real(src, dst)

    monkeypatch.setattr(dataset_fetch.os, "replace", flaky)
    with pytest.raises(FetchError, match="the data root is unchanged"):
        dataset_fetch.fetch_dataset("classic5", root, str(data_root / "classic5"), log=lambda m: None)
    assert {p.name: p.read_bytes() for p in (root / "classic5").iterdir()} == before
    assert sorted(p.name for p in root.iterdir()) == ["classic5"]  # no staging folder left
    monkeypatch.undo()
    dataset_fetch.fetch_dataset("classic5", root, str(data_root / "classic5"), log=lambda m: None)
    assert (root / "classic5" / "lena.bmp").read_bytes() == (data_root / "classic5" / "lena.bmp").read_bytes()


def test_train_resume_is_refused_while_another_training_writes(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\narch = "helpers:TinyNet"\n[data]\nfolders = ["."]\n[stage1]\nsteps = 1\n'
                   '[optim]\nwarmup_steps = 0\n')
    with FolderLock(tmp_path / "out", "training"):
        assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "out"), "--resume", "--allow-code"]) == 2
    assert "another cirbench process is writing" in capsys.readouterr().err
