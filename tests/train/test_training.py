"""Training: config validation, schedule, exact resume, checkpoints, atomic writes, DDP vs one process.

A tiny conv net (``helpers:TinyNet``, importable because tests/ is on pytest's pythonpath) keeps
every run to a few hundred milliseconds; one smoke test uses PromptCIR when it imports.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TinyNet
from PIL import Image

from cirbench.errors import RunError
from cirbench.files import atomic_write
from cirbench.train.config import ConfigError, LossConfig, OptimConfig, config_from_dict, load_config, override_steps
from cirbench.train.log import phase_table, read_log, write_curves, write_phase_curves
from cirbench.train.loop import CHECKPOINT_NAME, FINAL_EMA_NAME, _loss_fn, lr_at
from cirbench.train.loop import train as _train
from cirbench.zoo.checkpoints import load_into


def train(*args, **kwargs):
    """The configs here name the tests' own network (helpers:TinyNet): code the test allows, as --allow-code."""
    return _train(*args, allow_code=True, **kwargs)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(40, 48), (36, 44), (48, 32), (37, 45)]):
        small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(root / f"img{i}.png")
    return root


def _table(images, **top) -> dict:
    table = {
        "model": {"arch": "helpers:TinyNet", "kwargs": {"width": 8}},
        "data": {"folders": [str(images)], "patch_size": 16, "batch_size": 4},
        "stage1": {"qfs": [10, 40], "steps": 4},
        "stage2": {"qf_min": 20, "qf_max": 60, "steps": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "ema_decay": 0.9,
        "checkpoint_every": 2,
        "threads": 1,
        "seed": 3,
    }
    for key, value in top.items():
        if isinstance(value, dict):
            table.setdefault(key, {}).update(value)
        else:
            table[key] = value
    return table


def _write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_log(out / "log.jsonl")]


