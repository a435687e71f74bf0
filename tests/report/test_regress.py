"""``cirbench regress``: exit 0 on the untouched tree, 1 when a model or a metric is broken, 2 on errors.

Runs stay small so the suite runs in well under a minute. The mechanics run on ``samples_gray`` (five gray
photographs bundled with scikit-image, so they run on any clone); the committed baselines need the standard
datasets (``data_root``).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import read_state_dict
from torch import nn

from cirbench import metrics
from cirbench.cli import main
from cirbench.report.regress import SCHEMA, load_baseline
from cirbench.zoo.checkpoints import save_state_dict

REPO = Path(__file__).resolve().parents[2]
# The tolerances the baselines have always had (dB, dB, unitless): now each metric spec's.
DEFAULT_TOLERANCE = {"psnr": 0.005, "ssim": 0.0001, "psnrb": 0.005}
JPEG_BASELINE = REPO / "results" / "baselines" / "jpeg.json"


def regress(*args: str) -> int:
    return main(["regress", *map(str, args)])


@pytest.fixture(scope="module")
def jpeg_run(tmp_path_factory):
    """A baseline and its run: the JPEG input on samples_gray at QF 10 (a few seconds)."""
    tmp = tmp_path_factory.mktemp("jpeg")
    base, run = tmp / "base.json", tmp / "run"
    torch.set_num_threads(1)
    rc = regress("--update", "--baseline", base, "--protocol", "blind", "--models", "jpeg",
                 "--datasets", "samples_gray", "--qf", "10", "--out", run, "--note", "test")
    assert rc == 0
    return base, run


def test_update_writes_a_valid_baseline(jpeg_run):
    base, _ = jpeg_run
    data = json.loads(base.read_text())
    assert data["schema"] == SCHEMA and data["protocol"] == "blind" and data["note"] == "test"
    assert data["models"] == ["jpeg"] and data["datasets"] == ["samples_gray"] and data["qfs"] == [10]
    assert data["tolerance"] == DEFAULT_TOLERANCE
    assert data["provenance"]["encoder"]["encoder"] == "pillow"
    assert {(e["space"], e["metric"]) for e in data["entries"]} == {("gray", m) for m in ("psnr", "ssim", "psnrb")}
    assert all(e["n_images"] == 5 and e["tol"] == DEFAULT_TOLERANCE[e["metric"]] for e in data["entries"])
    load_baseline(base)  # reads back through the checker


def test_untouched_tree_passes(jpeg_run, capsys):
    base, run = jpeg_run
    assert regress("--baseline", base) == 0  # runs the protocol itself, in a temporary directory
    out = capsys.readouterr()
    assert "REGRESSION" not in out.out and "all 3 baseline numbers within tolerance" in out.err
    assert regress("--baseline", base, run) == 0  # or checks a finished run


def test_committed_jpeg_baseline_classic5_matches_a_fresh_run(data_root, capsys):
    data = load_baseline(JPEG_BASELINE)
    assert data["protocol"] == "blind" and data["qfs"] == [10, 20, 30, 40]
    assert {"classic5", "live1", "live1_gray", "bsds500", "bsds500_gray"} <= set(data["datasets"])
    assert all(e["tol"] == DEFAULT_TOLERANCE[e["metric"]] for e in data["entries"])
    assert regress("--baseline", JPEG_BASELINE, "--datasets", "classic5") == 0
    out = capsys.readouterr()
    assert "all 12 baseline numbers within tolerance" in out.err


def test_metric_without_rounding_is_a_regression(data_root, monkeypatch, capsys):
    # KAIR rounds Y to integers; BasicSR does not. Dropping the rounding moves LIVE1's Y numbers.
    monkeypatch.setattr(metrics.spaces, "round_y", lambda y_float, out: np.copyto(out, y_float) or out)
    assert regress("--baseline", JPEG_BASELINE, "--datasets", "live1", "--qf", "10") == 1
    err = capsys.readouterr().err
    assert "REGRESSION jpeg/live1/qf10/y/ssim: expected" in err
    assert "delta" in err and "tol 0.000100" in err
    assert "live1/qf10/rgb/psnr:" not in err  # RGB PSNR never uses Y: unaffected, not named


class TinyNet(nn.Module):
    """Residual two-layer conv net, fast enough for Classic5 in a test; tanh (not ReLU) so no unit is dead
    and any one weight moves the output."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1))

    def forward(self, x):
        return x + 0.1 * self.body(x)


@pytest.fixture
def tiny_card(tmp_path, monkeypatch):
    """A model card with saved weights, found through $CIRBENCH_MODELS."""
    from cirbench import archs

    monkeypatch.setitem(archs.REGISTRY.entries, "tiny-regress-net", TinyNet)
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny-regress.toml").write_text('name = "tiny-regress"\narch = "tiny-regress-net"\n'
                                             'description = "test model"\n[weights]\npath = "tiny.safetensors"\n')
    torch.manual_seed(0)
    weights = cards / "tiny.safetensors"
    save_state_dict(TinyNet().state_dict(), weights)
    monkeypatch.setenv("CIRBENCH_MODELS", str(cards))
    return weights


