"""``cirbench protocols``: list, show or validate protocol files."""

from __future__ import annotations


def add_parser(sub) -> None:
    pr = sub.add_parser("protocols", help="list, show or validate protocols")
    pr.add_argument("action", choices=["list", "show", "validate"],
                    help="validate: load each file and check its models, setting and folders (exit 1 if not ok)")
    pr.add_argument("names", nargs="*")
    pr.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..eval.protocols import list_protocols, load_protocol, problems

    if args.action == "list":
        for name in list_protocols():
            p = load_protocol(name)
            print(f"{name:10s} v{p.version}  {len(p.jobs):4d} jobs  {p.description.splitlines()[0][:80]}")
        return 0
    if args.action == "validate":
        if not args.names:
            raise ConfigError("protocols validate needs protocol names or files, e.g. "
                              "`cirbench protocols validate my_protocol.toml`")
        bad = 0
        for target in args.names:
            try:
                p = load_protocol(target)
                found = problems(p)
            except ConfigError as exc:  # every file is checked, each problem said on its line
                print(f"NOT OK {exc}")
                bad += 1
                continue
            for line in found:
                print(f"NOT OK {line}")
            if found:
                print(f"{p.path}: not ok ({len(found)} problem(s))")
            else:
                print(f"{p.path}: ok ({p.name} v{p.version}, {len(p.jobs)} jobs)")
            bad += bool(found)
        return 1 if bad else 0
    for target in args.names or []:
        p = load_protocol(target)
        print(f"{p.name} v{p.version}  sha256 {p.sha256[:16]}  file {p.path}")
        print(p.description)
        print(f"models: {', '.join(p.models)}; give_qf: {p.give_qf}; setting: {p.setting}")
        if p.metrics:  # else the default metrics
            print(f"metrics: {', '.join(p.metrics)}")
        for d in p.datasets:
            degs = sorted({(g.name, g.qf) for dd, g in p.jobs if dd == d})
            print(f"  {d}: " + ", ".join(f"{n}@{q}" for n, q in degs))
    return 0
