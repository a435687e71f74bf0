"""Published rows have a metric dimension: the long CSV of SODiff's perceptual table sits beside the wide literature
CSV, its rows are placed only beside numbers of the same metric and space, and its note travels with its source."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cirbench.cli import main
from cirbench.errors import ConfigError
from cirbench.metrics import REGISTRY, Metric
from cirbench.report import render
from cirbench.report.published import default_paths, load_published

REPO = Path(__file__).resolve().parents[2]
PERCEPTUAL = REPO / "results" / "published" / "perceptual.csv"


def test_both_csvs_are_read_and_the_long_one_is_gathered():
    assert {p.name for p in default_paths()} >= {"literature.csv", "perceptual.csv"}
    pub = load_published()
    sod = pub[pub["source"].str.startswith("SODiff")]
    assert len(sod) == 2 * 3 * 7  # 210 numbers: datasets x QFs x methods, five metrics a row
    assert sod[["lpips", "dists", "musiq", "maniqa", "clipiqa"]].notna().all().all()
    assert sod[["psnr", "ssim"]].isna().all().all() and set(sod["space"]) == {"rgb"}
    live1 = sod[sod["dataset"] == "live1"].set_index(["model", "qf"])
    assert [live1.loc[("JPEG", q), "lpips"] for q in (5, 10, 20)] == [0.4384, 0.3013, 0.1799]  # the figures
    assert [live1.loc[("SODiff", q), "lpips"] for q in (5, 10, 20)] == [0.2229, 0.1605, 0.1237]
    assert all("multiple of 8" in n for n in sod["note"])
    lit = pub[~pub["source"].str.startswith("SODiff")]
    assert len(lit) == 256 and lit["lpips"].isna().all()  # the literature's rows: unchanged
    with open(PERCEPTUAL, newline="") as fh:  # every number of the file is in the table
        rows = list(csv.DictReader(fh))
    assert len(rows) == 210
    for r in rows:
        got = sod[(sod["dataset"] == r["dataset"]) & (sod["model"] == r["method"])
                  & (sod["qf"] == int(r["degradation"].split(":")[1]))][r["metric"]]
        assert got.tolist() == [float(r["value"])]


def _long(tmp_path, rows: list[str]) -> Path:
    p = tmp_path / "x.csv"
    p.write_text("source,dataset,degradation,method,space,metric,better,value\n" + "\n".join(rows) + "\n")
    return p


def test_a_direction_that_contradicts_the_metric_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="line 2: lpips is lower-is-better in cirbench, the row says higher"):
        load_published(_long(tmp_path, ["s,live1,jpeg:10,A,rgb,lpips,higher,0.3"]))
    with pytest.raises(ConfigError, match="two lpips values"):
        load_published(_long(tmp_path, ["s,live1,jpeg:10,A,rgb,lpips,lower,0.3",
                                         "s,live1,jpeg:10,A,rgb,lpips,lower,0.2"]))
    mine = load_published(_long(tmp_path, ["s,live1,jpeg:10,A,rgb,mine,higher,3"]))  # any metric may have rows
    assert mine["mine"].tolist() == [3.0]


@pytest.fixture
def standin_lpips(monkeypatch):
    """A stand-in registered under the name, so a run records it without pyiqa (the numbers mean nothing)."""
    monkeypatch.setattr(REGISTRY, "entries", dict(REGISTRY.entries))

    def mean_abs(restored, target):
        return float(np.abs(restored.astype(float) - target.astype(float)).mean() / 255)

    REGISTRY.register("lpips", Metric(name="lpips", label="LPIPS", higher_is_better=False, spaces=("rgb", "gray"),
                                      fn=mean_abs))


def test_rows_sit_only_beside_the_same_metric(data_root, tmp_path, standin_lpips):
    out = tmp_path / "run"
    assert main(["run", "--models", "jpeg", "--datasets", "live1", "--qf", "10", "--metrics", "psnr,lpips",
                 "--data-root", str(data_root), "--out", str(out), "--threads", "1", "--no-profile"]) == 0
    md = render([out], "md", space="rgb", published=True)
    assert "| JPEG (published [3]) | – / 0.3013 |" in md and "| SODiff (published [3]) | – / 0.1605 |" in md
    assert "| JPEG (published [2]) | 25.69 / – |" in md  # GRL's PSNR beside PSNR, nothing beside LPIPS
    assert "[3] SODiff" in md and "Note: CODiff's test script" in md
    psnr_only = render([out], "md", space="rgb", published=True, metrics=["psnr"])
    assert "SODiff" not in psnr_only and "JPEG (published [2]) | 25.69 |" in psnr_only
    y = render([out], "md", space="y", published=True)
    assert "SODiff" not in y  # rgb rows never beside y numbers
    long = render([out], "csv", space="rgb", published=True)
    sod = [line for line in long.splitlines() if "SODiff (arXiv" in line]
    assert len(sod) == 7  # one per method at live1 QF 10, with its lpips
