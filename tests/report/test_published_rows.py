"""Golden rows: the JPEG baseline through `cirbench run` reproduces the literature's JPEG rows (spec §3.3), gray
and colour, each under the metric convention its source used (the literature CSV's ``space``), and the report
places each row beside our numbers of that convention only."""

import csv
import re
from pathlib import Path

import pytest

from cirbench.cli import main
from cirbench.records import iter_records
from cirbench.report import render

REPO = Path(__file__).resolve().parents[2]
LITERATURE = REPO / "results" / "published" / "literature.csv"
QFS = (10, 20, 30, 40)
# The papers' numbers as quoted in the spec and issue 16, to catch an edit of the CSV: FBCNN's gray table
# (PSNR, SSIM, PSNR-B) and GRL's Table 7 (colour, RGB: PSNR, SSIM) at its first and last QF.
CLASSIC5_JPEG = {10: (27.82, 0.760, 25.21), 20: (30.12, 0.834, 27.50), 30: (31.48, 0.867, 28.94),
                 40: (32.43, 0.885, 29.92)}
RGB_JPEG = {"live1": {10: (25.69, 0.743), 40: (30.28, 0.882)},
            "bsds500": {10: (25.84, 0.741), 40: (30.52, 0.887)}}


def published_jpeg(dataset: str, space: str) -> dict[int, tuple[float, float, float | None]]:
    """{qf: (psnr, ssim, psnrb or None)} of the literature's JPEG rows of one dataset in one space."""
    out = {}
    with open(LITERATURE, newline="") as fh:
        for row in csv.DictReader(fh):
            if (row["method"], row["dataset"], row["space"]) == ("JPEG", dataset, space) \
                    and row["degradation"].startswith("jpeg:"):
                qf = int(row["degradation"].split(":")[1])
                assert qf not in out, f"two JPEG rows for {dataset} {space} QF{qf}"
                out[qf] = (float(row["psnr"]), float(row["ssim"]), float(row["psnrb"]) if row["psnrb"] else None)
    return out


def run_jpeg(datasets: list[str], out: Path, root: Path) -> dict[tuple[str, str, int], dict[str, float]]:
    """Means per (dataset, space, QF) of the `jpeg` model's records, run through the command line."""
    rc = main(["run", "--models", "jpeg", "--datasets", ",".join(datasets), "--qf", ",".join(map(str, QFS)),
               "--data-root", str(root), "--out", str(out), "--threads", "1"])
    assert rc == 0
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in iter_records(out):
        assert r["model"] == "jpeg" and r["degradation"] == "jpeg"
        groups.setdefault((r["dataset"], r["space"], r["qf"]), []).append(r)
    means = {}
    for key, rows in groups.items():
        assert len({r["image"] for r in rows}) == len(rows), key
        means[key] = {m: sum(r[m] for r in rows) / len(rows) for m in ("psnr", "ssim", "psnrb")}
        means[key]["n"] = len(rows)
    return means


def assert_reproduced(means: dict, dataset: str, space: str, n_images: int) -> None:
    """Every published JPEG row of ``dataset`` in ``space``, QF 10-40: ±0.01 dB, ±0.001 SSIM."""
    published = published_jpeg(dataset, space)
    assert set(QFS) <= set(published), f"literature.csv lacks JPEG rows of {dataset} in {space}"
    for qf in QFS:
        p, s, b = published[qf]
        got = means[(dataset, space, qf)]
        assert got["n"] == n_images
        assert got["psnr"] == pytest.approx(p, abs=0.01), f"{dataset} {space} QF{qf} PSNR"
        assert got["ssim"] == pytest.approx(s, abs=0.001), f"{dataset} {space} QF{qf} SSIM"
        if b is not None:
            assert got["psnrb"] == pytest.approx(b, abs=0.01), f"{dataset} {space} QF{qf} PSNR-B"


@pytest.fixture(scope="module")
def live1_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("live1") / "run"
    return out, run_jpeg(["live1", "live1_gray"], out, data_root)


@pytest.fixture(scope="module")
def bsds500_run(data_root, tmp_path_factory):
    if not (data_root / "bsds500" / "test").is_dir():
        pytest.skip(f"no bsds500/test under {data_root}")
    out = tmp_path_factory.mktemp("bsds500") / "run"
    return out, run_jpeg(["bsds500", "bsds500_gray"], out, data_root)


