"""The ``cirbench`` command line: argparse, printing and exit codes; one module per subcommand group.

Exit codes: 0 success, 1 a check failed (``regress``, ``datasets verify``), 2 an expected failure (a
:class:`~cirbench.errors.CirbenchError`: one line on stderr, no traceback unless ``--debug``), 130
interrupted. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Iterable

from ..errors import CirbenchError

__all__ = ["main", "build_parser", "COMMANDS"]

# Subcommand -> its one-line help, for ``cirbench --help``. A subcommand's module is imported only when that
# subcommand runs: torch, numpy and pandas take seconds to import and --version and --help need none of them.
COMMANDS = {
    "run": "evaluate models on a protocol",
    "report": "render tables and plots from run folders",
    "datasets": "list, verify or fetch datasets",
    "protocols": "list, show or validate protocols",
    "models": "list model cards, show one's details or fetch weights",
    "metrics": "list the metrics (direction, unit, spaces); fetch a metric's weights",
    "merge": "merge the records of shard runs into one run folder",
    "records": "check run folders' records",
    "train": "train a restoration network (PromptCIR two-stage recipe)",
    "regress": "compare a run with a baseline of golden numbers (exit 0 ok, 1 regression, 2 error)",
}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is not a top-level option (none takes a value)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with the full options of ``commands`` (default: all); the other subcommands are
    listed by name and help only, so their modules stay unimported."""
    from .. import __version__

    full = set(COMMANDS if commands is None else commands)
    p = argparse.ArgumentParser(prog="cirbench", description="Benchmark and evaluation suite for blind "
                                "compressed image restoration.")
    p.add_argument("--version", action="version", version=f"cirbench {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in COMMANDS.items():
        if name in full:
            importlib.import_module(f"{__name__}.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=text)
    return p


def one_line(msg: str) -> str:
    """Fold a multi-line message (e.g. a checkpoint's key lists) into one line: after a line ending in ':'
    with a space, between items with '; '."""
    out = ""
    for line in (part.strip() for part in str(msg).splitlines()):
        if line:
            out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cirbench`` and ``python -m cirbench``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    if not args.debug:
        warnings.simplefilter("default")
        warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("cirbench: interrupted; records written so far are kept (rerun to resume)", file=sys.stderr)
        return 130
    except CirbenchError as exc:
        if args.debug:
            raise
        for line in exc.details:
            print(f"cirbench: {one_line(line)}", file=sys.stderr)
        print(f"cirbench: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
