"""``cirbench regress``: run (or read) a protocol and compare its means with a committed baseline; exit 0 ok,
1 regression, 2 error. Running the protocol is this module's job; comparing records is
:mod:`cirbench.report.regress`'s."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError
from . import common


def run_baseline(protocol_name: str, models: list[str], datasets: list[str], qfs: list[int], out: Path, *,
                 metrics: list[str] | None = None, data_root: str | None = None, device: str = "cpu",
                 sha256: str | None = None, profile: bool = False, log=lambda msg: print(msg, file=sys.stderr)) -> Path:
    """Run ``protocol_name`` restricted to ``models``/``datasets``/``qfs`` into ``out`` through
    :func:`cirbench.evaluate`: datasets named are required (an absent one is a data error, exit 2, not a
    silently smaller run); none named runs the protocol's, skipping the absent."""
    from ..api import evaluate

    res = evaluate(models, protocol_name, datasets or None, qfs or None, metrics, data_root, out, device,
                   profile=profile, log=log)
    got = (res.run_info.get("protocol") or {}).get("sha256")
    if sha256 and got and got != sha256:
        log(f"warning: protocol {protocol_name!r} changed since the baseline was made (sha256 "
            f"{got[:12]} vs {sha256[:12]}); comparing anyway")
    return out



def add_parser(subparsers) -> None:
    r = subparsers.add_parser(
        "regress", help="compare a run with a baseline of golden numbers (exit 0 ok, 1 regression, 2 error)",
        description="Compare a run's mean metrics with a committed baseline of golden numbers "
                    "(cirbench/report/regress.py describes the baseline file).")
    r.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                   help="finished run to check (default: run the baseline's protocol now); with --update, "
                        "several runs of the same work measure the spread that sets the tolerances")
    r.add_argument("--baseline", required=True, help="baseline JSON (written with --update)")
    r.add_argument("--update", action="store_true", help="write --baseline from the run instead of comparing")
    r.add_argument("--data-root", help="data root (default: $CIRBENCH_DATA, else the user cache)")
    r.add_argument("--out", help="run directory when regress runs the protocol (default: a temporary one)")
    r.add_argument("--datasets", help="check only these datasets (comma-separated); with --update, the datasets")
    r.add_argument("--qf", help="check only these QFs (comma-separated); with --update, the QFs")
    r.add_argument("--protocol", help="--update without RUN_DIR: the protocol to run (default: the baseline's)")
    r.add_argument("--models", help="--update: comma-separated models (default: the baseline's, or all in RUN_DIR)")
    r.add_argument("--note", help="--update: how the baseline was made (stored in the file)")
    r.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    r.add_argument("--threads", type=int, help="torch threads (default or 0: torch's choice)")
    r.add_argument("--profile", action="store_true",
                   help="also measure each model's parameters, GFLOPs and peak memory (off: regress checks numbers)")
    r.add_argument("--format", default="simple", help="tabulate format of the table (simple, github, ...)")
    r.add_argument("--tol", action="append", default=[], metavar="METRIC=X",
                   help="tolerance for a metric's means (repeatable; default: the baseline's; --update: the "
                        "metric spec's, e.g. half a printed digit)")
    r.add_argument("--metrics", help="--update without RUN_DIR: comma-separated metrics (default: the protocol's)")
    r.set_defaults(func=run)