def test_literature_csv_quotes_the_papers():
    classic5 = published_jpeg("classic5", "gray")
    for qf, row in CLASSIC5_JPEG.items():
        assert classic5[qf] == pytest.approx(row, abs=1e-9), qf
    for dataset, rows in RGB_JPEG.items():
        got = published_jpeg(dataset, "rgb")
        for qf, (p, s) in rows.items():
            assert got[qf][:2] == pytest.approx((p, s), abs=1e-9), (dataset, qf)


def test_classic5_jpeg_row_matches_published(data_root, tmp_path):
    means = run_jpeg(["classic5"], tmp_path / "run", data_root)
    assert_reproduced(means, "classic5", "gray", 5)
    # a rerun into the same directory resumes: nothing new is written, the means are unchanged
    n_before = len(list(iter_records(tmp_path / "run")))
    assert run_jpeg(["classic5"], tmp_path / "run", data_root) == means
    assert len(list(iter_records(tmp_path / "run"))) == n_before


def test_live1_gray_jpeg_row_matches_published(live1_run):
    assert_reproduced(live1_run[1], "live1_gray", "gray", 29)


def test_live1_colour_jpeg_row_matches_published(live1_run):
    assert_reproduced(live1_run[1], "live1", "rgb", 29)


@pytest.mark.slow
def test_bsds500_gray_jpeg_row_matches_published(bsds500_run):
    assert_reproduced(bsds500_run[1], "bsds500_gray", "gray", 200)


@pytest.mark.slow
def test_bsds500_colour_jpeg_row_matches_published(bsds500_run):
    assert_reproduced(bsds500_run[1], "bsds500", "rgb", 200)


def _md_cells(md: str, label: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def _source_number(md: str, prefix: str) -> str:
    return next(n for n, s in re.findall(r"^\[(\d+)\] (.*)$", md, re.M) if s.startswith(prefix))


def test_report_places_rows_by_convention(live1_run):
    """The GRL colour row sits in the rgb report beside our rgb numbers, and nowhere in the Y report; the FBCNN
    gray row sits beside live1_gray in the Y report. Both agree with ours as printed (PSNR, 2 decimals)."""
    run = live1_run[0]
    rgb = render(run, "md", space="rgb", datasets=["live1"], published=True, published_path=LITERATURE)
    grl = _source_number(rgb, "GRL")
    ours, theirs = _md_cells(rgb, "jpeg"), _md_cells(rgb, f"JPEG (published [{grl}])")
    assert len(ours) == len(theirs) == 4
    assert [c.split(" / ")[0] for c in ours] == [c.split(" / ")[0] for c in theirs]
    y = render(run, "md", space="y", published=True, published_path=LITERATURE)
    assert "GRL" not in y and "JPEG (published" in y
    assert "No published rows for live1 in y" in y  # said once, for the colour columns
    head = next(ln for ln in y.splitlines() if ln.startswith("| Method |"))
    cols = [c.strip() for c in head.strip("|").split("|")][1:]
    fb = _md_cells(y, f"JPEG (published [{_source_number(y, 'FBCNN')}])")
    for col, cell in zip(cols, fb, strict=True):
        assert (cell.split(" / ")[0] == "–") == col.startswith("live1 ")
    gray_cols = [i for i, c in enumerate(cols) if c.startswith("live1_gray")]
    assert [_md_cells(y, "jpeg")[i].split(" / ")[0] for i in gray_cols] == [fb[i].split(" / ")[0] for i in gray_cols]


def test_conventions_view_on_live1(live1_run):
    """The four colour conventions side by side; the published RGB row in the rgb line."""
    md = render(live1_run[0], "md", conventions=True, qfs=[10], published=True, published_path=LITERATURE)
    assert "### live1 QF 10" in md and "live1_gray QF" not in md
    for space in ("y", "y-float", "y-full", "rgb"):
        assert _md_cells(md, f"jpeg · {space}")
    grl = _source_number(md, "GRL")
    assert _md_cells(md, "jpeg · rgb")[0] == _md_cells(md, f"JPEG (published [{grl}]) · rgb")[0] == "25.69"
