"""Per-image records: round trip, torn lines, duplicate keys, resume."""

import json
import math
import re

import pytest

from cirbench.errors import RunError
from cirbench.records import FIELDS, KEY, RECORDS_FILE, RecordWriter, check_run, iter_records, read_records


def rec(image="a.png", qf=10, space="gray", psnr=30.5, **extra):
    r = {"model": "jpeg", "setting": "single", "dataset": "classic5", "image": image, "degradation": "jpeg",
         "qf": qf, "space": space, "psnr": psnr, "ssim": 0.9, "psnrb": 29.0, "seconds": 0.0, "height": 64,
         "width": 48, "sha256": "ab" * 32, "nonfinite": False}
    r.update(extra)
    return r


def test_round_trip_with_inf(tmp_path):
    with RecordWriter(tmp_path) as w:
        w.write([rec("a.png"), rec("b.png", psnr=math.inf, qf_pred=12.5), rec("c.png", psnr=-math.inf)])
    got = list(iter_records(tmp_path))
    assert [r["image"] for r in got] == ["a.png", "b.png", "c.png"]
    assert got[0] == rec("a.png")
    assert got[1]["psnr"] == math.inf and got[1]["qf_pred"] == 12.5
    assert got[2]["psnr"] == -math.inf
    # the file is strict JSON (no bare Infinity)
    for line in (tmp_path / RECORDS_FILE).read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    df = read_records(tmp_path)
    assert len(df) == 3 and df["psnr"].iloc[1] == math.inf
    assert set(FIELDS) <= set(df.columns)
    assert list(iter_records(tmp_path / RECORDS_FILE)) == got  # the file itself works too


def test_nan_round_trip(tmp_path):
    with RecordWriter(tmp_path) as w:
        w.write([rec(ssim=math.nan, nonfinite=True)])
    (r,) = iter_records(tmp_path)
    assert math.isnan(r["ssim"]) and r["nonfinite"] is True


def test_empty_and_missing(tmp_path):
    assert list(iter_records(tmp_path / "nothing")) == []
    df = read_records(tmp_path)
    assert len(df) == 0 and list(df.columns) == list(FIELDS)


