"""Golden rows: the JPEG baseline through `cirbench run` reproduces the published numbers (spec §3.3)."""

import csv
import os
from pathlib import Path

import pytest

from cirbench.cli import main
from cirbench.eval.records import iter_records

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "datasets"
LITERATURE = REPO / "results" / "published" / "literature.csv"
QFS = (10, 20, 30, 40)
# spec §3.3 (FBCNN paper, gray table), the fallback when results/published/literature.csv is absent
CLASSIC5_JPEG = {10: (27.82, 0.760, 25.21), 20: (30.12, 0.834, 27.50), 30: (31.48, 0.867, 28.94),
                 40: (32.43, 0.885, 29.92)}


def _data_root() -> Path:
    root = Path(os.environ.get("CIRBENCH_DATA") or SHARED)
    if not (root / "classic5").is_dir():
        pytest.skip(f"no evaluation data under {root}")
    return root


def published_jpeg(dataset: str) -> dict[int, tuple[float, float, float]]:
    """{qf: (psnr, ssim, psnrb)} of the literature's JPEG rows for one dataset (single JPEG)."""
    if not LITERATURE.is_file():
        return {}
    out = {}
    with open(LITERATURE, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["method"] == "JPEG" and row["dataset"] == dataset and row["degradation"].startswith("jpeg:"):
                out[int(row["degradation"].split(":")[1])] = (float(row["psnr"]), float(row["ssim"]),
                                                              float(row["psnrb"]))
    return out


def run_jpeg(dataset: str, out: Path, root: Path, monkeypatch) -> dict[int, dict[str, float]]:
    monkeypatch.setenv("CIRBENCH_DATA", str(root))
    rc = main(["run", "--models", "jpeg", "--datasets", dataset, "--qf", ",".join(map(str, QFS)),
               "--out", str(out)])
    assert rc == 0
    recs = [r for r in iter_records(out) if r["dataset"] == dataset and r["space"] == "gray"]
    means = {}
    for qf in QFS:
        rows = [r for r in recs if r["qf"] == qf and r["degradation"] == "jpeg" and r["model"] == "jpeg"]
        assert rows, f"no records for {dataset} QF{qf}"
        assert len({r["image"] for r in rows}) == len(rows)
        means[qf] = {m: sum(r[m] for r in rows) / len(rows) for m in ("psnr", "ssim", "psnrb")}
        means[qf]["n"] = len(rows)
    return means


def test_classic5_jpeg_row_matches_published(tmp_path, monkeypatch):
    root = _data_root()
    published = published_jpeg("classic5")
    if published:
        assert set(QFS) <= set(published)
        for qf in QFS:  # the CSV and the spec agree
            assert published[qf] == pytest.approx(CLASSIC5_JPEG[qf], abs=1e-9)
    else:
        published = CLASSIC5_JPEG
    means = run_jpeg("classic5", tmp_path / "run", root, monkeypatch)
    for qf in QFS:
        p, s, b = published[qf]
        got = means[qf]
        assert got["n"] == 5
        assert got["psnr"] == pytest.approx(p, abs=0.01), f"QF{qf} PSNR"
        assert got["ssim"] == pytest.approx(s, abs=0.001), f"QF{qf} SSIM"
        assert got["psnrb"] == pytest.approx(b, abs=0.01), f"QF{qf} PSNR-B"
    # a rerun into the same directory resumes: nothing new is written, the means are unchanged
    n_before = len(list(iter_records(tmp_path / "run")))
    assert run_jpeg("classic5", tmp_path / "run", root, monkeypatch) == means
    assert len(list(iter_records(tmp_path / "run"))) == n_before


@pytest.mark.slow
@pytest.mark.parametrize("dataset,n_images", [("live1_gray", 29), ("bsds500_gray", 200)])
def test_gray_jpeg_rows_report(dataset, n_images, tmp_path, monkeypatch, capsys):
    """LIVE1 / BSDS500 gray JPEG baseline: printed beside the literature for a hand check; sanity asserted."""
    root = _data_root()
    if dataset.startswith("bsds500") and not (root / "bsds500" / "test").is_dir():
        pytest.skip("bsds500 not available")
    means = run_jpeg(dataset, tmp_path / "run", root, monkeypatch)
    published = published_jpeg(dataset)
    lines = [f"{dataset} JPEG baseline (ours vs published{'' if published else ': none in literature.csv'})"]
    for qf in QFS:
        got = means[qf]
        line = f"  QF{qf}: {got['psnr']:.3f} | {got['ssim']:.4f} | {got['psnrb']:.3f}"
        if qf in published:
            line += " vs {:.2f} | {:.3f} | {:.2f}".format(*published[qf])
        lines.append(line)
        assert got["n"] == n_images
        assert 25 < got["psnr"] < 36
        assert 0.6 < got["ssim"] < 0.95
        assert 22 < got["psnrb"] < got["psnr"]
    for lo, hi in zip(QFS, QFS[1:], strict=False):
        assert means[lo]["psnr"] < means[hi]["psnr"] and means[lo]["ssim"] < means[hi]["ssim"]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
