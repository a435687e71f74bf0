"""Reports on fixed records: means checked by hand, golden md / csv / latex, filters, CI, html, json."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from cirbench.records import read_records
from cirbench.report import aggregate, render

DATA = Path(__file__).parents[1] / "data"
RUN = DATA / "records_small"
LIT = DATA / "literature_small.csv"
GOLDEN = Path(__file__).parents[1] / "golden"
PUB = dict(published=True, published_path=LIT)

# The group means the fixture was written from (per-image offsets sum to zero, all values dyadic, so
# the means are exact): (model, dataset, space, qf) -> (psnr, ssim, psnrb).
HAND = {
    ("jpeg", "classic5", "gray", 10): (27.75, 0.75, 25.25),
    ("jpeg", "classic5", "gray", 20): (30.0, 0.8125, 27.5),
    ("fbcnn", "classic5", "gray", 10): (30.0, 0.8125, 29.75),
    ("fbcnn", "classic5", "gray", 20): (32.25, 0.875, 31.75),
    ("swinir", "classic5", "gray", 10): (30.25, 0.8125, 29.5),
    ("swinir", "classic5", "gray", 20): (32.0, 0.875, 32.0),
    ("jpeg", "live1", "y", 10): (27.5, 0.75, 25.0),
    ("jpeg", "live1", "y", 20): (29.75, 0.8125, 27.25),
    ("fbcnn", "live1", "y", 10): (29.25, 0.8125, 29.0),
    ("fbcnn", "live1", "y", 20): (31.5, 0.875, 31.0),
    ("swinir", "live1", "y", 10): (29.5, 0.875, 29.25),
    ("swinir", "live1", "y", 20): (31.25, 0.875, 30.75),
}
for (m, d, s, q), (p, ss, b) in list(HAND.items()):
    if s == "y":  # the rgb rows were written 1.5 dB / 0.0625 below the y rows
        HAND[(m, d, "rgb", q)] = (p - 1.5, ss - 0.0625, b - 1.5)


def _plain_means():
    """Means straight from the JSON lines, without pandas."""
    acc = defaultdict(list)
    for line in (RUN / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        acc[(r["model"], r["dataset"], r["space"], r["qf"])].append((r["psnr"], r["ssim"], r["psnrb"]))
    return {k: tuple(sum(v[i] for v in vals) / len(vals) for i in range(3)) for k, vals in acc.items()}


def test_fixture_means_match_hand_values():
    means = _plain_means()
    assert means.keys() == HAND.keys()
    for key, value in HAND.items():
        assert means[key] == pytest.approx(value), key


def test_aggregate_means_and_extras():
    agg = aggregate(read_records(RUN), ["psnr", "ssim", "psnrb"])
    assert len(agg) == len(HAND)
    for r in agg.itertuples():
        assert (r.psnr, r.ssim, r.psnrb) == pytest.approx(HAND[(r.model, r.dataset, r.space, r.qf)])
        assert r.n_images == 3
    fb = agg[agg["model"] == "fbcnn"].set_index(["dataset", "space", "qf"])
    # seconds 0.25 + 0.5 + 0.125 over 0.5 + 1 + 0.25 MP; |qf_pred - qf|: (2, 1, 0) and (0, 3, 3)
    assert fb["seconds_per_mp"].tolist() == pytest.approx([0.5] * 6)
    assert fb.loc[("live1", "y", 10), "qf_err"] == pytest.approx(1.0)
    assert fb.loc[("live1", "y", 20), "qf_err"] == pytest.approx(2.0)
    assert agg[agg["model"] == "swinir"]["qf_err"].isna().all()


@pytest.mark.parametrize(
    ("fmt", "name"), [("md", "report.md"), ("csv", "report.csv"), ("latex", "report.tex")]
)
def test_golden(fmt, name):
    assert render(RUN, fmt, **PUB) == (GOLDEN / name).read_text()


def test_csv_values_and_columns():
    rows = list(csv.DictReader(io.StringIO(render(RUN, "csv", **PUB))))
    need = "model,dataset,degradation,qf,space,n_images,psnr,ssim,psnrb".split(",")
    assert set(need) <= set(rows[0])
    ours = [r for r in rows if r["setting"] != "published"]
    assert len(ours) == 12  # y selects y rows plus gray rows; no rgb
    for r in ours:
        key = (r["model"], r["dataset"], r["space"], int(r["qf"]))
        assert tuple(float(r[m]) for m in ("psnr", "ssim", "psnrb")) == HAND[key]
    published = [r for r in rows if r["setting"] == "published"]
    assert {r["model"] for r in published} == {"JPEG", "ARCNN", "RDN"}  # live1 rgb and live1_gray left out
    assert all(r["n_images"] == "" for r in published)


def _md_row(text: str, label: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_md_cells_and_ranking():
    md = render(RUN, "md", **PUB)
    cols = [("classic5", 10), ("classic5", 20), ("live1", 10), ("live1", 20)]
    spaces = {"classic5": "gray", "live1": "y"}
    for model in ("jpeg", "fbcnn", "swinir"):
        cells = _md_row(md, model)
        for cell, (ds, qf) in zip(cells, cols, strict=True):
            plain = re.sub(r"\*\*|</?u>", "", cell)
            p, s, b = HAND[(model, ds, spaces[ds], qf)]
            assert plain == f"{p:.2f} / {s:.4f} / {b:.2f}"
    # classic5 QF 10: PSNR swinir best, fbcnn second; SSIM tied (both bold); PSNR-B fbcnn best
    assert _md_row(md, "swinir")[0] == "**30.25** / **0.8125** / <u>29.50</u>"
    assert _md_row(md, "fbcnn")[0] == "<u>30.00</u> / **0.8125** / **29.75**"
    assert "**" not in "".join(_md_row(md, "jpeg")) and "<u>" not in "".join(_md_row(md, "jpeg"))
    for label in ("JPEG (published [1])", "ARCNN (published [1], per-QF)", "RDN (published [2])"):
        assert not re.search(r"\*\*|<u>", "".join(_md_row(md, label)))  # never ranked


def test_published_rows_do_not_change_our_numbers():
    with_pub, without = render(RUN, "md", **PUB), render(RUN, "md")
    for model in ("jpeg", "fbcnn", "swinir"):
        assert _md_row(with_pub, model) == _md_row(without, model)
    assert "published" not in without


def test_filters_and_rgb_space():
    md = render(RUN, "md", space="rgb", qfs=[10], models=["fbcnn", "swinir"], metrics=["psnr"])
    assert "classic5" not in md and "| jpeg |" not in md
    assert _md_row(md, "fbcnn") == ["<u>27.75</u>"] and _md_row(md, "swinir") == ["**28.00**"]
    only = render(RUN, "csv", datasets=["classic5"], qfs=[20])
    assert len(only.strip().splitlines()) == 1 + 3
    with pytest.raises(ValueError):
        render(RUN, "md", datasets=["nope"])
    with pytest.raises(ValueError):
        render(RUN, "pdf")


def test_ci_section():
    md = render(RUN, "md", ci=True)
    assert "PSNR difference to jpeg" in md
    # fbcnn - jpeg on classic5 QF 10: per image 2.25 + (-0.25, 0.25, 0), mean 2.25; the bootstrap interval
    # of a mean of 3 values lies within [min, max] = [2.0, 2.5], so the half-width is at most 0.25.
    section = md.split("PSNR difference to jpeg")[1]
    cell = _md_row(section, "fbcnn")[0]
    m = re.fullmatch(r"\+(\d+\.\d\d) ±(\d+\.\d\d)(†?)", cell)
    assert m and m[1] == "2.25" and 0 < float(m[2]) <= 0.25
    assert m[3] == ""  # 3 of 3 positive: sign-test p = 0.25, not significant
    rows = list(csv.DictReader(io.StringIO(render(RUN, "csv", ci=True))))
    fb = next(r for r in rows if r["model"] == "fbcnn" and r["dataset"] == "classic5" and r["qf"] == "10")
    assert float(fb["diff_psnr"]) == pytest.approx(2.25) and float(fb["p_sign"]) == pytest.approx(0.25)
    assert fb["n_pairs"] == "3" and 2.0 <= float(fb["ci_lo"]) <= float(fb["ci_hi"]) <= 2.5
    assert "PSNR difference to jpeg" in render(RUN, "md", ci=True, models=["fbcnn"])  # reference hidden


def test_json_and_terminal():
    data = json.loads(render(RUN, "json", **PUB))
    assert data["provenance"]["protocol"] == ["smoke_test v1"]
    assert len(data["results"]) == 12 + 4
    table = render(RUN, "table")
    assert "30.25*" in table and "30.00'" in table


def test_html_is_self_contained(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(tmp_path / "fig.png")
    page = render(RUN, "html", plots_dir=tmp_path, ci=True, **PUB)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "data:image/png;base64," in page and "<link" not in page and "<script" not in page
    assert page.count("<table>") == 4  # quality, CI, QF error, efficiency
    assert "<b>30.25</b>" in page and "<u>30.00</u>" in page


# ------------------------------------------------------------------------------------------ LaTeX


def _check_latex_structure(tex: str) -> None:
    body = re.sub(r"(?<!\\)%.*", "", tex)  # comments, not escaped percent signs
    depth = 0
    for ch in re.sub(r"\\[{}]", "", body):  # escaped braces are text
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", body):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert not stack
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in body
    assert not re.search(r"(?<!\\)_", body.replace(r"\_", ""))  # every underscore escaped
    assert "smoke\\_test" in body  # the protocol name, escaped, in the caption
    for tab in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", body, re.S):
        ncols = len(tab[0])
        for line in tab[1].splitlines():
            if line.endswith(r"\\") and r"\multicolumn" not in line:
                assert line.count("&") == ncols - 1, line


def test_latex_structure():
    tex = render(RUN, "latex", ci=True, **PUB)
    _check_latex_structure(tex)
    assert "\\caption{" in tex and "libjpeg-turbo 3.0.4" in tex and "cirbench 0.1.0" in tex
    assert "bt601-studio-rounded" in tex


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex not installed")
def test_latex_compiles(tmp_path):
    (tmp_path / "report.tex").write_text(render(RUN, "latex", ci=True, **PUB))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
        "\\begin{document}\n\\input{report.tex}\n\\end{document}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


# ------------------------------------------------------------------------------ conventions and layout


def _records() -> list[dict]:
    return [json.loads(line) for line in (RUN / "records.jsonl").read_text().splitlines()]


def _write_run(path: Path, records: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.copy(RUN / "run.json", path / "run.json")
    return path


# The fixture's y records moved to the other luma conventions by these (dyadic, so exact) offsets.
SHIFT = {"y-float": (0.25, 0.0, 0.125), "y-full": (-1.25, -0.03125, -1.0)}


@pytest.fixture
def conv_run(tmp_path) -> Path:
    recs = _records()
    for r in [r for r in recs if r["space"] == "y"]:
        for space, (dp, ds, db) in SHIFT.items():
            recs.append({**r, "space": space, "psnr": r["psnr"] + dp, "ssim": r["ssim"] + ds, "psnrb": r["psnrb"] + db})
    return _write_run(tmp_path / "conv", recs)


def test_space_choices_select_their_records(conv_run):
    for space, (dp, _, _) in SHIFT.items():
        md = render(conv_run, "md", space=space)
        p = HAND[("fbcnn", "live1", "y", 10)][0] + dp
        assert _md_row(md, "fbcnn")[2].startswith(f"<u>{p:.2f}</u>")
        assert _md_row(md, "fbcnn")[0].startswith("<u>30.00</u>")  # classic5 is gray: its own luma in any space
    with pytest.raises(ValueError, match="unknown metric space"):
        render(conv_run, "md", space="ycbcr")


def test_published_rows_only_beside_their_space(conv_run):
    y = render(conv_run, "md", **PUB)
    assert "HAT" not in y and "SwinIR" not in y
    assert "No published rows for live1 in y (" in y and "the literature has it in rgb, y-float" in y
    yf = render(conv_run, "md", space="y-float", **PUB)
    assert _md_row(yf, "HAT (published [3])") == ["– / – / –", "– / – / –", "29.90 / 0.8300 / –", "– / – / –"]
    assert "No published rows for live1" not in yf
    rgb = render(conv_run, "md", space="rgb", **PUB)
    assert _md_row(rgb, "SwinIR (published [1], per-QF)") == ["28.06 / 0.8089 / 27.69", "– / – / –"]
    full = render(conv_run, "md", space="y-full", **PUB)
    assert "HAT" not in full and "No published rows for live1 in y-full" in full


def test_conventions_table(conv_run):
    md = render(conv_run, "md", conventions=True, **PUB)
    assert md.count("### ") == 2 and "### live1 QF 10:" in md and "### live1 QF 20:" in md
    assert "classic5" not in md.split("Conventions:")[0]  # gray data: one convention, left out
    section = md.split("### live1 QF 20:")[1]
    p, s, b = HAND[("fbcnn", "live1", "y", 20)]
    assert _md_row(section, "fbcnn · y") == [f"{p:.2f}", f"{s:.4f}", f"{b:.2f}", "–", "–", "–"]
    assert _md_row(section, "fbcnn · y-full") == [f"{p - 1.25:.2f}", f"{s - 0.03125:.4f}", f"{b - 1:.2f}",
                                                   "-1.25", "-0.0312", "-1.00"]
    assert _md_row(section, "fbcnn · rgb")[3:] == ["-1.50", "-0.0625", "-1.50"]
    first = md.split("### live1 QF 20:")[0]
    assert _md_row(first, "HAT (published [2]) · y-float") == ["29.90", "0.8300", "–", "–", "–", "–"]
    assert _md_row(first, "SwinIR (published [1]) · rgb")[:2] == ["28.06", "0.8089"]
    assert "(published" not in section  # no published row of that QF
    assert "BasicSR" in md and "Gray datasets (classic5)" in md
    rows = list(csv.DictReader(io.StringIO(render(conv_run, "csv", conventions=True))))
    assert {r["space"] for r in rows} == {"y", "y-float", "y-full", "rgb"}
    r = next(r for r in rows if (r["model"], r["qf"], r["space"]) == ("fbcnn", "20", "y-float"))
    assert float(r["d_psnr_to_y"]) == pytest.approx(0.25) and float(r["d_ssim_to_y"]) == pytest.approx(0.0)
    tex = render(conv_run, "latex", conventions=True, **PUB)
    _check_latex_structure(tex)
    assert r"$\Delta$ PSNR to y" in tex and r"fbcnn $\cdot$ y-full" in tex and "Δ" not in tex
    page = render(conv_run, "html", conventions=True, **PUB)
    assert page.count("<table>") == 2 and "position:sticky" in page
    page = render(conv_run, "html", **PUB)
    assert "<code>--space rgb</code>" in page  # an option never wraps
    # a quoted command is one code span, no stray backticks or code nested in it
    assert "<code>cirbench report RUN --published --space rgb" in page
    assert "`" not in page.split('<ul class="notes">')[1]


def test_gray_only_run_has_no_conventions(tmp_path):
    run = _write_run(tmp_path / "gray", [r for r in _records() if r["space"] == "gray"])
    with pytest.raises(ValueError, match="no colour records"):
        render(run, "md", conventions=True)


@pytest.fixture
def wide_run(tmp_path) -> Path:
    """The fixture's records copied to 4 datasets x 4 QFs (16 columns) and one dataset at 9 QFs."""
    recs = []
    for r in _records():
        if r["space"] == "rgb":
            continue
        for k, name in enumerate(("a_set", "b_set", "c_set", "live1")):
            for dq in (0, 20):
                recs.append({**r, "dataset": name if r["dataset"] == "live1" else f"{name}_gray", "qf": r["qf"] + dq,
                             "psnr": r["psnr"] + k})
        if r["dataset"] == "classic5":
            recs += [{**r, "dataset": "many_qfs", "qf": r["qf"] + dq} for dq in range(0, 90, 10)]
    return _write_run(tmp_path / "wide", recs)


