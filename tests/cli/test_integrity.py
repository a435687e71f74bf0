"""Issue 23 through the command line: no mean silently wrong (sections 2 and 3), nothing written through a link,
and one line, never a traceback, for every expected failure (section 4). docs/reliability.md lists each case
with its test; the cases of one module live beside it (tests/test_records.py, tests/report/test_report.py, ...).

The data are folders of a few 32x24 PNGs, the models ``jpeg`` and tiny user models (``integ_models``)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench.cli import main
from cirbench.records import iter_records

MODULE = "integ_models"
MODELS = '''
"""Tiny user models for tests/cli/test_integrity.py."""
import os
import time

import torch
from torch import nn

from cirbench.errors import ImageError


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + 0.01 * self.conv(x)


class Pad8(nn.Module):
    cirbench_name, pad_multiple = "padded", 8

    def forward(self, x):
        return x


class Pad16(Pad8):
    pad_multiple = 16


class Stop(nn.Module):
    """Ctrl-C at the second image (once per process)."""

    calls = 0

    def forward(self, x):
        Stop.calls += 1
        if Stop.calls == 2:
            raise KeyboardInterrupt
        return x


class Fail(nn.Module):
    calls = 0

    def forward(self, x):
        Fail.calls += 1
        if Fail.calls == 2:
            raise ImageError("an expected failure, midway")
        return x


class Slow(nn.Module):
    def forward(self, x):
        time.sleep(float(os.environ.get("INTEG_SLOW", "0")))
        return x
'''


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("integ")
    (d / f"{MODULE}.py").write_text(MODELS)
    return d


@pytest.fixture
def user_models(models_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(models_dir))
    import importlib

    mod = importlib.import_module(MODULE)
    mod.Stop.calls = mod.Fail.calls = 0
    return mod


def _png(path: Path, seed: int, gray: bool = False) -> None:
    shape = (24, 32) if gray else (24, 32, 3)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)


def folder(tmp_path: Path, n: int = 3, name: str = "ds") -> Path:
    d = tmp_path / name
    d.mkdir()
    for i in range(n):
        _png(d / f"a{i}.png", i)
    return d


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_args(ds: Path, out: Path, models: str = "jpeg", qf: str = "10") -> list:
    return ["run", "--models", models, "--datasets", f"folder:{ds}", "--qf", qf, "--out", out, "--threads", "1",
            "--no-profile"]


def one_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("cirbench: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def info(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


# --- 1. nothing written through a link -------------------------------------------------------------------------
@pytest.mark.parametrize("link", ["run.json", "images", ".cirbench.lock"])
def test_a_run_never_writes_through_a_link(tmp_path, capsys, link):
    ds = folder(tmp_path, 1)
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim"
    if link == "images":
        victim.mkdir()
    else:
        victim.write_text("precious\n")
    (out / link).symlink_to(victim)
    rc, _, err = cli(capsys, *run_args(ds, out), "--save-images")
    assert rc == 2
    one_line(err, str(out / link), "is a symbolic link", "never")
    assert (victim.read_text() == "precious\n") if victim.is_file() else list(victim.iterdir()) == []


# --- 2. numbers that were silently wrong ---------------------------------------------------------------------
def _weights(path: Path, value: float) -> Path:
    from safetensors.torch import save_file

    save_file({"conv.weight": torch.full((3, 3, 3, 3), value), "conv.bias": torch.zeros(3)}, path)
    return path


def test_merge_refuses_runs_with_other_weights_under_one_name(tmp_path, capsys, user_models):
    """`merge runA runB` kept runA's numbers and wrote runB's weights into run.json."""
    ds = folder(tmp_path, 4)
    w1, w2 = _weights(tmp_path / "w1.safetensors", 0.0), _weights(tmp_path / "w2.safetensors", 0.05)
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(capsys, *run_args(ds, a, f"{MODULE}:Conv"), "--weights", w1, "--shard", "1/2")[0] == 0
    assert cli(capsys, *run_args(ds, b, f"{MODULE}:Conv"), "--weights", w2, "--shard", "2/2")[0] == 0
    rc, _, err = cli(capsys, "merge", a, b, "--out", tmp_path / "m")
    assert rc == 2
    one_line(err, f"cannot merge: model 'Conv' was run with other inputs in {b} than in {a} (weights (sha256")
    assert not (tmp_path / "m" / "records.jsonl").exists()
    c = tmp_path / "c"
    assert cli(capsys, *run_args(ds, c, f"{MODULE}:Conv"), "--weights", w1, "--shard", "2/2")[0] == 0
    assert cli(capsys, "merge", a, c, "--out", tmp_path / "m")[0] == 0  # the same weights merge


@pytest.mark.parametrize("first,then,words", [
    (["--models", "jpeg,M"], ["--models", "jpeg,M", "--ensemble", "transpose"], "ensemble 'none' (now 'transpose')"),
    (["--models", "M"], ["--models", "M", "--tile", "16"], "tile None (now 16)"),
    (["--models", "M", "--tile", "16"], ["--models", "M", "--tile", "16", "--overlap", "8"], "overlap 32 (now 8)"),
    (["--models", f"{MODULE}:Pad8"], ["--models", f"{MODULE}:Pad16"], "padding"),
], ids=["ensemble", "tile", "overlap", "padding"])
def test_a_resume_with_another_input_is_refused(tmp_path, capsys, user_models, first, then, words):
    """Rerunning a folder with --ensemble, --tile or --overlap changed said "0 records written (2 already done)",
    kept the old numbers and wrote the new setting into run.json."""
    ds = folder(tmp_path, 2)
    out = tmp_path / "run"
    base = [a for a in run_args(ds, out) if a not in ("--models", "jpeg")]
    fill = {"M": f"{MODULE}:Conv", "jpeg,M": f"jpeg,{MODULE}:Conv"}
    rc, _, err = cli(capsys, *base, *[fill.get(a, a) for a in first])
    assert rc == 0, err
    before = (out / "records.jsonl").read_bytes(), info(out)["models"]
    rc, _, err = cli(capsys, *base, *[fill.get(a, a) for a in then])
    assert rc == 2
    one_line(err, str(out), "were made with other inputs", words, "use another --out")
    assert ((out / "records.jsonl").read_bytes(), info(out)["models"]) == before


def test_another_setting_label_is_its_own_records_and_each_label_keeps_its_inputs(tmp_path, capsys, user_models):
    """A record's setting label is part of its key: a model may run single and ntire24 into one folder; run.json
    keeps each label's setting, so a later change of single's tiling is still refused."""
    ds = folder(tmp_path, 2)
    out = tmp_path / "run"
    assert cli(capsys, *run_args(ds, out, f"{MODULE}:Conv"))[0] == 0
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:Conv"), "--setting", "ntire24")
    assert rc == 0, err
    assert {r["setting"] for r in iter_records(out)} == {"single", "ntire24"}
    assert set(info(out)["models"]["Conv"]["settings"]) == {"single", "ntire24"}
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:Conv"), "--tile", "16")
    assert rc == 2
    one_line(err, "were made with other inputs: tile None (now 16)")


def test_a_modified_standard_image_is_refused_or_skipped_and_marked(tmp_path, capsys, data_root):
    """lena.bmp replaced in the data root was scored, and --published put it beside the paper's number."""
    root = tmp_path / "data"
    shutil.copytree(data_root / "classic5", root / "classic5")
    lena = root / "classic5" / "lena.bmp"
    lena.chmod(0o644)
    data = bytearray(lena.read_bytes())
    data[-100:] = bytes(100)  # same size, other pixels
    lena.write_bytes(bytes(data))
    args = ["run", "--protocol", "blind", "--models", "jpeg", "--datasets", "classic5", "--qf", "10",
            "--data-root", root, "--out", tmp_path / "run"]
    rc, _, err = cli(capsys, *args)
    assert rc == 2
    assert f"cirbench: {lena}: not the classic5 file the packaged manifest names" in err
    assert "cirbench datasets fetch classic5" in err and "Nothing was computed" in err
    rc, table, err = cli(capsys, *args, "--skip-invalid")
    assert rc == 0, err
    assert {r["image"] for r in iter_records(tmp_path / "run")} == {"baboon.bmp", "barbara.bmp", "boats.bmp",
                                                                     "peppers.bmp"}
    assert "QF 10 ‡" in table and "4 of 5 images (1 skipped as invalid: lena.bmp" in table


