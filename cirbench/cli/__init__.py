"""The ``cirbench`` command line: argparse, printing and exit codes; one module per subcommand group.

Exit codes: 0 success, 1 a check failed (``regress``, ``datasets verify``), 2 an expected failure (a
:class:`~cirbench.errors.CirbenchError`: one line on stderr, no traceback unless ``--debug``), 130
interrupted. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import CirbenchError
from . import datasets, merge, metrics, models, protocols, records, regress, report, run, train

__all__ = ["main", "build_parser"]

SUBCOMMANDS = (run, report, datasets, protocols, models, metrics, merge, records, train, regress)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="cirbench", description="Benchmark and evaluation suite for blind "
                                "compressed image restoration.")
    p.add_argument("--version", action="version", version=f"cirbench {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
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
    parser = build_parser()
    args = parser.parse_args(argv)
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