def test_wide_runs_split_into_tables_per_dataset(wide_run):
    md = render(wide_run, "md", datasets=["live1", "live1_gray", "a_set", "a_set_gray"], **PUB)
    titles = re.findall(r"^### Restoration quality: .*$", md, re.M)
    assert titles == [f"### Restoration quality: PSNR / SSIM / PSNR-B — {d}"
                      for d in ("live1", "live1_gray", "a_set", "a_set_gray")]
    live1 = md.split("— live1\n")[1].split("###")[0]
    assert "| Method | QF 10 | QF 20 | QF 30 | QF 40 |" in live1
    assert "published" not in live1  # the literature has no y row of live1
    assert "No published rows for live1 in y" in md
    # one metric: 8 columns fit one table (4 datasets x 2 QFs here)
    one = render(wide_run, "md", metrics=["psnr"], datasets=["live1", "a_set"])
    assert len(re.findall(r"^### Restoration quality", one, re.M)) == 1
    # a dataset with more QFs than fit is cut into runs of QFs
    many = render(wide_run, "md", datasets=["many_qfs"], models=["fbcnn"])
    assert re.findall(r"^### Restoration quality: .* — (.*)$", many, re.M) == [
        "many_qfs, QF 10 to QF 40", "many_qfs, QF 50 to QF 80", "many_qfs, QF 90 to QF 100"]
    four = dict(datasets=["live1", "live1_gray", "a_set", "a_set_gray"], ci=True, **PUB)
    tex = render(wide_run, "latex", **four)
    _check_latex_structure(tex)
    assert tex.count(r"\begin{table}") == 4 * 3 + 1  # quality, CI and QF error per dataset; efficiency
    assert r"PSNR-B — live1\_gray}" in tex
    for fmt in ("html", "table"):
        text = render(wide_run, fmt, **four)
        assert text.count("Restoration quality") == 4 and text.count("PSNR difference to jpeg") == 4