# --- 3. inputs, provenance, configuration ------------------------------------------------------------------------
def test_gif_and_dangling_links_in_a_folder_are_named(tmp_path, capsys):
    ds = folder(tmp_path, 2)
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(ds / "z.gif")
    (ds / "z_link.png").symlink_to(tmp_path / "moved-away.png")
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 2
    assert f"cirbench: {ds / 'z.gif'}: GIF is not an evaluation format" in err
    assert f"cirbench: {ds / 'z_link.png'}: a link to a missing file" in err and "2 input file(s)" in err
    rc, _, err = cli(capsys, *run_args(ds, out), "--skip-invalid")
    assert rc == 0 and f"skipped: {ds / 'z.gif'}" in err and f"skipped: {ds / 'z_link.png'}" in err
    assert set(info(out)["skipped_images"]["ds"]) == {"z.gif", "z_link.png"}


def test_gray_and_colour_images_of_one_folder_name_their_space(tmp_path, capsys):
    """Two columns with the same header: which was which?"""
    ds = folder(tmp_path, 2)
    for i in range(3):
        _png(ds / f"g{i}.png", 10 + i, gray=True)
    out = tmp_path / "run"
    rc, table, err = cli(capsys, *run_args(ds, out))
    assert rc == 0, err
    assert "ds QF 10 (gray)" in table and "ds QF 10 (y)" in table
    assert "‡" not in table  # 3 gray and 2 colour images: each mean is whole
    assert {k: info(out)["datasets"]["ds"][k] for k in ("gray_images", "colour_images")} == {"gray_images": 3,
                                                                                             "colour_images": 2}


