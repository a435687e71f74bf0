"""``--models outputs:TEMPLATE``: released outputs scored through the same metrics and records as a model's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cirbench.cli import main
from cirbench.errors import ConfigError
from cirbench.records import iter_records
from cirbench.zoo.outputs import OutputsRestorer

METRICS = ("psnr", "ssim", "psnrb")


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:52]
    base = (120 + 60 * np.sin(xx / 4.0) * np.cos(yy / 6.0))[..., None] + rng.normal(0, 8, (40, 52, 3))
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(d / "a.png")
    Image.fromarray(np.clip(base[..., 0] * 0.9, 0, 255).astype(np.uint8)).save(d / "b.png")  # a gray image
    return d


def _by_key(run):
    return {(r["dataset"], r["image"], r["qf"], r["space"]): tuple(r[m] for m in METRICS) for r in iter_records(run)}


def test_saved_outputs_score_to_the_model_s_numbers(tmp_path, folder):
    run = tmp_path / "run"
    assert main(["run", "--models", "jpeg", "--datasets", f"folder:{folder}", "--qf", "10,40", "--out", str(run),
                 "--save-images"]) == 0
    template = f"outputs:{run}/images/jpeg/{{dataset}}/{{degradation}}-q{{qf}}/{{stem}}.png"
    again = tmp_path / "again"
    assert main(["run", "--models", template, "--datasets", f"folder:{folder}", "--qf", "10,40",
                 "--out", str(again)]) == 0
    recs = list(iter_records(again))
    assert {r["model"] for r in recs} == {"outputs:jpeg"}  # a short label: the folder before the first placeholder
    named = tmp_path / "named"
    assert main(["run", "--models", f"mine={template}", "--datasets", f"folder:{folder}", "--qf", "10",
                 "--out", str(named)]) == 0
    assert {r["model"] for r in iter_records(named)} == {"mine"}
    want, got = _by_key(run), _by_key(again)
    assert {k[3] for k in want} >= {"y", "rgb", "gray"} and {k[:3] for k in want} == {
        ("imgs", i, q) for i in ("a.png", "b.png") for q in (10, 40)}
    assert got == want  # identical to the last digit: same pixels, same metric code


def test_missing_and_wrong_size_outputs_name_the_file(tmp_path, folder, capsys):
    out = tmp_path / "released"
    out.mkdir()
    args = ["run", "--models", f"outputs:{out}/{{stem}}_q{{qf}}.png", "--datasets", f"folder:{folder}", "--qf", "10",
            "--out", str(tmp_path / "r1")]
    assert main(args) == 2
    err = capsys.readouterr().err  # found by the preflight: before anything is computed
    assert f"cirbench: {out}/a_q10.png: output not found" in err and "Nothing was computed" in err
    assert f"{out}/b_q10.png: output not found" in err  # every missing file at once
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(out / "a_q10.png")
    assert main([*args[:-1], str(tmp_path / "r2")]) == 2
    assert "a_q10.png: 20x16 but the input is 52x40" in capsys.readouterr().err


def test_templates_are_checked():
    with pytest.raises(ConfigError, match=r"needs \{stem\}"):
        OutputsRestorer("papers/fbcnn/{dataset}/{qf}.png")
    with pytest.raises(ConfigError, match="unknown"):
        OutputsRestorer("papers/{model}/{stem}.png")


def test_a_template_that_cannot_tell_the_qfs_apart_is_refused(tmp_path, folder, capsys):
    """Issue 23: without {qf} every QF column would score the same file; refused before anything runs."""
    out = tmp_path / "released"
    out.mkdir()
    for name in ("a", "b"):
        Image.open(folder / f"{name}.png").save(out / f"{name}.png")
    args = ["run", "--models", f"outputs:{out}/{{stem}}.png", "--datasets", f"folder:{folder}", "--out",
            str(tmp_path / "run")]
    assert main([*args, "--qf", "10,40"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"one file, {out}/a.png, for QF 10 and QF 40" in err and "add {qf} to the template" in err
    assert not (tmp_path / "run" / "records.jsonl").exists()
    assert main([*args, "--qf", "10"]) == 0  # one QF: the template names one file per image, as it should
