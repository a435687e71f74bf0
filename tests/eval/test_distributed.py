"""Scale-out: two concurrent ``cirbench run --shard K/2`` processes merged with ``cirbench merge``, and
``torchrun --nproc_per_node=2 -m cirbench run`` (2 gloo processes), give exactly the records of one
single-process run (apart from the timing field), and the same report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench.archs import build_arch
from cirbench.eval.datasets import get_dataset
from cirbench.eval.merge import canonical
from cirbench.metrics import spaces_of
from cirbench.records import iter_records
from cirbench.zoo.checkpoints import save_state_dict

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0, window_size=8, squeeze_factor=4,
            prompt_dims=[8, 8, 8], prompt_bases=[4, 4, 4])
CARD = """name = "tiny-random"
arch = "promptcir"
description = "test only: a tiny PromptCIR with random weights"
pad_multiple = 16
pad_mode = "reflect"

[kwargs]
{kwargs}

[weights]
path = "tiny-random.safetensors"
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A folder dataset of small colour and gray crops, and a temporary card for a tiny random model."""
    root = tmp_path_factory.mktemp("shard")
    data = root / "data"
    data.mkdir()
    colour, gray = get_dataset("samples"), get_dataset("samples_gray")  # scikit-image's photographs
    for i, (name, path) in enumerate(list(colour)[:3]):
        Image.fromarray(colour.load(path)[100:148, 200:264]).save(data / f"c{i}_{Path(name).stem}.png")
    for i, (name, path) in enumerate(list(gray)[:2]):
        Image.fromarray(gray.load(path)[64:112, 64:128]).save(data / f"g{i}_{Path(name).stem}.png")
    cards = root / "cards"
    cards.mkdir()
    torch.manual_seed(0)
    save_state_dict(build_arch("promptcir", **TINY).state_dict(), cards / "tiny-random.safetensors")
    kwargs = "\n".join(f"{k} = {json.dumps(v)}" for k, v in TINY.items())
    (cards / "tiny-random.toml").write_text(CARD.format(kwargs=kwargs))
    env = {**os.environ, "CIRBENCH_MODELS": str(cards), "OMP_NUM_THREADS": "1"}
    return root, data, env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cirbench", *args]


def _run_args(data: Path, out: Path, *extra: str) -> list[str]:
    return _cmd("run", "--protocol", "blind", "--models", "jpeg,tiny-random", "--datasets", f"folder:{data}",
                "--qf", "10,40", "--threads", "1", "--out", str(out), *extra)


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in canonical(list(iter_records(run_dir)))]


def test_two_shard_processes_merge_to_the_single_run(setup):
    root, data, env = setup
    shards = [root / "shard1", root / "shard2"]
    procs = [subprocess.Popen(_run_args(data, out, "--shard", f"{k}/2"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k, out in enumerate(shards, 1)]
    for p in procs:  # both started before either is waited for: they run concurrently
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    single = root / "single"
    proc = subprocess.run(_run_args(data, single), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    merged = root / "merged"
    proc = subprocess.run(_cmd("merge", *map(str, shards), "--out", str(merged)), env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

    parts = [_records(s) for s in shards]
    images = [{r["image"] for r in part} for part in parts]
    assert all(images) and not images[0] & images[1]  # both shards did work, on disjoint images
    want = _records(single)
    # 5 images x 2 QFs x 2 models; colour images have a record per colour space, gray ones one
    assert len(want) == (3 * len(spaces_of(3)) + 2) * 2 * 2
    assert {r["model"] for r in want} == {"jpeg", "tiny-random"}
    got = _records(merged)
    assert got == want
    assert sum(len(p) for p in parts) == len(want)
    info = json.loads((merged / "run.json").read_text())
    assert sorted(m["shard"] for m in info["merged_from"]) == ["1/2", "2/2"]
    # the model really restored something: its PSNR differs from the JPEG input's
    by_key = {(r["model"], r["image"], r["qf"], r["space"]): r["psnr"] for r in want}
    assert any(not np.isclose(v, by_key[("jpeg", *k[1:])]) for k, v in by_key.items() if k[0] == "tiny-random")


def _without_timing(csv_text: str) -> str:
    import csv
    import io

    rows = [{k: v for k, v in r.items() if k != "seconds_per_mp"} for r in csv.DictReader(io.StringIO(csv_text))]
    return json.dumps(sorted(rows, key=json.dumps))  # rows follow the records' order, which merging canonicalises


def test_torchrun_two_processes_leave_one_run_equal_to_the_single_one(setup):
    from cirbench.report import render

    root, data, env = setup
    single = root / "single-t"
    proc = subprocess.run(_run_args(data, single, "--save-images"), env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = root / "torchrun"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cirbench",
           *_run_args(data, out, "--save-images")[3:]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "merged" in proc.stderr
    ranks = sorted(p.name for p in (out / "ranks").iterdir())
    assert ranks == ["rank0-of-2", "rank1-of-2"]
    parts = [{r["image"] for r in iter_records(out / "ranks" / r)} for r in ranks]
    assert all(parts) and not parts[0] & parts[1]  # both ranks worked, on disjoint images
    assert _records(out) == _records(single)
    for fmt in ("csv", "md"):
        ours, theirs = (render([d], fmt, efficiency=False) for d in (out, single))
        if fmt == "csv":
            assert _without_timing(ours) == _without_timing(theirs)
        else:  # the caption names the same protocol, encoder and commit: the whole table is equal
            assert ours == theirs
    info = json.loads((out / "run.json").read_text())
    assert sorted(m["shard"] for m in info["merged_from"]) == ["1/2", "2/2"]
    # --save-images: every rank's images are gathered into the merged run, as a single run lays them out.
    saved = sorted(p.relative_to(single).as_posix() for p in (single / "images").rglob("*.png"))
    assert saved and saved == sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png"))
    # The same command again resumes every rank (nothing left) and merges again.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _records(out) == _records(single)