def test_a_resume_with_another_protocol_version_or_file_is_refused(tmp_path, capsys):
    ds = folder(tmp_path, 2)
    proto = tmp_path / "p.toml"
    text = f'name = "p"\nversion = "1"\n[[tasks]]\ndatasets = ["folder:{ds.name}"]\nqfs = [10]\n'
    proto.write_text(text)
    out = tmp_path / "run"
    assert cli(capsys, "run", "--protocol", proto, "--models", "jpeg", "--out", out)[0] == 0
    first = info(out)["protocol"]
    proto.write_text(text.replace('version = "1"', 'version = "2"'))
    rc, _, err = cli(capsys, "run", "--protocol", proto, "--models", "jpeg", "--out", out)
    assert rc == 2
    one_line(err, "holds a run of protocol 'p' version 1, not version 2", "use another --out")
    proto.write_text('description = "same name and version, another file"\n' + text)
    rc, _, err = cli(capsys, "run", "--protocol", proto, "--models", "jpeg", "--out", out)
    assert rc == 2
    one_line(err, f"sha256 {first['sha256'][:12]}…", "another definition's")
    assert info(out)["protocol"] == first


def test_run_json_says_how_the_run_ended(tmp_path, capsys, user_models):
    """A run stopped by Ctrl-C or an error was recorded as "finished"."""
    ds = folder(tmp_path, 3)
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:Stop"))
    assert rc == 130 and "interrupted" in err
    assert info(out)["status"] == "interrupted" and "finished" not in info(out)
    assert info(out)["stopped"]["reason"] == "KeyboardInterrupt"
    out2 = tmp_path / "run2"
    rc, _, err = cli(capsys, *run_args(ds, out2, f"{MODULE}:Fail"))
    assert rc == 2
    assert info(out2)["status"] == "failed" and "an expected failure, midway" in info(out2)["stopped"]["reason"]
    rc, _, err = cli(capsys, *run_args(ds, out2, f"{MODULE}:Fail"))  # Fail fails once per process: this completes
    assert rc == 0, err
    assert info(out2)["status"] == "finished" and "finished" in info(out2) and "stopped" not in info(out2)
    rc, out_text, _ = cli(capsys, "records", "check", out)
    assert "the last run into this folder was interrupted" in out_text