def test_published_row_only_in_tables_where_it_has_a_value(wide_run):
    md = render(wide_run, "md", **PUB)
    tables = {t.split("\n", 1)[0]: t for t in md.split("### ")[1:]}
    for title, body in tables.items():
        for line in body.splitlines():
            if line.startswith("| ") and "(published" in line:
                assert any(c.strip() != "– / – / –" for c in line.strip("|").split("|")[1:]), (title, line)
    c5 = tables["Restoration quality: PSNR / SSIM / PSNR-B — a_set_gray"]
    assert "(published" not in c5  # the literature knows classic5, not a_set_gray


def test_html_fits_and_keeps_its_header(wide_run):
    page = render(wide_run, "html", **PUB)
    assert "thead{position:sticky;top:0" in page and "max-width:1360px" in page
    for table in re.findall(r"<table>.*?</table>", page, re.S):
        head = re.search(r"<thead>(.*?)</thead>", table, re.S)[1]
        assert head.count("<th") - 1 <= 8  # at most 8 columns beside the method


def test_skipped_images_and_unequal_image_sets_are_marked(tmp_path):
    """--skip-invalid runs say "n of m images (k skipped)" beside the means; models whose means cover
    different image sets are marked and warned about, never compared silently."""
    import shutil

    from cirbench.records import iter_records

    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    info = json.loads((run / "run.json").read_text())
    info["datasets"] = {"live1": {"images": 4}, "classic5": {"images": 3}}
    info["skipped_images"] = {"live1": {"bad.png": "bad.png: corrupt or truncated image; replace the file"}}
    (run / "run.json").write_text(json.dumps(info))
    md = render(run, "md")
    assert "QF 10 ‡" in md and "live1: 3 of 4 images (1 skipped as invalid: bad.png" in md
    # one model loses an image of classic5 at QF 20: its mean covers 2 images, the others' 3
    recs = [r for r in iter_records(run) if not (r["model"] == "swinir" and r["dataset"] == "classic5"
                                                 and r["qf"] == 20 and r["image"] == "baboon.bmp")]
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.warns(UserWarning, match="classic5 QF 20 .*different image sets"):
        md = render(run, "md")
    assert "swinir 2" in md and "jpeg 3" in md


