"""``cirbench metrics``: the metrics a run can compute (registered, installed plug-ins) and how each reads;
``fetch`` downloads a carded metric's weights (pyiqa's), verified, where its libraries look."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    m = sub.add_parser("metrics", help="list the metrics (direction, unit, spaces); fetch a metric's weights",
                       description="List the metrics runs can compute: cirbench's own, pyiqa's curated ones (from "
                                   "their metric cards), installed plug-ins (entry points of the cirbench.metrics "
                                   "group); any pyiqa metric is pyiqa:NAME, and any function fn(restored, target) -> "
                                   "float is one too, named module:attr in --metrics. `fetch NAME...` downloads the "
                                   "weight files a metric's card pins (sha256 and size checked) into "
                                   "$CIRBENCH_CACHE, where pyiqa, torchvision, CLIP and timm look; a run fetches "
                                   "them too when they are missing.")
    m.add_argument("action", choices=["list", "fetch"])
    m.add_argument("names", nargs="*", metavar="NAME", help="fetch: the metrics (short names or pyiqa:NAME; "
                   "comma-separated or several)")
    m.set_defaults(func=run)


def run(args) -> int:
    if args.action == "fetch":
        return _fetch(args)
    from tabulate import tabulate

    from ..metrics import DEFAULT_METRICS, get_metric, metric_names

    rows = []
    for name in metric_names():
        spec = get_metric(name, allow_code=False)
        rows.append([spec.name, spec.label, spec.unit or "-", "higher" if spec.higher_is_better else "lower",
                     ", ".join(spec.spaces), "yes" if spec.name in DEFAULT_METRICS else "", spec.source])
    print(tabulate(rows, headers=["name", "label", "unit", "better", "spaces", "default", "source"],
                   tablefmt="simple", disable_numparse=True))
    return 0


def _fetch(args) -> int:
    from ..errors import ConfigError
    from ..metrics import iqa
    from . import common

    names = [n for text in args.names for n in common.csv(text) or []]
    if not names:
        raise ConfigError(f"metrics fetch: name the metrics (`cirbench metrics fetch NAME`); metrics with weight "
                          f"files: {', '.join(iqa.list_cards())}")
    cards = [iqa.card_of(n) for n in names]  # every name checked before anything is downloaded
    for card in cards:
        if not card.files:
            print(f"{card.name}: no weight files", file=sys.stderr)
            continue
        todo = iqa.missing_files(card)
        digests = iqa.verify(card)  # fetches what is missing (a line each), then checks every file
        for f in card.files:
            if f not in todo:
                how = "matches the card" if f.sha256 else "no full digest on the card"
                print(f"{card.name}: {iqa.destination(f)} sha256 {digests[f.name]} (already there; {how})",
                      file=sys.stderr)
    return 0
