"""``cirbench metrics``: the metrics a run can compute (registered, installed plug-ins) and how each reads."""

from __future__ import annotations


def add_parser(sub) -> None:
    m = sub.add_parser("metrics", help="list the metrics (direction, unit, spaces)",
                       description="List the metrics runs can compute: cirbench's own and installed plug-ins "
                                   "(entry points of the cirbench.metrics group). Any function fn(restored, target) "
                                   "-> float is one too, named module:attr in --metrics.")
    m.add_argument("action", choices=["list"])
    m.set_defaults(func=run)


def run(args) -> int:
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