# -- config ----------------------------------------------------------------------------------------------
def test_unknown_key_names_the_key_and_the_file(tmp_path):
    cfg = _write_toml(tmp_path / "bad.toml", '[model]\narch = "x"\n[data]\nfolders = ["."]\n'
                      '[stage1]\nsteps = 1\n[optim]\nlrr = 0.1\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key 'optim\.lrr' \(did you mean 'lr'\?\)"):
        load_config(cfg)
    top = _write_toml(tmp_path / "top.toml", 'sed = 1\n[model]\narch = "x"\n')
    with pytest.raises(ConfigError, match=r"top\.toml: unknown key 'sed'"):
        load_config(top)


@pytest.mark.parametrize(
    "section, key, value, match",
    [
        ("data", "batch_size", "8", "'data.batch_size' must be an integer, got '8'"),
        ("data", "patch_size", 12.5, "'data.patch_size' must be an integer"),
        ("stage1", "qfs", [10, "20"], r"'stage1.qfs' must be a list of integers, got \[10, '20'\]"),
        ("runtime", "amp", 1, "'runtime.amp' must be true/false"),
        ("loss", "type", "l2", "'loss.type' must be one of 'l1', 'charbonnier', 'psnr', got 'l2'"),
        ("stage2", "qf_max", 101, "stage2.qf_min"),
        ("optim", "betas", [0.9], "'optim.betas' must be two numbers"),
    ],
)
def test_bad_values_name_the_key(images, section, key, value, match):
    table = _table(images, **{section: {key: value}})
    with pytest.raises(ConfigError, match=match):
        config_from_dict(table, "cfg.toml")


def test_missing_required_keys(images):
    table = _table(images)
    del table["stage1"]["steps"]
    with pytest.raises(ConfigError, match="cfg.toml: missing required key 'stage1.steps'"):
        config_from_dict(table, "cfg.toml")
    with pytest.raises(ConfigError, match="missing required key 'model.arch'"):
        config_from_dict({"stage1": {"steps": 1}}, "cfg.toml")


def test_paths_expand_env_and_resolve_against_the_config(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    monkeypatch.setenv("CIRBENCH_DATA", "/srv/cirdata")
    cfg = _write_toml(tmp_path / "conf" / "c.toml", '[model]\narch = "x"\n[stage1]\nsteps = 1\n'
                      '[optim]\nwarmup_steps = 0\n'
                      '[data]\nfolders = ["${CIRBENCH_DATA}/train/t91", "../local"]\n')
    loaded = load_config(cfg)
    assert loaded.data.folders == ["/srv/cirdata/train/t91", str((tmp_path / "local").resolve())]
    monkeypatch.delenv("CIRBENCH_DATA")
    with pytest.raises(ConfigError, match=r"c\.toml: key 'data.folders' uses \$\{CIRBENCH_DATA\}"):
        load_config(cfg)


def test_shipped_configs_validate(monkeypatch):
    monkeypatch.setenv("CIRBENCH_DATA", "/data")
    paths = sorted((REPO / "configs").glob("*.toml"))
    assert {"promptcir-compact.toml", "promptcir-paper.toml"} <= {p.name for p in paths}
    for path in paths:
        cfg = load_config(path)
        assert cfg.total_steps > 0 and cfg.data.folders


def test_lr_schedule_warmup_then_cosine():
    o = OptimConfig(lr=1e-3, warmup_steps=10, min_lr=1e-5)
    assert lr_at(0, o, 110) == pytest.approx(1e-4)
    assert lr_at(9, o, 110) == pytest.approx(1e-3)
    assert lr_at(60, o, 110) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert lr_at(110, o, 110) == pytest.approx(1e-5)
    lrs = [lr_at(s, o, 110) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_steps_override_scales_the_recipe(images):
    cfg = override_steps(config_from_dict(_table(images)), 3)
    assert (cfg.stage1.steps, cfg.stage2.steps, cfg.optim.warmup_steps) == (2, 1, 1)


# -- training --------------------------------------------------------------------------------------------
def test_resume_is_exact_and_checkpoints_are_plain(images, tmp_path):
    table = _table(images, val={"folders": [str(images)], "qfs": [10], "every": 3, "max_images": 2})
    cfg = config_from_dict(table, "cfg.toml")
    full, split = tmp_path / "full", tmp_path / "split"

    result = train(cfg, full)
    assert result == {"step": 6, "finished": True, "out_dir": str(full), "seconds": result["seconds"]}
    # The run that stops at step 3 validates nothing: validation must not perturb training either.
    no_val = replace(cfg, val=replace(cfg.val, folders=[]))
    assert train(no_val, split, stop_at=3)["finished"] is False
    assert not (split / FINAL_EMA_NAME).exists()
    with open(split / "log.jsonl", "a") as fh:  # as if killed after logging a step it never saved
        fh.write(json.dumps({"step": 4, "stage": 1, "loss": 9.0, "lr": 0.0, "seconds": 0.0}) + "\n")
    with pytest.raises(RunError, match="--resume"):
        train(cfg, split)
    train(cfg, split, resume=True)

    full_log, split_log = read_log(full / "log.jsonl"), read_log(split / "log.jsonl")
    assert [r["step"] for r in split_log] == [1, 2, 3, 4, 5, 6]
    assert [r["stage"] for r in full_log] == [1, 1, 1, 1, 2, 2]
    assert _losses(full) == _losses(split)  # exact float equality
    assert [r["lr"] for r in full_log] == [r["lr"] for r in split_log]
    assert all(math.isfinite(x) for x in _losses(full))
    # Validation: logged at steps 3 and 6 with the JPEG baseline beside it.
    val = [r for r in full_log if "val_psnr" in r]
    assert [r["step"] for r in val] == [3, 6]
    assert set(val[0]["val_psnr_qf"]) == {"10"} and val[0]["val_jpeg_psnr"] > 10
    assert (full / "curves.png").stat().st_size > 0

    # Checkpoints: plain objects only, and every part restored identically.
    a = torch.load(full / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(split / CHECKPOINT_NAME, weights_only=True)
    assert a["step"] == b["step"] == 6 and a["sampler"] == b["sampler"]
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    net = TinyNet()
    load_into(net, full / FINAL_EMA_NAME)
    assert all(torch.equal(v, a["ema"][k]) for k, v in net.state_dict().items())
    assert not list(full.glob(".*.tmp"))

    # A resume may not change the recipe.
    changed = config_from_dict(_table(images, optim={"lr": 5e-4}), "cfg.toml")
    with pytest.raises(ConfigError, match="optim.lr"):
        train(changed, split, resume=True)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """How the trainer writes checkpoint_last.pt: atomic_write around torch.save."""
    path = tmp_path / CHECKPOINT_NAME
    atomic_write(path, lambda fh: torch.save({"step": 1, "w": torch.ones(3)}, fh))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600

    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, lambda fh: torch.save({"step": 2}, fh))
    assert torch.load(path, weights_only=True)["step"] == 1  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temp file left


def test_ddp_two_processes_match_one_process(images, tmp_path):
    """2 gloo ranks x 2 samples vs 1 process x 4 samples: same losses within 1e-5 relative.

    Only the summation order of the gradient average differs, so the losses agree to float32 rounding.
    """
    table = _table(images, loss={"type": "charbonnier"}, data={"gray_fraction": 0.5}, grad_clip=0.5)
    toml = tmp_path / "ddp.toml"
    toml.write_text(_to_toml(table))
    single = tmp_path / "single"
    train(load_config(toml), single)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cirbench", "train", "--config", str(toml), "--out", str(tmp_path / "ddp"), "--allow-code"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_log = read_log(tmp_path / "ddp" / "log.jsonl")
    assert [r["step"] for r in ddp_log] == [1, 2, 3, 4, 5, 6]  # rank 0 alone writes
    ckpt = torch.load(tmp_path / "ddp" / CHECKPOINT_NAME, weights_only=True)
    assert len(ckpt["rng"]) == 2  # both ranks' RNG states
    np.testing.assert_allclose([r["loss"] for r in ddp_log], _losses(single), rtol=1e-5, atol=0)


def _to_toml(table: dict) -> str:
    """Minimal TOML writer for the test tables (scalars, lists, one level of sub-tables)."""

    def val(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    head = [f"{k} = {val(v)}" for k, v in table.items() if not isinstance(v, dict)]
    body = []
    for name, sub in table.items():
        if isinstance(sub, dict):
            body.append(f"[{name}]")
            body += [f"{k} = {val(v)}" for k, v in sub.items() if not isinstance(v, dict)]
            for k, v in sub.items():
                if isinstance(v, dict):
                    body.append(f"[{name}.{k}]")
                    body += [f"{kk} = {val(vv)}" for kk, vv in v.items()]
    return "\n".join(head + body) + "\n"


def test_promptcir_trains_when_available(images, tmp_path):
    pytest.importorskip("cirbench.archs.promptcir")
    kwargs = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "window_size": 4,
              "heads": [1, 1, 2, 2], "prompt_dims": [8, 16, 32], "prompt_bases": [4, 4, 4],
              "squeeze_factor": 4}
    table = _table(images, model={"arch": "promptcir", "kwargs": kwargs}, stage1={"steps": 2},
                   stage2={"steps": 0}, optim={"warmup_steps": 1}, data={"batch_size": 2})
    try:
        result = train(config_from_dict(table, "cfg.toml"), tmp_path / "pc")
    except TypeError as exc:  # compact knobs may be named differently in this PromptCIR version
        pytest.skip(f"PromptCIR kwargs not accepted: {exc}")
    assert result["finished"] and all(math.isfinite(x) for x in _losses(tmp_path / "pc"))


def test_max_minutes_stops_with_weights_and_resumes_exactly(images, tmp_path):
    """A time-boxed run (a lent GPU) stops at the first step past its budget with a checkpoint and the EMA
    weights; --resume then finishes it with the losses of a run that never stopped."""
    cfg = config_from_dict(_table(images), "cfg.toml")
    full, boxed = tmp_path / "full", tmp_path / "boxed"
    train(cfg, full)
    result = train(cfg, boxed, max_minutes=0)  # the budget is spent after the first step
    assert result["step"] == 1 and result["finished"] is False
    ema = torch.load(boxed / CHECKPOINT_NAME, weights_only=True)["ema"]
    net = TinyNet()
    load_into(net, boxed / FINAL_EMA_NAME)
    assert all(torch.equal(v, ema[k]) for k, v in net.state_dict().items())
    assert train(cfg, boxed, resume=True)["finished"] is True
    assert _losses(full) == _losses(boxed)


def test_init_starts_from_given_weights(images, tmp_path):
    """``model.init`` (fine-tuning) loads earlier weights before step 1; a training checkpoint's EMA is used."""
    first = tmp_path / "first"
    train(config_from_dict(_table(images), "cfg.toml"), first, stop_at=2)
    table = _table(images, stage1={"steps": 1}, stage2={"steps": 0},
                   optim={"warmup_steps": 0, "lr": 1e-12, "min_lr": 0.0})
    table["model"]["init"] = str(first / CHECKPOINT_NAME)
    second = tmp_path / "second"
    train(config_from_dict(table, "cfg.toml"), second)
    ema = torch.load(first / CHECKPOINT_NAME, weights_only=True)["ema"]
    start = torch.load(second / CHECKPOINT_NAME, weights_only=True)["model"]
    assert all(torch.allclose(start[k], ema[k], atol=1e-9) for k in ema)  # one step at lr 1e-12 moves nothing


def test_psnr_loss_is_minus_mean_per_sample_psnr():
    """Per-sample PSNR (peak 1) computed in numpy: a QF-90-like patch counts as much as a QF-10-like one."""
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 16, 16, generator=gen)
    noise = torch.randn(3, 3, 16, 16, generator=gen) * torch.tensor([0.1, 0.01, 0.001]).view(3, 1, 1, 1)
    out = target + noise
    eps = 1e-4
    loss = _loss_fn(LossConfig(type="psnr", eps=eps))(out, target)
    mse = ((out - target).double() ** 2).numpy().reshape(3, -1).mean(axis=1)
    expected = -np.mean(10 * np.log10(1.0 / (mse + eps**2)))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # each sample's gradient is scaled by 1/MSE: the lightly degraded sample gets the largest push per pixel
    out.requires_grad_(True)
    _loss_fn(LossConfig(type="psnr", eps=eps))(out, target).backward()
    per_sample = out.grad.abs().flatten(1).mean(dim=1)
    assert per_sample[2] > per_sample[1] > per_sample[0]


@pytest.mark.parametrize("losses, scale", [([0.05, 0.02, 0.01], "log"), ([-30.0, -32.5, -34.0], "linear")])
def test_curves_show_positive_and_negative_losses(tmp_path, losses, scale):
    """The PSNR loss is negative: on a log axis its curve would vanish (an empty panel)."""
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": i, "stage": 2, "loss": v, "lr": 1e-4, "seconds": i}) + "\n"
                           for i, v in enumerate(losses)))
    fig = write_curves(log, tmp_path / "curves.png")
    ax = fig.axes[0]
    assert ax.get_yscale() == scale
    low, high = ax.get_ylim()
    assert low <= min(losses) and max(losses) <= high
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_phase_curves_count_samples_across_phases(tmp_path):
    """A phase's samples start where the one before ended; an old log without ``samples`` counts step x batch."""
    def val(step, seconds, gain, samples=None):
        r = {"step": step, "stage": 2, "loss": -30.0, "lr": 1e-4, "seconds": seconds,
             "val_psnr_qf": {"10": 28.0 + gain}, "val_jpeg_psnr_qf": {"10": 28.0}}
        return r if samples is None else {**r, "samples": samples}

    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in [val(100, 1800, 0.5), val(200, 3600, 0.6)]))
    new.write_text("".join(json.dumps(r) + "\n" for r in [val(50, 900, 0.7, samples=800),
                                                           {"step": 60, "stage": 2, "loss": -31.0, "lr": 1e-4,
                                                            "seconds": 1000, "samples": 960}]))
    rows = phase_table([("a", old, 8), ("b", new, 16)])
    assert [(r["phase"], r["phase_start"], r["samples"]) for r in rows] == [("a", 0, 800), ("a", 0, 1600),
                                                                            ("b", 1600, 2400)]
    assert [round(r["hours"], 3) for r in rows] == [0.5, 1.0, 1.25]
    assert [round(r["gain"]["10"], 6) for r in rows] == [0.5, 0.6, 0.7]
    fig = write_phase_curves([("a", old, 8), ("b", new, 16)], tmp_path / "phases.png")
    x, y = fig.axes[0].lines[0].get_data()
    assert list(x) == [800, 1600, 2400] and (tmp_path / "phases.png").stat().st_size > 0


def test_amp_is_refused_on_a_cpu_without_native_bf16(images, tmp_path, monkeypatch):
    import cirbench.train.loop as training

    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: False)
    cfg = config_from_dict(_table(images, runtime={"device": "cpu", "amp": True}), "amp.toml")
    with pytest.raises(ConfigError, match="runtime.amp = true needs a CPU with native bf16"):
        train(cfg, tmp_path / "run")


def test_channels_last_trains_to_the_same_losses(images, tmp_path):
    """NHWC is a memory layout: the losses match NCHW to float rounding."""
    runs = {}
    for cl in (False, True):
        cfg = config_from_dict(_table(images, runtime={"device": "cpu", "channels_last": cl}), "cl.toml")
        train(cfg, tmp_path / str(cl), steps_override=4)
        runs[cl] = [r["loss"] for r in read_log(tmp_path / str(cl) / "log.jsonl")]
        assert all(r["samples_per_s"] > 0 and r["data_wait_s"] >= 0 for r in read_log(tmp_path / str(cl) / "log.jsonl"))
    assert runs[True] == pytest.approx(runs[False], rel=1e-5)
