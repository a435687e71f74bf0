"""The ``cirbench`` command line: argparse, printing and exit codes; one module per subcommand group.

Exit codes: 0 success, 1 a check failed (``regress``, ``datasets verify``, ``records check``, ``protocols
validate``), 2 an expected failure (a :class:`~cirbench.errors.CirbenchError`: one line on stderr, no traceback
unless ``--debug``), 130 interrupted (Ctrl-C, also while starting up), 143 terminated (SIGTERM); both say so in
one line. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterable

from ..errors import CirbenchError, Interrupted

__all__ = ["main", "build_parser", "COMMANDS"]

# Subcommand -> its one-line help, for ``cirbench --help``. A subcommand's module is imported only when that
# subcommand runs: torch, numpy and pandas take seconds to import and --version and --help need none of them.
COMMANDS = {
    "run": "evaluate models on a protocol",
    "report": "render tables and plots from run folders",
    "site": "build a static leaderboard site from run folders (opens from file://)",
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


def _terminate(signum, frame):
    raise Interrupted("SIGTERM", 128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cirbench`` and ``python -m cirbench``."""
    # SIGTERM (kill, a scheduler) stops a run as Ctrl-C does: run.json says so and the user reads one line,
    # not a silent exit 143. Only the main thread may set handlers (an embedding program may call us elsewhere).
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return _main(argv)
    except Interrupted as exc:
        print(f"cirbench: terminated ({exc.signal_name}); records written so far are kept (rerun to resume)",
              file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # also while starting up: imports and argument parsing take seconds
        print("cirbench: interrupted; records written so far are kept (rerun to resume)", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        command = _command_of(argv)
        # Building a subcommand's parser may read data (e.g. `datasets fetch` lists the manifests' files).
        args = build_parser([command] if command else []).parse_args(argv)
        if not args.debug:
            warnings.simplefilter("default")
            warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
        return args.func(args) or 0
    except CirbenchError as exc:
        if debug:
            raise
        for line in exc.details:
            print(f"cirbench: {one_line(line)}", file=sys.stderr)
        print(f"cirbench: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