def test_torn_last_line_ignored_and_repaired(tmp_path):
    with RecordWriter(tmp_path) as w:
        w.write([rec("a.png"), rec("b.png")])
    path = tmp_path / RECORDS_FILE
    full = json.dumps(rec("c.png")) + "\n"
    with open(path, "a") as fh:
        fh.write(full[: len(full) // 2])  # a crash mid-write
    assert [r["image"] for r in iter_records(tmp_path)] == ["a.png", "b.png"]
    with RecordWriter(tmp_path) as w:
        assert path.read_bytes().endswith(b"\n")  # repaired on open
        assert not w.has(**{k: rec("c.png")[k] for k in KEY})
        w.write([rec("c.png")])
    assert [r["image"] for r in iter_records(tmp_path)] == ["a.png", "b.png", "c.png"]
    assert len(path.read_text().splitlines()) == 3


def test_malformed_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    with RecordWriter(tmp_path) as w:
        w.write([rec("a.png")])
    with open(tmp_path / RECORDS_FILE, "a") as fh:
        fh.write("{not json\n")
        fh.write(json.dumps(rec("b.png")) + "\n")
    with pytest.raises(RunError, match=rf"{RECORDS_FILE}:2: malformed record"):
        list(iter_records(tmp_path))
    with pytest.raises(RunError, match=":2: malformed"):  # a resume refuses too: nothing is silently dropped
        RecordWriter(tmp_path)
    errors, _ = check_run(tmp_path)
    assert any(":2: not JSON" in e for e in errors)


def test_records_check_finds_duplicates_schema_and_counts(tmp_path, capsys):
    from cirbench.cli import main

    with RecordWriter(tmp_path) as w:
        w.write([rec("a.png"), rec("b.png")])
    (tmp_path / "run.json").write_text(json.dumps({"models": {"jpeg": {}}, "datasets": {"classic5": {"images": 3}}}))
    assert main(["records", "check", str(tmp_path)]) == 0
    assert "2 of 3 images" in capsys.readouterr().out  # an unfinished run is a note, not an error
    good = (tmp_path / RECORDS_FILE).read_text().splitlines()
    bad = {**json.loads(good[0])}
    del bad["psnr"]
    (tmp_path / RECORDS_FILE).write_text("\n".join([*good, good[0], json.dumps(bad)]) + "\n")
    assert main(["records", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert ":3: duplicate of line 1" in out and ":4: lacks psnr" in out


def test_duplicate_keys_skipped(tmp_path):
    with RecordWriter(tmp_path) as w:
        w.write([rec("a.png"), rec("a.png", psnr=99.0), rec("a.png", space="y")])
        w.write([rec("a.png", psnr=1.0)])
    with RecordWriter(tmp_path) as w:  # and across reopenings
        w.write([rec("a.png", psnr=2.0), rec("a.png", qf=20)])
    got = list(iter_records(tmp_path))
    assert [(r["space"], r["qf"], r["psnr"]) for r in got] == [("gray", 10, 30.5), ("y", 10, 30.5),
                                                                ("gray", 20, 30.5)]


def test_resume_has(tmp_path):
    key = {k: rec()[k] for k in KEY}
    with RecordWriter(tmp_path) as w:
        assert not w.has(**key)
        w.write([rec()])
        assert w.has(**key)
        assert not w.has(**{**key, "qf": 20})
        assert not w.has(**{**key, "model": "fbcnn"})
    w = RecordWriter(tmp_path)
    try:
        assert w.has(**key)
    finally:
        w.close()


def test_missing_fields_rejected(tmp_path):
    bad = rec()
    del bad["sha256"]
    with RecordWriter(tmp_path) as w, pytest.raises(ValueError, match="sha256"):
        w.write([bad])
    assert list(iter_records(tmp_path)) == []


def test_refused_batch_marks_nothing_done(tmp_path):
    bad = rec("b.png")
    del bad["seconds"]
    with RecordWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="seconds"):
            w.write([rec("a.png"), bad])
        assert not w.has(**{k: rec("a.png")[k] for k in KEY})
        w.write([rec("a.png")])  # not skipped as a duplicate of a record that was never written
    assert [r["image"] for r in iter_records(tmp_path)] == ["a.png"]


# --- issue 23 ---------------------------------------------------------------------------------------------------
def test_a_records_file_that_is_a_link_is_refused_and_its_target_kept(tmp_path):
    """The repair of a torn last line once truncated whatever records.jsonl pointed to."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious line one\nprecious, no newline")
    run = tmp_path / "run"
    run.mkdir()
    (run / RECORDS_FILE).symlink_to(victim)
    with pytest.raises(RunError, match=rf"{RECORDS_FILE}: is a symbolic link .*never follows a link"):
        RecordWriter(run)
    assert victim.read_text() == "precious line one\nprecious, no newline"


def test_a_record_without_its_key_fields_is_named_on_resume(tmp_path):
    bad = rec("b.png")
    del bad["dataset"], bad["model"]
    (tmp_path / RECORDS_FILE).write_text(json.dumps(rec("a.png")) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RunError, match=rf"{RECORDS_FILE}:2: malformed record \(lacks model, dataset\)"):
        RecordWriter(tmp_path)
    assert any(":2: lacks model, dataset" in e for e in check_run(tmp_path)[0])


def test_a_control_character_is_said_plainly(tmp_path):
    """json's own message for it ends in a dangling "at": the line read "not JSON (Invalid control character at)"."""
    (tmp_path / RECORDS_FILE).write_text('{"model": "jp\teg"}\n')
    with pytest.raises(RunError, match=r":1: malformed record \(not JSON \(Invalid control character at column 14\)\)"):
        list(iter_records(tmp_path))


@pytest.mark.parametrize("text,words", [("{not json", "malformed run.json (Expecting property name"),
                                        ("[1, 2]", "malformed run.json (a JSON list, not an object)"),
                                        (b'{"a": "\xff"}', "not UTF-8 text")], ids=["not-json", "a-list", "not-utf8"])
def test_a_malformed_run_json_is_a_run_error_naming_it(tmp_path, text, words):
    from cirbench.records import read_run_info

    (tmp_path / "run.json").write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(RunError, match=re.escape(words)) as err:
        read_run_info(tmp_path)
    assert str(tmp_path / "run.json") in str(err.value)
    (tmp_path / RECORDS_FILE).write_text(json.dumps(rec()) + "\n")
    assert any(words in e for e in check_run(tmp_path)[0])  # records check lists it, among the rest


def test_records_check_flags_what_would_make_a_mean_wrong(tmp_path):
    """A NaN metric (a mean over it is undefined), records of a dataset run.json does not list, fewer images
    than announced, and a run that did not finish."""
    with RecordWriter(tmp_path) as w:
        w.write([rec("a.png"), rec("b.png", psnr=math.nan), rec("c.png", dataset="live1")])
    (tmp_path / "run.json").write_text(json.dumps({
        "models": {"jpeg": {}}, "datasets": {"classic5": {"images": 5}}, "status": "interrupted",
        "stopped": {"at": "2025-01-01T00:00:00+00:00", "reason": "Ctrl-C"}}))
    errors, notes = check_run(tmp_path, ("psnr", "ssim", "psnrb"))  # a run.json without specs: the defaults
    assert any(":2: psnr is NaN" in e for e in errors)
    assert any("records of dataset(s) live1, which run.json does not list" in e for e in errors)
    assert any("2 of 5 images" in n for n in notes)
    assert any("the last run into this folder was interrupted (Ctrl-C)" in n for n in notes)
    (tmp_path / "run.json").write_text(json.dumps({"models": {"jpeg": {}}, "status": "running"}))  # kill -9
    assert any("recorded no end (killed, or still running)" in n for n in check_run(tmp_path)[1])