def test_records_without_run_json_are_resumed_only_when_trusted(tmp_path, capsys, user_models):
    """After run.json was deleted, a rerun with other weights mixed its records with the old ones."""
    ds = folder(tmp_path, 2)
    out = tmp_path / "run"
    w1, w2 = _weights(tmp_path / "w1.safetensors", 0.0), _weights(tmp_path / "w2.safetensors", 0.05)
    assert cli(capsys, *run_args(ds, out, f"{MODULE}:Conv"), "--weights", w1)[0] == 0
    (out / "run.json").unlink()
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:Conv"), "--weights", w2)
    assert rc == 2
    one_line(err, str(out), "holds records but no run.json", "--trust-records")
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:Conv"), "--weights", w1, "--trust-records")
    assert rc == 0 and "0 records written" in err


@pytest.mark.parametrize("option", ["--datasets", "--qf", "--models", "--metrics"])
def test_an_empty_list_option_is_refused(tmp_path, capsys, option):
    """`--datasets ,` meant "no filter": the whole protocol."""
    ds = folder(tmp_path, 1)
    args = [a for a in run_args(ds, tmp_path / "run") if a != "--no-profile"]
    at = args.index(option) + 1 if option in args else None
    args = args[:at] + [","] + args[at + 1:] if at else [*args, option, ","]
    rc, _, err = cli(capsys, *args)
    assert rc == 2
    one_line(err, f"{option} ',' names nothing")


def test_a_protocol_of_missing_folders_says_so(tmp_path, capsys):
    """It fell back to the bundled samples, saying "get them with: ." (an empty command)."""
    proto = tmp_path / "p.toml"
    proto.write_text('name = "p"\nversion = "1"\n[[tasks]]\ndatasets = ["folder:absent"]\nqfs = [10]\n')
    rc, _, err = cli(capsys, "run", "--protocol", proto, "--models", "jpeg", "--out", tmp_path / "run")
    assert rc == 2
    one_line(err, f"{tmp_path / 'absent'}: folder not found", "create the folders or name others with --datasets")
    assert "get them with" not in err


# --- 4. one line, never a traceback ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["{not json", "[1, 2]"], ids=["not-json", "a-list"])
@pytest.mark.parametrize("command", ["report", "run", "records"])
def test_a_malformed_run_json_is_one_line(tmp_path, capsys, text, command):
    ds = folder(tmp_path, 1)
    out = tmp_path / "run"
    assert cli(capsys, *run_args(ds, out))[0] == 0
    (out / "run.json").write_text(text)
    args = {"report": ["report", out], "run": run_args(ds, out), "records": ["records", "check", out]}[command]
    rc, stdout, err = cli(capsys, *args)
    if command == "records":  # a check lists every problem, this among them
        assert rc == 1 and "Traceback" not in err and f"ERROR {out / 'run.json'}: malformed run.json" in stdout
    else:
        assert rc == 2
        one_line(err, f"{out / 'run.json'}: malformed run.json", "restore it")


def test_a_read_only_records_file_is_one_line(tmp_path, capsys, monkeypatch):
    ds = folder(tmp_path, 2)
    out = tmp_path / "run"
    assert cli(capsys, *run_args(ds, out, qf="10"))[0] == 0
    records = str(out / "records.jsonl")
    real_os_open, real_open = os.open, open

    def denied(path, *a, **k):  # root writes any file: the permission error is simulated (chmod 444)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(os, "open", lambda p, f, *a, **k: denied(p) if str(p) == records and f & (
        os.O_WRONLY | os.O_RDWR) else real_os_open(p, f, *a, **k))
    monkeypatch.setattr("builtins.open", lambda p, m="r", *a, **k: denied(p) if str(p) == records and any(
        c in m for c in "wa+") else real_open(p, m, *a, **k))
    rc, _, err = cli(capsys, *run_args(ds, out, qf="20"))
    assert rc == 2
    one_line(err, f"{records}: cannot write records (Permission denied); make it writable")


