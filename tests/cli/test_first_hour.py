"""The first hour (issue 26): a resume does what its new options ask, counts say what happened, and a report
that shows nothing says why."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cirbench.cli import main
from cirbench.records import iter_records, output_image_path


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def folder(tmp_path: Path, n: int = 3) -> Path:
    ds = tmp_path / "photos"
    ds.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(ds / f"p{i}.png")
    return ds


def test_resume_with_save_images_writes_the_outputs_of_records_already_done(tmp_path, capsys):
    ds, out = folder(tmp_path), tmp_path / "run"
    args = ["run", "--models", "jpeg", "--datasets", f"folder:{ds}", "--qf", "10", "--out", out, "--no-profile"]
    assert cli(capsys, *args)[0] == 0
    before = (out / "records.jsonl").read_bytes()
    rc, _, err = cli(capsys, *args, "--save-images")
    assert rc == 0, err
    assert "0 records written" in err and "3 recorded ones run again for --save-images" in err
    assert (out / "records.jsonl").read_bytes() == before  # nothing recomputed into the records
    for rec in iter_records(out):
        assert output_image_path(out, "jpeg", "single", "photos", "jpeg", 10, rec["image"]).is_file()
    rc, _, err = cli(capsys, *args, "--save-images")
    assert "(3 model results already recorded)" in err  # and now nothing is left to do


def test_counts_say_done_and_skipped_apart(tmp_path, capsys):
    """A result left out as invalid is counted as skipped, not as done (a fresh run said "24 already done")."""
    ds, out = folder(tmp_path), tmp_path / "run"
    outs = tmp_path / "outs"
    outs.mkdir()
    for p in sorted(ds.glob("*.png"))[:2]:  # the third output is missing
        shutil.copy(p, outs / p.name)
    args = ["run", "--models", f"jpeg,outputs:{outs}/{{stem}}.png", "--datasets", f"folder:{ds}", "--qf", "10",
            "--out", out, "--skip-invalid", "--no-profile"]
    rc, _, err = cli(capsys, *args)
    assert rc == 0, err
    assert "20 records written to" in err and "(1 skipped as invalid)" in err and "already" not in err
    assert "p2.png: output not found; add the file" in err and "use --skip-invalid" not in err  # it was used
    rc, _, err = cli(capsys, *args)
    assert "0 records written" in err and "(5 model results already recorded; 1 skipped as invalid)" in err


def test_a_report_that_shows_nothing_says_why(tmp_path, capsys):
    ds, out = folder(tmp_path), tmp_path / "run"
    assert cli(capsys, "run", "--models", "jpeg", "--datasets", f"folder:{ds}", "--qf", "10", "--out", out,
               "--no-profile")[0] == 0
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "report", tmp_path / "nothere")
    assert rc == 2 and "nothere: no such folder" in err
    rc, _, err = cli(capsys, "report", tmp_path / "empty")
    assert rc == 2 and "empty: no records (not a run folder" in err
    rc, _, err = cli(capsys, "report", out, "--qf", "20")
    assert rc == 2 and "--qf 20: the records have 10" in err
    rc, _, err = cli(capsys, "report", out, "--datasets", "live1", "--space", "rgb")
    assert "--datasets live1: the records have photos" in err and "--space" not in err  # rgb is there


def test_plots_say_what_they_left_out(tmp_path, capsys):
    ds, out = folder(tmp_path), tmp_path / "run"  # a "model" whose outputs are the ground truths themselves
    assert cli(capsys, "run", "--models", f"jpeg,outputs:{ds}/{{stem}}.png", "--datasets", f"folder:{ds}", "--qf",
               "10", "--out", out, "--no-profile")[0] == 0
    rc, _, err = cli(capsys, "report", out, "--plots", tmp_path / "figs")
    assert rc == 0
    assert "no psnr_vs_qf figure: the records hold one QF (10)" in err
    assert "no crops for photos: the run saved no images; rerun it with --save-images" in err


def test_published_note_is_a_command(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "run", "--models", "jpeg", "--datasets", "live1", "--qf", "10", "--out", out,
               "--no-profile")[0] == 0
    rc, text, _ = cli(capsys, "report", out, "--published")
    assert rc == 0 and "to see them beside ours, add --space rgb:" in text
    assert "`cirbench report RUN --published --space rgb --datasets live1`" in text
