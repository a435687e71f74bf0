"""``cirbench datasets``: list the datasets (and the command that gets each absent one), verify their files,
or fetch them into the data root."""

from __future__ import annotations

from ..config import closest
from ..errors import ConfigError
from . import common


def add_parser(sub) -> None:
    d = sub.add_parser("datasets", help="list, verify or fetch datasets")
    d.add_argument("action", choices=["list", "verify", "fetch"])
    d.add_argument("names", nargs="*", help="dataset names (verify: default all; fetch: at least one)")
    d.add_argument("--data-root")
    d.add_argument("--from", dest="source", metavar="URL_OR_FILE",
                   help="fetch: a mirror URL, a local archive or a local folder instead of the official source")
    d.set_defaults(func=run)


def run(args) -> int:
    from tabulate import tabulate

    from ..eval.datasets import REGISTRY, DatasetMissing, data_root, get_dataset, verify

    root = data_root(args.data_root)
    names = [n for arg in args.names for n in common.csv(arg) or []]
    if args.action == "list":
        rows = []
        for name, spec in REGISTRY.items():
            try:
                ds = get_dataset(name, args.data_root)
                where = f"{len(ds)} images ({ds.source})"
            except DatasetMissing:
                where = f"absent: {spec.fetch_command}"
            rows.append([name, spec.description, where])
        print(f"data root: {root}")
        print(tabulate(rows, headers=["dataset", "description", "status"], tablefmt="simple"))
        return 0
    if args.action == "fetch":
        from ..eval.fetch import fetch_dataset

        if not names:
            raise ConfigError("datasets fetch needs a name: " + ", ".join(n for n, s in REGISTRY.items()
                                                                         if s.source is not None))
        if args.source and len(names) > 1:
            raise ConfigError("--from applies to one dataset at a time")
        for name in names:
            fetch_dataset(name, args.data_root, args.source)
        return 0
    names = names or list(REGISTRY)
    bad = 0
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"unknown dataset {name!r}{closest(name, REGISTRY)}; known: {', '.join(REGISTRY)}")
        rep = verify(name, args.data_root)
        status = "ok" if rep.ok else "FAILED"
        if rep.missing and rep.checked == 0:
            status = "absent"
        print(f"{name}: {status} — {rep.checked} checked in {rep.folder}" + (f"; {rep.note}" if rep.note else ""))
        for label, items in (("missing", rep.missing), ("extra", rep.extra), ("mismatched", rep.mismatched)):
            if items and not (label == "missing" and rep.checked == 0):
                print(f"  {label} ({len(items)}): " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
        bad += status == "FAILED"
    return 1 if bad else 0