def test_model_with_one_weight_changed_is_a_regression(tiny_card, tmp_path, capsys):
    base = tmp_path / "tiny.json"
    assert regress("--update", "--baseline", base, "--protocol", "blind", "--models", "tiny-regress",
                   "--datasets", "samples_gray", "--qf", "10") == 0
    assert regress("--baseline", base) == 0
    capsys.readouterr()

    sd = read_state_dict(tiny_card)
    sd["body.2.weight"][0, 0, 1, 1] += 0.5  # one weight of the last layer
    save_state_dict(sd, tiny_card)
    assert regress("--baseline", base) == 1
    err = capsys.readouterr().err
    for metric in ("psnr", "ssim", "psnrb"):
        assert f"REGRESSION tiny-regress/samples_gray/qf10/gray/{metric}: expected" in err


def test_missing_baseline_file_is_a_usage_error(tmp_path, capsys):
    assert regress("--baseline", tmp_path / "nope.json") == 2
    assert "baseline file not found" in capsys.readouterr().err


def test_usage_errors(jpeg_run, tmp_path, capsys):
    base, run = jpeg_run
    assert regress("--baseline", base, run, run) == 2  # one RUN_DIR at a time
    assert regress("--update", "--baseline", tmp_path / "new.json") == 2  # what to run?
    assert regress("--baseline", base, tmp_path) == 2  # not a run directory
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 99}')
    assert regress("--baseline", bad) == 2
    err = capsys.readouterr().err
    assert "one RUN_DIR at a time" in err and "needs --protocol and --models" in err and "schema" in err


def test_absent_dataset_is_a_data_error(jpeg_run, tmp_path, capsys):
    # With an empty data root a baseline of a standard dataset cannot be run.
    base, _ = jpeg_run
    data = json.loads(base.read_text())
    data["datasets"] = ["bsds500"]
    for e in data["entries"]:
        e["dataset"] = "bsds500"
    other = tmp_path / "bsds.json"
    other.write_text(json.dumps(data))
    assert regress("--baseline", other, "--data-root", tmp_path / "empty") == 2
    assert "bsds500" in capsys.readouterr().err


def test_row_absent_from_run_fails_and_new_row_does_not(jpeg_run, tmp_path, capsys):
    base, run = jpeg_run
    data = json.loads(base.read_text())
    extra = {**data["entries"][0], "qf": 20}
    data["entries"].append(extra)
    (tmp_path / "more.json").write_text(json.dumps(data))
    assert regress("--baseline", tmp_path / "more.json", run) == 1
    assert f"REGRESSION jpeg/samples_gray/qf20/gray/{extra['metric']}: expected" in capsys.readouterr().err

    data["entries"] = data["entries"][1:-1]  # the run now holds one group metric the baseline lacks
    (tmp_path / "fewer.json").write_text(json.dumps(data))
    assert regress("--baseline", tmp_path / "fewer.json", run) == 0
    out = capsys.readouterr()
    assert " new" in out.out and "1 new" in out.err


def test_tolerance_override_and_spread(jpeg_run, tmp_path, capsys):
    base, run = jpeg_run
    # A second "run" whose mean PSNR is 0.05 dB higher: --update sets the PSNR tolerance to 4 x 0.05 dB.
    other = tmp_path / "run2"
    shutil.copytree(run, other)
    lines = (other / "records.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["psnr"] += 0.05 * 5  # the mean over 5 images moves by 0.05
    lines[0] = json.dumps(rec)
    (other / "records.jsonl").write_text("\n".join(lines) + "\n")
    wide = tmp_path / "wide.json"
    assert regress("--update", "--baseline", wide, run, other) == 0
    data = json.loads(wide.read_text())
    assert data["tolerance"]["psnr"] == pytest.approx(0.2)
    assert data["tolerance"]["ssim"] == DEFAULT_TOLERANCE["ssim"]
    assert data["measured_spread"]["max_abs_delta"]["psnr"] == pytest.approx(0.05)
    assert regress("--baseline", wide, other) == 0  # within the measured tolerance
    assert regress("--baseline", base, other) == 1
    assert regress("--baseline", base, other, "--tol", "psnr=0.1") == 0
    capsys.readouterr()


@pytest.mark.parametrize("edit,words", [
    (lambda text: text.replace('"value": ', '"value": null, "was": ', 1), "value None and tol"),
    (lambda text: text.replace('"value": ', '"value": "abc", "was": ', 1), "value 'abc' and tol"),
    (lambda text: text.encode("utf-8").replace(b'"note"', b'"n\xffte"', 1), "not UTF-8 text"),
], ids=["null", "abc", "not-utf8"])
def test_a_broken_baseline_is_one_line(jpeg_run, tmp_path, capsys, edit, words):
    """Issue 23: a null or "abc" value, or bytes that are not UTF-8, once ended in a traceback."""
    base, run = jpeg_run
    broken = tmp_path / "broken.json"
    text = edit(base.read_text())
    broken.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert regress(run, "--baseline", broken) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cirbench: error: ") and "Traceback" not in err
    assert str(broken) in err and words in err
