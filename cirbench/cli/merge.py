"""``cirbench merge``: merge the records of shard runs into one run folder."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    mg = sub.add_parser("merge", help="merge the records of shard runs into one run folder")
    mg.add_argument("runs", nargs="+", help="the shard runs' folders")
    mg.add_argument("--out", required=True, help="the merged run's folder")
    mg.set_defaults(func=run)


def run(args) -> int:
    from ..eval.merge import merge_runs

    n = merge_runs(args.runs, args.out)
    print(f"merged {n} records into {args.out}", file=sys.stderr)
    return 0
