"""Reliability (issue 8): bad inputs, interrupted runs and training, determinism — through the CLI.

Every bad input must give ONE line on stderr (``cirbench: error: ...``) naming the file and the fix,
a non-zero exit, no traceback (unless ``--debug``), and leave every record written before it valid.
The dataset folders hold good 48x40 PNGs named ``a*.png`` that sort before the bad ``z*`` file, so
their records are on disk when the bad file is reached. See docs/reliability.md for the table.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench import images
from cirbench.cli import main
from cirbench.errors import InvalidInputs
from cirbench.metrics import spaces_of
from cirbench.records import FIELDS, KEY

GOOD = ("a0.png", "a1.png", "a2.png")
SIZE = (48, 40)  # width, height of the good images
MODULE = "cirrel_models"  # the user models below, importable as cirrel_models:NAME

_MODELS_SRC = '''
"""Tiny user models for tests/test_reliability.py."""
import os
import time

import torch
from torch import nn

SEEN = []  # (H, W) of every input the tiling model saw


class TileConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        SEEN.append(tuple(x.shape[-2:]))
        return x + 0.01 * self.conv(x)


class Seeded(nn.Module):
    """A random conv, the same on every construction."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        with torch.no_grad():
            for p in self.conv.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)

    def forward(self, x):
        return x + self.conv(x)


class NaNNet(nn.Module):
    def forward(self, x):
        return x * float("nan")


class InfNet(nn.Module):
    def forward(self, x):
        return x + float("inf")


class Slow(nn.Module):
    """Identity; with CIRREL_SLOW set it sleeps per image, then stalls on the 4th (to be killed)."""

    calls = 0

    def forward(self, x):
        Slow.calls += 1
        if os.environ.get("CIRREL_SLOW"):
            time.sleep(0.2 if Slow.calls <= 3 else 120)
        return x


class TrainNet(nn.Module):
    """A tiny trainable conv; with CIRREL_SLOW set every forward sleeps (so a kill lands mid-run)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        if os.environ.get("CIRREL_SLOW"):
            time.sleep(0.08)
        return x + self.conv(x)
'''


# --- helpers -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("usermodels")
    (d / f"{MODULE}.py").write_text(_MODELS_SRC)
    return d


@pytest.fixture
def user_models(models_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(models_dir))
    import importlib

    return importlib.import_module(MODULE)


def _rgb(seed: int = 0, size=SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def make_folder(tmp_path: Path, n_good: int = 3) -> Path:
    ds = tmp_path / "ds"
    ds.mkdir()
    for i, name in enumerate(GOOD[:n_good]):
        Image.fromarray(_rgb(i)).save(ds / name)
    return ds


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_args(ds: Path, out: Path, models: str = "jpeg", protocol: str = "smoke") -> list:
    return ["run", "--protocol", protocol, "--qf", "10", "--threads", "1", "--models", models,
            "--datasets", f"folder:{ds}", "--out", out]


def one_line_error(err: str, *needles: str) -> str:
    """The whole of stderr is one ``cirbench: error:`` line holding every needle."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cirbench: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def records(out: Path) -> list[dict]:
    """Every line complete, parseable, with all fields and a unique key."""
    raw = (out / "records.jsonl").read_bytes() if (out / "records.jsonl").exists() else b""
    assert not raw or raw.endswith(b"\n"), "torn last line"
    recs = [json.loads(line) for line in raw.splitlines()]
    keys = [tuple(r[k] for k in KEY) for r in recs]
    assert len(keys) == len(set(keys)), "duplicate records"
    for r in recs:
        assert set(FIELDS) <= set(r)
    return recs


def images_of(recs: list[dict]) -> set[str]:
    return {r["image"] for r in recs}


