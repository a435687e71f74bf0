"""A user's metric through the command line: ``cirbench run --metrics psnr,mymetrics:mae`` computes exactly those,
the CSV report carries the value an independent computation gives, and the Markdown report ranks it lower-is-better."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from cirbench.cli import main
from cirbench.records import iter_records, read_run_info

SAMPLES_GRAY = {"camera.png": skimage.data.camera, "coins.png": skimage.data.coins, "brick.png": skimage.data.brick,
                "grass.png": skimage.data.grass, "gravel.png": skimage.data.gravel}


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    (tmp_path / "mymetrics.py").write_text(
        "import numpy as np\n\n"
        "def mae(restored, target):\n"
        '    """Mean absolute error, 0..255."""\n'
        "    return float(np.abs(restored.astype(np.float64) - target.astype(np.float64)).mean())\n\n"
        "mae.higher_is_better = False\n")
    # Two "models" on NCHW batches in [0, 1]: one changes nothing, one brightens by 6 levels (a larger MAE).
    (tmp_path / "mymodels.py").write_text("def same(x):\n    return x\n\ndef bright(x):\n    return x + 6 / 255\n")
    monkeypatch.chdir(tmp_path)  # module:attr comes from the current folder, as a user types it there
    return tmp_path


def _independent_mae(qf: int) -> float:
    """Pillow's JPEG of each ground truth against it, in numpy: no cirbench code."""
    values = []
    for load in SAMPLES_GRAY.values():
        gt = load()
        buf = io.BytesIO()
        Image.fromarray(gt).save(buf, "JPEG", quality=qf)
        jp = np.asarray(Image.open(buf))
        values.append(np.abs(jp.astype(np.float64) - gt.astype(np.float64)).mean())
    return float(np.mean(values))


def test_user_metric_runs_ranks_and_reports(user_code, capsys):
    out = user_code / "run"
    rc = main(["run", "--models", "jpeg,mymodels:bright,mymodels:same", "--datasets", "samples_gray",
               "--qf", "10", "--metrics", "psnr,mymetrics:mae", "--out", str(out), "--no-profile"])
    assert rc == 0
    recs = list(iter_records(out))
    assert recs and all({"psnr", "mae"} <= set(r) and "ssim" not in r and "psnrb" not in r for r in recs)
    spec = {m["name"]: m for m in read_run_info(out)["metrics"]}
    assert spec["mae"]["higher_is_better"] is False and spec["mae"]["source"] == "mymetrics:mae"

    capsys.readouterr()
    assert main(["report", str(out), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    jpeg = next(r for r in rows if r["model"] == "jpeg")
    assert "mae" in rows[0] and float(jpeg["mae"]) == pytest.approx(_independent_mae(10), abs=1e-9)
    maes = {r["model"]: float(r["mae"]) for r in rows}
    assert maes["same"] == pytest.approx(maes["jpeg"], abs=1e-12) and maes["same"] < maes["bright"]

    assert main(["report", str(out), "--format", "md"]) == 0
    md = capsys.readouterr().out
    lines: dict[str, str] = {}
    for line in md.splitlines():  # the first table's rows (the quality table; efficiency follows)
        if line.startswith("| "):
            lines.setdefault(line.split("|")[1].strip(), line)
    cell = lines["same"].split("|")[2]  # "psnr / mae"
    assert cell.split(" / ")[1].strip().startswith("**")  # the lower MAE: bold
    assert lines["bright"].split("|")[2].split(" / ")[1].strip().startswith("<u>")  # the higher MAE: second
    assert "**" not in lines["jpeg"] and "<u>" not in lines["jpeg"]  # the input is never ranked
    assert "MAE↓" not in md and "mae↓" in md  # the label is the function's name, marked lower-is-better