def _tolerances(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = (part.strip() for part in item.partition("="))
        try:
            tol = float(value)
        except ValueError:
            tol = None
        if not name or tol is None:
            from ..metrics import PRIMARY

            raise ConfigError(f"--tol takes METRIC=X (e.g. {PRIMARY}=0.01), got {item!r}")
        out[name] = tol
    return out


def run(args) -> int:
    """Compare (or, with --update, write) a baseline; returns the exit code."""
    from ..records import read_run_info
    from ..report.regress import NEW, compare, load_baseline, render_rows
    common.set_threads(args.threads)
    tol_override = _tolerances(args.tol)
    datasets, qfs = common.csv(args.datasets, "--datasets"), common.qfs(args.qf)
    if args.update:
        return _update(args, tol_override, datasets, qfs)
    if len(args.run_dirs) > 1:
        raise ConfigError("compare one RUN_DIR at a time (several are for --update)")
    base = load_baseline(args.baseline)
    unknown = [d for d in datasets or () if d not in base.get("datasets", [])]
    if unknown:
        raise ConfigError(f"--datasets {','.join(unknown)}: not in the baseline ({', '.join(base['datasets'])})")
    with tempfile.TemporaryDirectory(prefix="cirbench-regress-") as tmp:
        if args.run_dirs:
            run_dir = Path(args.run_dirs[0])
            if not (run_dir / "records.jsonl").is_file():
                raise ConfigError(f"{run_dir}: not a run directory (no records.jsonl)")
            name = read_run_info(run_dir).get("protocol", {}).get("name")
            if name not in (None, base["protocol"]):
                raise ConfigError(f"{run_dir}: a run of protocol {name!r}, the baseline is of {base['protocol']!r}")
        else:
            run_dir = Path(args.out) if args.out else Path(tmp) / "run"
            metrics = list(dict.fromkeys(e["metric"] for e in base["entries"]))
            run_baseline(base["protocol"], base["models"], datasets or base["datasets"], qfs or base["qfs"],
                         run_dir, metrics=metrics, data_root=args.data_root, device=args.device,
                         sha256=base.get("protocol_sha256"), profile=args.profile)
        rows = compare(base, run_dir, tol_override=tol_override, datasets=datasets, qfs=qfs)
    print(render_rows(rows, args.format))
    bad = [r for r in rows if r.failing]
    new = sum(r.status == NEW for r in rows)
    checked = len(rows) - new
    if not checked:
        raise ConfigError("nothing compared: the baseline has no entry for the selected datasets/QFs")
    if bad:
        print(f"\n{len(bad)} of {checked} baseline numbers regressed against {args.baseline}:", file=sys.stderr)
        for r in bad:
            print(f"  REGRESSION {r.describe()}", file=sys.stderr)
        return 1
    print(f"\nall {checked} baseline numbers within tolerance of {args.baseline}"
          + (f"; {new} new (not in the baseline)" if new else ""), file=sys.stderr)
    return 0


def _update(args, tol_override: dict, datasets, qfs) -> int:
    from ..report.regress import load_baseline, make_baseline, write_baseline

    old = load_baseline(args.baseline) if Path(args.baseline).is_file() else None
    tolerance = {**(old or {}).get("tolerance", {}), **tol_override}
    note = args.note if args.note is not None else (old or {}).get("note", "")
    with tempfile.TemporaryDirectory(prefix="cirbench-regress-") as tmp:
        if args.run_dirs:
            run_dirs = [Path(d) for d in args.run_dirs]
            for d in run_dirs:
                if not (d / "records.jsonl").is_file():
                    raise ConfigError(f"{d}: not a run directory (no records.jsonl)")
        else:
            protocol = args.protocol or (old or {}).get("protocol")
            models = common.csv(args.models, "--models") or (old or {}).get("models")
            if not protocol or not models:
                raise ConfigError("--update without RUN_DIR needs --protocol and --models (or an existing --baseline)")
            datasets = datasets or (old or {}).get("datasets")
            qfs = qfs or (old or {}).get("qfs")
            out = Path(args.out) if args.out else Path(tmp) / "run"
            # Datasets named (or in the old baseline) must be present; the protocol's full list may skip some.
            run_dirs = [run_baseline(protocol, models, datasets or [], qfs or [], out,
                                     metrics=common.csv(args.metrics, "--metrics"), data_root=args.data_root,
                                     device=args.device, profile=args.profile)]
        # Filters apply to given runs; a run made here already holds just the selection.
        pick = dict(models=common.csv(args.models, "--models"), datasets=datasets, qfs=qfs) if args.run_dirs else {}
        base = make_baseline(run_dirs, tolerance=tolerance, note=note, **pick)
    write_baseline(base, args.baseline)
    print(f"wrote {args.baseline}: {len(base['entries'])} entries ({base['protocol']}; models "
          f"{', '.join(base['models'])}; datasets {', '.join(base['datasets'])}; QF "
          f"{', '.join(map(str, base['qfs']))}; tolerance {base['tolerance']}). Review it before committing.",
          file=sys.stderr)
    return 0