@pytest.mark.parametrize("where", ["save-images", "merge", "plots"])
def test_a_full_disk_is_one_line(tmp_path, capsys, full_disk, where):
    ds = folder(tmp_path, 2)
    out = tmp_path / "run"
    if where == "save-images":
        (out / "images").mkdir(parents=True)
        full_disk(out / "images")
        rc, _, err = cli(capsys, *run_args(ds, out), "--save-images")
        one_line(err, "cannot save the image (No space left on device); free disk space", "rerun")
    else:
        assert cli(capsys, *run_args(ds, out))[0] == 0
        assert cli(capsys, *run_args(ds, out, qf="20"))[0] == 0  # two QFs: a curve to plot
        target = tmp_path / where
        target.mkdir()
        full_disk(target)
        args = ["merge", out, "--out", target] if where == "merge" else ["report", out, "--plots", target]
        rc, _, err = cli(capsys, *args)
        one_line(err, str(target), "No space left on device")
    assert rc == 2


def test_a_record_without_its_dataset_or_model_is_one_line_on_resume(tmp_path, capsys):
    ds = folder(tmp_path, 2)
    out = tmp_path / "run"
    assert cli(capsys, *run_args(ds, out))[0] == 0
    lines = (out / "records.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    del rec["dataset"], rec["model"]
    (out / "records.jsonl").write_text("\n".join([lines[0], json.dumps(rec), *lines[2:]]) + "\n")
    for args in (run_args(ds, out), ["report", out], ["merge", out, "--out", tmp_path / "m"]):
        rc, _, err = cli(capsys, *args)
        assert rc == 2
        one_line(err, f"{out / 'records.jsonl'}", "lacks", "dataset")


@pytest.mark.parametrize("option,value,words", [
    ("--threads", "-1", "--threads -1: give a positive number of threads"),
    ("--device", "tpu", "device 'tpu': choose auto, cpu, cuda or cuda:N"),  # one line since issue 20's refactor
], ids=["threads", "device"])
def test_a_bad_threads_or_device_is_one_line(tmp_path, capsys, option, value, words):
    ds = folder(tmp_path, 1)
    args = [a for a in run_args(ds, tmp_path / "run") if a not in ("--threads", "1")]
    rc, _, err = cli(capsys, *args, option, value)
    assert rc == 2
    one_line(err, words)


def test_a_protocol_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "run", "--protocol", tmp_path, "--models", "jpeg", "--out", tmp_path / "run")
    assert rc == 2
    one_line(err, f"{tmp_path}: is a folder, not a TOML file")
    rc, out, _ = cli(capsys, "protocols", "validate", tmp_path)
    assert rc == 1 and "is a folder" in out


def test_ctrl_c_while_starting_up_is_one_line(capsys, monkeypatch):
    """Imports and argument parsing take seconds before a subcommand runs; a Ctrl-C there was a traceback."""
    import cirbench.cli as cli_mod

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod.importlib, "import_module", interrupted)
    assert main(["report", "anything"]) == 130
    err = capsys.readouterr().err
    assert err == "cirbench: interrupted; records written so far are kept (rerun to resume)\n"


def test_sigterm_is_one_line_exit_143_and_the_run_says_interrupted(tmp_path, models_dir):
    """SIGTERM (kill, a scheduler) ended the run with exit 143, no message, and "finished" in run.json."""
    ds = folder(tmp_path, 6)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(models_dir), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", INTEG_SLOW="0.5")
    proc = subprocess.Popen([sys.executable, "-m", "cirbench", *map(str, run_args(ds, out, f"{MODULE}:Slow"))],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((out / "records.jsonl").exists() and (out / "records.jsonl").stat().st_size):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no record written in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == ("cirbench: terminated (SIGTERM); records written so far are kept "
                                            "(rerun to resume)") and "Traceback" not in err
    assert info(out)["status"] == "interrupted" and info(out)["stopped"]["reason"] == "SIGTERM"
