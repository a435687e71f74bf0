"""Progress: a line every so often where there is no terminal (CI logs, pipes), nothing when silenced."""

import io

from cirbench.progress import Progress


def test_lines_without_a_terminal():
    out = io.StringIO()  # not a tty: a long run prints lines, not a bar
    with Progress(4, "blind", initial=1, stream=out, every=0) as p:
        p.update()
        p.update(2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("blind: 2/4 img (50 %), ") and "img/s" in lines[0]
    assert lines[1].startswith("blind: 4/4 img (100 %)") and "about 0 s left" in lines[1]


def test_silent_when_asked():
    out = io.StringIO()
    with Progress(3, "x", stream=out, every=0, enabled=False) as p:
        p.update(3)
    assert out.getvalue() == ""


def test_a_short_run_prints_no_line():
    out = io.StringIO()
    with Progress(3, "x", stream=out, every=3600) as p:
        p.update(3)
    assert out.getvalue() == ""
