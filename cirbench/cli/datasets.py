"""``cirbench datasets``: list the datasets (and the command that gets each absent one), verify their files,
or fetch them into the data root."""

from __future__ import annotations

import argparse

from ..config import closest
from ..errors import ConfigError
from . import common

ROOT_HELP = "data root (default: $CIRBENCH_DATA, else ~/.cache/cirbench/datasets)"


def _fetch_description() -> str:
    from ..eval.fetch import ARCHIVE_SUFFIXES, mirror_layout

    layout = "\n".join(f"      MIRROR/{line}" for line in mirror_layout())
    return f"""\
Get datasets into the data root, each checked file by file against the packaged sha256 manifests before it
is moved in: a failure leaves the set's folder as it was. A set already there and verified is skipped; of a
partial one, only the missing or mismatched files are fetched. live1_gray also gets FBCNN's LIVE1_gray PNGs
(the reference the tests check cirbench's luma against); bsds500_gray and div2k_gray get their colour sets
(gray images are computed from them).

--from takes, instead of the official sources:
  a mirror root (a URL or a folder) laid out as the data root, for any number of sets in one command:
{layout}
  one set's own folder (a URL or a folder holding its files);
  an archive holding one set: a file, or a URL ending in {', '.join(ARCHIVE_SUFFIXES)}
      (e.g. the official BSR_bsds500.tgz).
With CIRBENCH_OFFLINE=1 nothing is downloaded: only local --from copies are read.

examples:
  cirbench datasets fetch classic5 live1 live1_gray bsds500
  cirbench datasets fetch classic5 live1 live1_gray bsds500 --from https://example.org/cir-data/
  cirbench datasets fetch classic5,live1 --from /mnt/shared/datasets --data-root ~/data/cir
  cirbench datasets fetch bsds500 --from ~/Downloads/BSR_bsds500.tgz"""


def add_parser(sub) -> None:
    from ..eval.fetch import fetchable

    d = sub.add_parser("datasets", help="list, verify or fetch datasets",
                       description="List the datasets (and the command that gets each absent one), verify their "
                                   "files against the packaged manifests, or fetch them into the data root.")
    actions = d.add_subparsers(dest="action", required=True, metavar="{list,verify,fetch}")
    ls = actions.add_parser("list", help="every dataset: where it is, or the command that gets it")
    ls.add_argument("--data-root", help=ROOT_HELP)
    v = actions.add_parser("verify", help="check the files against the packaged manifests (exit 1 on a mismatch)")
    v.add_argument("names", nargs="*", help="datasets to check, comma- or space-separated (default: all)")
    v.add_argument("--data-root", help=ROOT_HELP)
    f = actions.add_parser("fetch", help="get datasets into the data root, verified file by file",
                           description=_fetch_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("names", nargs="+", metavar="NAME",
                   help=f"datasets, comma- or space-separated: {', '.join(fetchable())}")
    f.add_argument("--data-root", help=ROOT_HELP)
    f.add_argument("--from", dest="source", metavar="MIRROR_ARCHIVE_OR_FOLDER",
                   help="get the files from a mirror root (URL or folder) laid out as the data root, one set's "
                        "folder, or an archive, instead of the official sources")
    d.set_defaults(func=run)


def run(args) -> int:
    from tabulate import tabulate

    from ..eval.datasets import REGISTRY, DatasetMissing, data_root, fetched, get_dataset, verify, verify_published

    root = data_root(args.data_root)
    names = [n for arg in getattr(args, "names", []) for n in common.csv(arg, "a dataset name") or []]
    if args.action == "list":
        rows = []
        for name, spec in REGISTRY.items():
            try:
                ds = get_dataset(name, args.data_root)
                where = f"{len(ds)} images ({ds.source})"
                if not fetched(name, args.data_root):
                    where += f"; {spec.published.description}: `cirbench datasets fetch {name}`"
            except DatasetMissing:
                where = f"absent: {spec.fetch_command}"
            rows.append([name, spec.description, where])
        print(f"data root: {root}")
        print(tabulate(rows, headers=["dataset", "description", "status"], tablefmt="simple"))
        return 0
    if args.action == "fetch":
        from ..eval.fetch import fetch_datasets

        fetch_datasets(names, args.data_root, args.source)
        return 0
    names = names or list(REGISTRY)
    bad = 0
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"unknown dataset {name!r}{closest(name, REGISTRY)}; known: {', '.join(REGISTRY)}")
        for rep in (verify(name, args.data_root), verify_published(name, args.data_root)):
            if rep is None:
                continue
            status = "ok" if rep.ok else "FAILED"
            if rep.missing and rep.checked == 0:
                status = "absent"
            print(f"{name}: {status} — {rep.checked} checked in {rep.folder}" + (f"; {rep.note}" if rep.note else ""))
            for label, items in (("missing", rep.missing), ("extra", rep.extra), ("mismatched", rep.mismatched)):
                if items and not (label == "missing" and rep.checked == 0):
                    print(f"  {label} ({len(items)}): " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
            bad += status == "FAILED"
    return 1 if bad else 0
