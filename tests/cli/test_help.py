"""The command line's entry and help: ``--version`` and ``--help`` answer without importing torch, numpy or
pandas (seconds of imports), every subcommand is listed as its module describes it, options say what they do."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from cirbench.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "numpy", "pandas")
LIGHT = list(COMMANDS)


def _heavy_imports(argv: list[str]) -> list[str]:
    code = (f"import json, sys\nfrom cirbench.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n"
            f"    pass\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--version"], ["--help"], *([c, "--help"] for c in LIGHT),
                                  ["datasets", "fetch", "--help"]], ids=" ".join)
def test_version_and_help_import_no_heavy_library(argv):
    assert _heavy_imports(argv) == []


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_the_listing_is_each_subcommand_s_own_help():
    listed = {a.dest: a.help for a in _subparsers(build_parser())._choices_actions}
    assert listed == COMMANDS
    assert {a.dest: a.help for a in _subparsers(build_parser([]))._choices_actions} == COMMANDS


def _options(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and action.dest != "help":
            yield f"{path} {action.option_strings[-1]}", action.help


@pytest.mark.parametrize("command", LIGHT)
def test_every_option_says_what_it_does(command):
    sub = _subparsers(build_parser([command])).choices[command]
    silent = [name for name, text in _options(sub, command) if not text]
    assert silent == []


def test_run_help_puts_folders_under_datasets_only(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    datasets, qf = text.split("--datasets DATASETS ", 1)[1], text.split("--qf QF ", 1)[1]
    assert "folder:PATH" in datasets.split("--qf QF")[0] and "folder:" not in qf.split("--data-root")[0]
    assert "bf16 autocast" in text and "channels-last memory format" in text


def test_datasets_fetch_help_is_its_own_and_shows_the_mirror_layout(capsys):
    with pytest.raises(SystemExit) as done:
        main(["datasets", "fetch", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cirbench datasets fetch")
    for line in ("MIRROR/classic5/", "MIRROR/live1/", "MIRROR/live1_gray/", "MIRROR/bsds500/test/",
                 "MIRROR/div2k/valid/", "mirror root", "--from"):
        assert line in out