# --- issue 23: no mean is silently wrong ----------------------------------------------------------------------
FORMATS = ("table", "md", "latex", "html", "csv", "json")


def _copy_run(tmp_path, name="run", **info_changes) -> Path:
    run = tmp_path / name
    shutil.copytree(RUN, run)
    info = json.loads((run / "run.json").read_text())
    info.update(info_changes)
    (run / "run.json").write_text(json.dumps(info))
    return run


def _rows(text: str, fmt: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)["results"]


def test_a_partial_mean_carries_a_mark_and_n_of_m_in_every_format(tmp_path):
    """After kill -9 at 3 of 5 images: the report once printed the 3-image means, in bold, unmarked."""
    run = _copy_run(tmp_path, datasets={"classic5": {"images": 3}, "live1": {"images": 5}})
    for fmt in FORMATS:
        text = render(run, fmt)
        if fmt in ("csv", "json"):
            rows = _rows(text, fmt)
            live1 = [r for r in rows if r["dataset"] == "live1"]
            assert live1 and all(str(r["n_expected"]) == "5" and "3 of 5 images" in r["note"] for r in live1), fmt
            assert all(r["note"] == "" for r in rows if r["dataset"] == "classic5"), fmt
            if fmt == "json":
                assert any("3 of 5 images" in n for n in json.loads(text)["notes"])
        else:
            assert "‡" in text and "3 of 5 images" in text, fmt
            assert "classic5 QF 10 (gray)" not in text  # a whole column is not marked


