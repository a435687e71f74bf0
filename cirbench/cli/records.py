"""``cirbench records check RUN``: validate a run folder (schema, duplicates, counts against run.json)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("records", help="check run folders' records")
    p.add_argument("action", choices=["check"])
    p.add_argument("runs", nargs="+")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..metrics import DEFAULT_METRICS
    from ..records import check_run

    failed = 0
    for run_dir in args.runs:
        errors, notes = check_run(run_dir, DEFAULT_METRICS)
        for line in errors:
            print(f"ERROR {line}")
        for line in notes:
            print(f"note  {line}")
        print(f"{run_dir}: {'ok' if not errors else f'{len(errors)} problem(s)'}")
        failed += bool(errors)
    return 1 if failed else 0
