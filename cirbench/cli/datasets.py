"""``cirbench datasets``: list the datasets (and how to get the absent ones) or verify their files."""

from __future__ import annotations

from ..config import closest
from ..errors import ConfigError
from . import common


def add_parser(sub) -> None:
    d = sub.add_parser("datasets", help="list or verify datasets")
    d.add_argument("action", choices=["list", "verify"])
    d.add_argument("names", nargs="?", help="comma-separated (verify; default all)")
    d.add_argument("--data-root")
    d.set_defaults(func=run)


def run(args) -> int:
    from tabulate import tabulate

    from ..eval.datasets import REGISTRY, DatasetMissing, data_root, get_dataset, verify

    root = data_root(args.data_root)
    if args.action == "list":
        rows = []
        for name, spec in REGISTRY.items():
            try:
                ds = get_dataset(name, args.data_root)
                where = f"{len(ds)} images ({ds.source})"
            except DatasetMissing:
                where = "missing: " + spec.how_to_get.replace("DATA_ROOT", str(root))
            rows.append([name, spec.description, where])
        print(f"data root: {root}")
        print(tabulate(rows, headers=["dataset", "description", "status"], tablefmt="simple"))
        return 0
    names = common.csv(args.names) or list(REGISTRY)
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