def _png_bytes(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (colour) but carries almost no data: only the header is read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


# --- bad images that stop the run ----------------------------------------------------------------------
def _truncated_png(p):
    data = _png_bytes(_rgb(7))
    p.write_bytes(data[: len(data) // 2])


def _truncated_jpeg(p):
    data = _png_bytes(_rgb(7), "JPEG", quality=90)
    p.write_bytes(data[: len(data) * 6 // 10])


def _garbage(p):
    p.write_bytes(b"this is not an image\n" * 20)


def _png16(p):
    Image.fromarray(np.arange(48 * 40, dtype=np.uint16).reshape(40, 48) * 30).save(p)


def _cmyk(p):
    Image.new("CMYK", SIZE, (10, 20, 30, 40)).save(p, quality=90)


def _tiny(size):
    return lambda p: Image.new("RGB", size, (90, 120, 30)).save(p)


def _huge_header(p):
    p.write_bytes(_png_header(20000, 20000))  # 400 MP > MAX_PIXELS (268 MP): refused from the header


REFUSED = [
    # (bad file, writer, words of the message)
    ("z_truncated.png", _truncated_png, ("corrupt or truncated", "replace the file")),
    ("z_truncated.jpg", _truncated_jpeg, ("corrupt or truncated", "replace the file")),
    ("z_not_an_image.png", _garbage, ("not an image", "remove it from the dataset folder")),
    ("z_16bit.png", _png16, ("16-bit", "convert to 8-bit")),
    ("z_cmyk.jpg", _cmyk, ("CMYK", "convert to RGB")),
    ("z_1x1.png", _tiny((1, 1)), ("1x1 is smaller than 11x11", "use larger images")),
    ("z_7x5.png", _tiny((7, 5)), ("7x5 is smaller than 11x11", "use larger images")),
    ("z_huge.png", _huge_header, ("decompression-bomb guard", "split or downscale")),
]


def preflight_error(err: str, *files_and_words) -> list[str]:
    """stderr after a failed preflight: one ``cirbench: FILE: problem`` line per bad file, then one error line;
    no traceback, no progress of any model."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("cirbench: error: ") and "Nothing was computed" in lines[-1], err
    assert all(line.startswith(("cirbench: ", "warning: ")) for line in lines), err
    for needle in files_and_words:
        assert any(needle in line for line in lines[:-1]), (needle, err)
    return lines[:-1]


@pytest.mark.parametrize("name,write,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_image_stops_before_any_compute(tmp_path, capsys, name, write, words):
    ds = make_folder(tmp_path)
    write(ds / name)
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 2
    (line,) = preflight_error(err, str(ds / name), *words)
    assert line.startswith(f"cirbench: {ds / name}: ")
    assert records(out) == []  # nothing was computed


def test_every_bad_file_is_named_at_once_then_skip_invalid_runs_the_rest(tmp_path, capsys):
    """The issue's folder: six bad files beside RGBA, palette and two good images."""
    ds = make_folder(tmp_path, 2)
    bad = {"b_truncated.png": _truncated_png, "b_text.png": _garbage, "b_16bit.png": _png16, "b_cmyk.jpg": _cmyk,
           "b_1x1.png": _tiny((1, 1)), "b_7x5.png": _tiny((7, 5))}
    for name, write in bad.items():
        write(ds / name)
    _rgba(ds / "c_rgba.png")
    _palette(ds / "c_palette.png")
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 2
    lines = preflight_error(err, *(str(ds / n) for n in bad))
    assert len([x for x in lines if x.startswith("cirbench: ")]) == 6 and records(out) == []
    rc, _, err = cli(capsys, *run_args(ds, out), "--skip-invalid")
    assert rc == 0, err
    assert images_of(records(out)) == {"a0.png", "a1.png", "c_rgba.png", "c_palette.png"}
    assert sum(f"skipped: {ds / n}" in err for n in bad) == 6
    assert err.count("alpha channel dropped") == 1  # warnings once per file, not per QF or pass
    info = json.loads((out / "run.json").read_text())
    assert set(info["skipped_images"]["ds"]) == set(bad)


def test_bomb_guard_limit_is_max_pixels(tmp_path, capsys, monkeypatch):
    """Above images.MAX_PIXELS Pillow's bomb guard refuses the file (a small limit stands in for 9000x9000)."""
    monkeypatch.setattr(images, "MAX_PIXELS", 3000)  # the good 48x40 = 1920 px pass
    ds = make_folder(tmp_path)
    Image.fromarray(_rgb(5, (64, 64))).save(ds / "z_big.png")  # 4096 px
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 2
    preflight_error(err, str(ds / "z_big.png"), "larger than 3000 pixels", "decompression-bomb guard")


def test_debug_shows_the_traceback(tmp_path, capsys):
    ds = make_folder(tmp_path, 1)
    _garbage(ds / "z.png")
    with pytest.raises(InvalidInputs, match="cannot be evaluated"):
        main(["--debug", *map(str, run_args(ds, tmp_path / "run"))])


# --- awkward images that are evaluated ------------------------------------------------------------------
def _rgba(p):
    Image.fromarray(np.dstack([_rgb(3), np.full((40, 48), 128, np.uint8)])).save(p)


def _la(p):
    gray = Image.fromarray(_rgb(3)[..., 0])
    Image.merge("LA", (gray, gray.point(lambda v: 255 - v))).save(p)


def _palette(p):
    Image.fromarray(_rgb(3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(p)


def _palette_gray(p):
    Image.fromarray(_rgb(3)[..., 0]).convert("P").save(p)


def _exif_rotated(p):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(_rgb(3, (56, 40))).save(p, quality=95, exif=exif)


ACCEPTED = [
    # (file, writer, warning or None, metric spaces, (height, width) recorded)
    ("z_rgba.png", _rgba, "alpha channel dropped", {"y", "rgb"}, (40, 48)),
    ("z_la.png", _la, "alpha channel dropped", {"gray"}, (40, 48)),
    ("z_palette.png", _palette, None, {"y", "rgb"}, (40, 48)),
    ("z_palette_gray.png", _palette_gray, None, {"gray"}, (40, 48)),
    ("z_exif6.jpg", _exif_rotated, "EXIF orientation ignored", {"y", "rgb"}, (40, 56)),  # stored order
]


@pytest.mark.parametrize("name,write,warning,spaces,shape", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_awkward_image_is_evaluated(tmp_path, capsys, name, write, warning, spaces, shape):
    ds = make_folder(tmp_path, 1)
    write(ds / name)
    (ds / "notes.txt").write_text("not an image, and not an image suffix: ignored")
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 0, err
    recs = records(out)
    assert images_of(recs) == {"a0.png", name}  # the .txt is not listed
    mine = [r for r in recs if r["image"] == name]
    assert {r["space"] for r in mine} >= spaces
    assert {(r["height"], r["width"]) for r in mine} == {shape}
    warned = [line for line in err.splitlines() if str(ds / name) in line]
    assert len(warned) == (warning is not None), err  # once per file
    if warning:
        assert warned[0] == f"warning: {ds / name}: {warning}" or warned[0].startswith(
            f"warning: {ds / name}: {warning}")


def test_warning_reaches_stderr_as_one_line(tmp_path, models_dir):
    """Outside pytest's warning capture (a real process) a warning is one ``warning:`` line."""
    ds = make_folder(tmp_path, 1)
    _rgba(ds / "z_rgba.png")
    proc = subprocess.run([sys.executable, "-m", "cirbench", *map(str, run_args(ds, tmp_path / "run"))],
                          capture_output=True, text=True, timeout=120, env=_env(models_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {ds / 'z_rgba.png'}: alpha channel dropped\n" in proc.stderr
    assert "Traceback" not in proc.stderr and "warnings.warn" not in proc.stderr


# --- huge images: automatic tiling ------------------------------------------------------------------------
def test_huge_image_is_tiled_automatically(tmp_path, capsys, monkeypatch, user_models):
    """Images over InferenceSettings.auto_tile_pixels (16.7 MP, e.g. 9000x9000) run in auto_tile tiles;
    small thresholds stand in for a real 9000x9000 here."""
    from cirbench.zoo.inference import InferenceSettings

    named = InferenceSettings.named

    def small(cls, name, **kw):
        return replace(named(name, **kw), auto_tile_pixels=32 * 32, auto_tile=16, overlap=8)

    monkeypatch.setattr(InferenceSettings, "named", classmethod(small))
    ds = make_folder(tmp_path, 1)
    user_models.SEEN.clear()
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:TileConv"), "--no-profile")  # profiling is 256x256
    assert rc == 0, err
    assert user_models.SEEN and max(max(s) for s in user_models.SEEN) <= 16  # memory bounded by the tile
    assert len(user_models.SEEN) > 1
    assert {r["tile"] for r in records(out)} == {16}


# --- data, names, configuration ---------------------------------------------------------------------------
def test_missing_data_root_names_folder_and_how_to_get_it(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = cli(capsys, "run", "--protocol", "blind", "--qf", "10", "--models", "jpeg", "--datasets",
                     "bsds500", "--data-root", empty, "--out", tmp_path / "run")
    assert rc == 2
    one_line_error(err, "bsds500", str(empty / "bsds500" / "test"), "cirbench datasets fetch bsds500")


def test_missing_folder_dataset(tmp_path, capsys):
    rc, _, err = cli(capsys, *run_args(tmp_path / "nowhere", tmp_path / "run"))
    assert rc == 2
    one_line_error(err, str(tmp_path / "nowhere"), "folder not found")


def test_manifest_checksum_mismatch_names_the_file(tmp_path, capsys, data_root):
    root = tmp_path / "data"
    shutil.copytree(data_root / "classic5", root / "classic5")
    bad = root / "classic5" / "lena.bmp"
    bad.chmod(0o644)
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    bad.write_bytes(bytes(data))
    rc, out, _ = cli(capsys, "datasets", "verify", "classic5", "--data-root", root)
    assert rc == 1
    assert "classic5: FAILED" in out
    assert "lena.bmp: sha256 differs from the manifest" in out


UNKNOWN = [
    (["--protocol", "blnd", "--models", "jpeg"], "unknown protocol 'blnd' (did you mean 'blind'?)"),
    (["--protocol", "smoke", "--models", "promptcir-compat"],
     "unknown model 'promptcir-compat' (did you mean 'promptcir-compact'?)"),
    (["--protocol", "smoke", "--models", "jpeg", "--datasets", "live2"],
     "unknown dataset 'live2' (did you mean 'live1'?)"),
]


@pytest.mark.parametrize("args,message", UNKNOWN, ids=["protocol", "model", "dataset"])
def test_unknown_names_suggest_the_closest(tmp_path, capsys, args, message):
    rc, _, err = cli(capsys, "run", *args, "--out", tmp_path / "run")
    assert rc == 2
    one_line_error(err, message)


def test_unknown_dataset_in_verify_suggests(capsys):
    rc, _, err = cli(capsys, "datasets", "verify", "clasic5")
    assert rc == 2
    one_line_error(err, "unknown dataset 'clasic5' (did you mean 'classic5'?)")


_PROTOCOL = 'name = "p"\nversion = "1"\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n'
_CARD = 'name = "c"\narch = "fbcnn"\n'
_TRAIN = '[model]\narch = "x"\n[data]\nfolders = ["."]\n[stage1]\nsteps = 1\n'
CONFIGS = [
    # (option, file content, words of the message)
    ("--protocol", 'name = "p"\nversion = \n', ("malformed TOML",)),
    ("--protocol", _PROTOCOL.replace("qfs", "qfz"), ("[tasks #1]", "unknown key 'qfz'", "did you mean 'qfs'")),
    ("--protocol", _PROTOCOL.replace("name", "nmae"), ("unknown key 'nmae'", "did you mean 'name'")),
    ("--models", 'name = "c"\narch = [\n', ("malformed TOML",)),
    ("--models", _CARD + "archh = 'x'\n", ("unknown key 'archh'", "did you mean 'arch'")),
    ("--models", _CARD + "[weights]\npaht = 'w.pth'\n",
     ("[weights]", "unknown key 'weights.paht'", "did you mean 'path'")),
    ("train", _TRAIN + "[optim]\nlrr = 1.0\n", ("unknown key 'optim.lrr'", "did you mean 'lr'")),
    ("train", "[model\n", ("malformed TOML",)),
]


@pytest.mark.parametrize("option,text,words", CONFIGS,
                         ids=["proto-toml", "proto-task-key", "proto-key", "card-toml", "card-key",
                              "card-weights-key", "train-key", "train-toml"])
def test_bad_config_names_file_and_key(tmp_path, capsys, option, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    if option == "train":
        args = ["train", "--config", path, "--out", tmp_path / "train", "--allow-code"]
    else:
        args = ["run", "--protocol", "smoke", "--qf", "10", "--models", "jpeg", option, path,
                "--out", tmp_path / "run"]
    rc, _, err = cli(capsys, *args)
    assert rc == 2
    one_line_error(err, str(path), *words)


# --- weights ---------------------------------------------------------------------------------------------
class _Evil:
    """Unpickling this calls open(marker, "w"): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_carrying_code_is_refused(tmp_path, capsys, user_models):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3), "payload": _Evil(marker)}, evil)
    ds = make_folder(tmp_path, 1)
    rc, _, err = cli(capsys, *run_args(ds, tmp_path / "run", f"{MODULE}:TileConv"), "--weights", evil)
    assert rc == 2
    one_line_error(err, f"refused to load {evil}", "Re-save it as a plain state_dict or .safetensors")
    assert not marker.exists()


WRONG = [
    ({"body.0.weight": torch.zeros(8, 3, 3, 3), "body.0.bias": torch.zeros(8)},
     ("missing keys (2)", "conv.weight", "unexpected keys (2)", "body.0.weight", "another architecture")),
    ({"conv.weight": torch.zeros(8, 3, 3, 3), "conv.bias": torch.zeros(8)},
     ("mis-shaped keys (2)", "conv.weight: expected [3, 3, 3, 3], got [8, 3, 3, 3]")),
]


@pytest.mark.parametrize("state,words", WRONG, ids=["architecture", "shape"])
def test_checkpoint_for_another_model_lists_keys(tmp_path, capsys, user_models, state, words):
    from safetensors.torch import save_file

    weights = tmp_path / "other.safetensors"
    save_file(state, weights)
    ds = make_folder(tmp_path, 1)
    rc, _, err = cli(capsys, *run_args(ds, tmp_path / "run", f"{MODULE}:TileConv"), "--weights", weights)
    assert rc == 2
    one_line_error(err, str(weights), "does not match TileConv", *words)


def test_rerun_with_other_weights_is_refused(tmp_path, capsys, user_models):
    """A resumed run skips keys on disk, and keys do not name weights: retrained weights must not mix in."""
    from safetensors.torch import save_file

    ds = make_folder(tmp_path, 2)
    out = tmp_path / "run"
    first, second = tmp_path / "w1.safetensors", tmp_path / "w2.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3, 3, 3), "conv.bias": torch.zeros(3)}, first)
    save_file({"conv.weight": torch.full((3, 3, 3, 3), 0.01), "conv.bias": torch.zeros(3)}, second)
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:TileConv"), "--weights", first)
    assert rc == 0, err
    before = (out / "records.jsonl").read_bytes()
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:TileConv"), "--weights", first)
    assert rc == 0, err  # the same weights resume (nothing to do)
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:TileConv"), "--weights", second)
    assert rc == 2
    one_line_error(err, str(out), "'TileConv' were made with other weights", "use another --out")
    assert (out / "records.jsonl").read_bytes() == before


# --- NaN / Inf outputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["NaNNet", "InfNet"])
def test_nonfinite_output_is_flagged_and_run_goes_on(tmp_path, capsys, user_models, model):
    ds = make_folder(tmp_path, 2)
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *run_args(ds, out, f"{MODULE}:{model}"))
    assert rc == 0, err
    recs = records(out)
    assert images_of(recs) == {"a0.png", "a1.png"}
    assert all(r["nonfinite"] is True for r in recs)
    assert "warning: 2 outputs held NaN/Inf (flagged in records)" in err
    assert "Traceback" not in err


# --- output folder -------------------------------------------------------------------------------------
def test_out_not_writable(tmp_path, capsys):
    ds = make_folder(tmp_path, 1)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, so nothing can be created under it (even by root)")
    rc, _, err = cli(capsys, *run_args(ds, blocker / "sub"))
    assert rc == 2
    one_line_error(err, str(blocker / "sub"), "output directory is not writable", "choose another --out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_out_read_only_directory(tmp_path, capsys):
    ds = make_folder(tmp_path, 1)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        rc, _, err = cli(capsys, *run_args(ds, ro / "run"))
    finally:
        ro.chmod(0o700)
    assert rc == 2
    one_line_error(err, str(ro / "run"), "choose another --out")


def test_disk_full_stops_cleanly_and_resumes(tmp_path, capsys, monkeypatch):
    ds = make_folder(tmp_path)
    out = tmp_path / "run"
    real_fsync, synced = os.fsync, []

    def fsync(fd):
        # Only the records file's fsyncs count: the preflight cache and run.json sync too, and which of those
        # came first used to decide whether a0's or a1's batch was refused; the disk fills at the third batch.
        path = out / "records.jsonl"
        if path.exists() and os.path.samestat(os.fstat(fd), path.stat()):
            if len(synced) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 2
    one_line_error(err, str(out / "records.jsonl"), "No space left on device", "free disk space",
                   "rerun the same command")
    assert len(synced) == 2 and {"a0.png", "a1.png"} <= images_of(records(out))  # the synced records are intact
    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 0, err
    assert len(records(out)) == len(spaces_of(3)) * len(GOOD)


# --- interruption: cirbench run ----------------------------------------------------------------------------
def _env(models_dir: Path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(models_dir), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before the kill: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the process")
        time.sleep(0.02)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _without_timing(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in recs]


def test_kill_9_during_run_then_rerun(tmp_path, capsys, models_dir, user_models):
    ds = make_folder(tmp_path)
    for i in range(3, 6):
        Image.fromarray(_rgb(i)).save(ds / f"b{i}.png")
    out, ref = tmp_path / "run", tmp_path / "ref"
    # No profile: its forwards (on the network already built) would count as Slow's calls.
    args = [str(a) for a in run_args(ds, out, f"{MODULE}:Slow")] + ["--no-profile"]
    proc = subprocess.Popen([sys.executable, "-m", "cirbench", *args], cwd=tmp_path, text=True,
                            env=_env(models_dir, CIRREL_SLOW="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _wait_for(lambda: _lines(out / "records.jsonl") >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    done_before = images_of(records(out))  # complete lines only; a torn tail would be repaired below
    assert 1 <= len(done_before) < 6

    rc, _, err = cli(capsys, *args)  # the same command again (in-process: no sleep)
    assert rc == 0, err
    assert f"({len(done_before)} model results already recorded)" in err
    rc, _, err = cli(capsys, *run_args(ds, ref, f"{MODULE}:Slow"))  # an uninterrupted run
    assert rc == 0, err
    got, want = records(out), records(ref)
    assert len(got) == len(want) == 6 * len(spaces_of(3))
    key = lambda r: tuple(r[k] for k in KEY)  # noqa: E731
    assert sorted(_without_timing(got), key=key) == sorted(_without_timing(want), key=key)


def test_torn_last_line_is_recomputed(tmp_path, capsys):
    ds = make_folder(tmp_path)
    out = tmp_path / "run"
    assert cli(capsys, *run_args(ds, out))[0] == 0
    path = out / "records.jsonl"
    full = path.read_bytes()
    lines = full.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a write cut by a crash
    rc, _, err = cli(capsys, *run_args(ds, out))
    assert rc == 0, err
    assert path.read_bytes() == full  # the cut record recomputed identically, nothing duplicated


# --- interruption: cirbench train ---------------------------------------------------------------------------
def _train_config(tmp_path: Path, steps: int, every: int = 10) -> Path:
    data = tmp_path / "train_images"
    data.mkdir()
    for i in range(3):
        Image.fromarray(_rgb(10 + i)).save(data / f"t{i}.png")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(textwrap.dedent(f"""\
        seed = 0
        checkpoint_every = {every}
        threads = 1
        [model]
        arch = "{MODULE}:TrainNet"
        [data]
        folders = ["{data}"]
        patch_size = 16
        batch_size = 2
        [stage1]
        qfs = [10, 30]
        steps = {steps}
        [optim]
        warmup_steps = 2
        [runtime]
        device = "cpu"
        """))
    return cfg


def test_kill_9_during_train_then_resume(tmp_path, capsys, monkeypatch, models_dir, user_models):
    import cirbench.train.loop
    from cirbench.train.log import LOG_NAME, read_log
    from cirbench.train.loop import CHECKPOINT_NAME

    steps = 30
    cfg = _train_config(tmp_path, steps)
    out, ref = tmp_path / "train", tmp_path / "ref"
    proc = subprocess.Popen([sys.executable, "-m", "cirbench", "train", "--config", str(cfg), "--out", str(out),
                             "--allow-code"],
                            cwd=tmp_path, text=True, env=_env(models_dir, CIRREL_SLOW="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: (out / CHECKPOINT_NAME).exists() and _lines(out / LOG_NAME) >= 12, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    ckpt = torch.load(out / CHECKPOINT_NAME, map_location="cpu", weights_only=True)  # whole, never torn
    saved = ckpt["step"]
    assert saved in (10, 20)
    before = {r["step"]: r["loss"] for r in read_log(out / LOG_NAME)}
    (out / f".{CHECKPOINT_NAME}.x1y2z3.tmp").write_bytes(b"half a checkpoint")  # as if killed mid-save

    monkeypatch.setattr(cirbench.train.loop, "write_curves", lambda *a: None)  # matplotlib is slow
    rc, stdout, err = cli(capsys, "train", "--config", cfg, "--out", out, "--resume", "--allow-code")
    assert rc == 0, err
    assert f"finished at step {steps}" in stdout
    log = read_log(out / LOG_NAME)
    assert [r["step"] for r in log] == list(range(1, steps + 1))  # no step lost or repeated
    assert all(log[s - 1]["loss"] == before[s] for s in range(1, saved + 1))  # kept up to the checkpoint
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]  # never read, and cleaned up

    rc, _, err = cli(capsys, "train", "--config", cfg, "--out", ref, "--allow-code")  # uninterrupted, for comparison
    assert rc == 0, err
    assert [r["loss"] for r in log] == [r["loss"] for r in read_log(ref / LOG_NAME)]


def test_train_refuses_to_overwrite_without_resume(tmp_path, capsys, monkeypatch, user_models):
    import cirbench.train.loop

    monkeypatch.setattr(cirbench.train.loop, "write_curves", lambda *a: None)  # matplotlib is slow
    cfg = _train_config(tmp_path, 2)
    out = tmp_path / "train"
    assert cli(capsys, "train", "--config", cfg, "--out", out, "--allow-code")[0] == 0
    rc, _, err = cli(capsys, "train", "--config", cfg, "--out", out, "--allow-code")
    assert rc == 2
    one_line_error(err, str(out), "pass --resume or pick another --out")


# --- determinism ----------------------------------------------------------------------------------------------
def test_two_runs_give_identical_records(tmp_path, capsys, user_models):
    ds = make_folder(tmp_path)
    texts = []
    for run in ("one", "two"):
        out = tmp_path / run
        for model in ("jpeg", f"{MODULE}:Seeded"):
            rc, _, err = cli(capsys, *run_args(ds, out, model))
            assert rc == 0, err
        texts.append(re.sub(r'"seconds": [^,]+, ', "", (out / "records.jsonl").read_text()))
    assert texts[0] == texts[1]
    assert texts[0].count("\n") == 2 * len(spaces_of(3)) * len(GOOD) and '"seconds"' not in texts[0]


# --- what was asked ---------------------------------------------------------------------------------------------
def test_qf_without_protocol_runs_every_qf_given(tmp_path, capsys):
    """Without --protocol, --datasets/--qf define an ad-hoc blind run on exactly those values."""
    ds = make_folder(tmp_path, 1)
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "run", "--models", "jpeg", "--datasets", f"folder:{ds}", "--qf", "10,40,90",
                     "--out", out)
    assert rc == 0, err
    recs = records(out)
    assert {r["qf"] for r in recs} == {10, 40, 90}
    assert {r["dataset"] for r in recs} == {"ds"}  # labelled by the folder's name
    info = json.loads((out / "run.json").read_text())
    assert info["protocol"]["name"] == "adhoc" and info["datasets"]["ds"]["path"] == str(ds)
    rc, out_text, _ = cli(capsys, "report", out)
    assert "ds QF 90" in out_text and str(ds) not in out_text
    rc, _, err = cli(capsys, "run", "--protocol", "blind", "--models", "jpeg", "--datasets", f"folder:{ds}",
                     "--qf", "10,40,90", "--out", tmp_path / "other")
    assert rc == 2
    one_line_error(err, "--qf 90: protocol 'blind' has QF 10,20,30,40")


def test_fresh_machine_runs_on_samples(tmp_path, capsys, monkeypatch):
    """No data root at all: the main job says how to get each set and runs on scikit-image's photographs."""
    monkeypatch.setenv("CIRBENCH_DATA", str(tmp_path / "empty"))
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "run", "--protocol", "smoke", "--models", "jpeg", "--out", out)
    assert rc == 0, err
    assert "cirbench datasets fetch classic5" in err and "cirbench datasets fetch live1" in err
    assert {r["dataset"] for r in records(out)} == {"samples", "samples_gray"}