def test_records_of_a_dataset_run_json_does_not_announce_are_marked(tmp_path):
    """Records of another run appended to this one became unmarked columns."""
    run = _copy_run(tmp_path, datasets={"classic5": {"images": 3}})
    lines = (run / "records.jsonl").read_text().splitlines()
    appended = {**json.loads(lines[0]), "qf": 30}  # one image of a QF the run never asked for
    (run / "records.jsonl").write_text("\n".join([*lines, json.dumps(appended)]) + "\n")
    md = render(run, "md")
    assert "live1 is not among the datasets run.json announces" in md and "QF 10 ‡" in md
    assert "classic5 QF 30 (gray): jpeg: 1 of 3 images" in md
    assert all("of ? images" in r["note"] for r in _rows(render(run, "csv"), "csv") if r["dataset"] == "live1")


@pytest.mark.parametrize("value", [None, "nan", "abc"], ids=["null", "NaN", "not-a-number"])
def test_a_missing_or_nan_metric_is_named_and_leaves_no_mean(tmp_path, value):
    """A null PSNR was skipped in the mean (Classic5 QF 10 then read 28.69 where 27.82 was right)."""
    run = _copy_run(tmp_path)
    lines = (run / "records.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert (first["model"], first["dataset"], first["qf"]) == ("jpeg", "classic5", 10)
    first["psnr"] = value
    (run / "records.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    rows = _rows(render(run, "csv"), "csv")
    (row,) = [r for r in rows if (r["model"], r["dataset"], r["qf"]) == ("jpeg", "classic5", "10")]
    assert row["psnr"] == "" and f"psnr missing or not a number for 1 image(s) ({first['image']})" in row["note"]
    assert row["ssim"] != ""  # the other metrics of those images are whole
    md = render(run, "md", ci=True)  # the paired CI too: no interval over fewer pairs, no traceback
    assert "psnr missing or not a number" in md and "classic5 QF 10 ‡" in md


def test_one_name_run_with_other_weights_is_two_labelled_rows(tmp_path):
    """`report runA runB` kept the last run's numbers under the shared name, without a word."""
    a = _copy_run(tmp_path, "a")
    b = _copy_run(tmp_path, "b")
    for run, sha, shift in ((a, "aa" * 32, 0.0), (b, "bb" * 32, 1.0)):
        info = json.loads((run / "run.json").read_text())
        info["models"]["fbcnn"]["weights_sha256"] = [sha]
        (run / "run.json").write_text(json.dumps(info))
        recs = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
        for r in recs:
            if r["model"] == "fbcnn":
                r["psnr"] += shift
        (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rows = [r for r in _rows(render([a, b], "csv"), "csv") if r["model"].startswith("fbcnn")]
    by = {(r["model"], r["dataset"], r["qf"]): float(r["psnr"]) for r in rows if r["space"] == "gray"}
    assert by[("fbcnn @aaaaaaaa", "classic5", "10")] == 30.0 and by[("fbcnn @bbbbbbbb", "classic5", "10")] == 31.0
    assert "fbcnn @aaaaaaaa" in render([a, b], "md") and "fbcnn @bbbbbbbb" in render([a, b], "md")
    assert {r["model"] for r in _rows(render([a, a], "csv"), "csv")} == {"jpeg", "fbcnn", "swinir"}  # same weights
