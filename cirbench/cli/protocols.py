"""``cirbench protocols``: list, show or validate protocol files."""

from __future__ import annotations


def add_parser(sub) -> None:
    pr = sub.add_parser("protocols", help="list, show or validate protocols")
    pr.add_argument("action", choices=["list", "show", "validate"])
    pr.add_argument("names", nargs="*")
    pr.set_defaults(func=run)


def run(args) -> int:
    from ..eval.protocols import list_protocols, load_protocol

    if args.action == "list":
        for name in list_protocols():
            p = load_protocol(name)
            print(f"{name:10s} v{p.version}  {len(p.jobs):4d} jobs  {p.description.splitlines()[0][:80]}")
        return 0
    for target in args.names or []:
        p = load_protocol(target)
        if args.action == "validate":
            print(f"{p.path}: ok ({p.name} v{p.version}, {len(p.jobs)} jobs)")
        else:
            print(f"{p.name} v{p.version}  sha256 {p.sha256[:16]}  file {p.path}")
            print(p.description)
            print(f"models: {', '.join(p.models)}; give_qf: {p.give_qf}; setting: {p.setting}")
            if p.metrics:  # else the default metrics
                print(f"metrics: {', '.join(p.metrics)}")
            for d in p.datasets:
                degs = sorted({(g.name, g.qf) for dd, g in p.jobs if dd == d})
                print(f"  {d}: " + ", ".join(f"{n}@{q}" for n, q in degs))
    return 0
