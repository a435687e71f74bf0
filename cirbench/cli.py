"""The ``cirbench`` command line: run, report, datasets, protocols, models, train, regress, merge."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

__all__ = ["main"]


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _qfs(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--qf takes comma-separated integers, got {text!r}") from None


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


# --- run -------------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from .inference import InferenceSettings
    from .models import WeightsMissing, create_model
    from .protocols import load_protocol
    from .runner import parse_shard, run_protocol

    _set_threads(args.threads)
    protocol = load_protocol(args.protocol)
    datasets, qfs = _csv(args.datasets), _qfs(args.qf)
    protocol = protocol.select(datasets, qfs)
    if not protocol.jobs:
        raise ValueError("nothing to run: the --datasets/--qf filters left no job in the protocol")
    settings = InferenceSettings.named(args.setting or protocol.setting, precision=args.precision,
                                       channels_last=args.channels_last,
                                       **({"tile": args.tile} if args.tile else {}),
                                       **({"overlap": args.overlap} if args.overlap is not None else {}),
                                       **({"ensemble": args.ensemble} if args.ensemble else {}))
    names = _csv(args.models) or list(protocol.models)
    weighted = [n for n in names if n != "jpeg"]
    if args.weights and len(weighted) != 1:
        raise ValueError(f"--weights needs exactly one model besides jpeg in --models, got {', '.join(weighted)}")
    models = {}
    for name in names:
        try:
            m = create_model(name, weights=args.weights if name != "jpeg" else None,
                             settings=settings, device=args.device)
        except WeightsMissing as exc:
            if args.models:
                raise
            print(f"skipped model: {exc}", file=sys.stderr)
            continue
        models[m.info.name if name != m.info.name and ":" in name else name] = m
    if not models:
        raise ValueError("no model to run")
    out = Path(args.out) if args.out else Path("runs") / protocol.name
    summary = run_protocol(protocol, models, out, data_root=args.data_root,
                           required_datasets=set(datasets or ()), shard=parse_shard(args.shard),
                           device=args.device)
    print(f"{summary.written} records written to {out} ({summary.skipped_done} already done); "
          f"wall {summary.wall_seconds:.1f} s, model {summary.model_seconds:.1f} s", file=sys.stderr)
    if summary.skipped_datasets:
        print("datasets not present (skipped): " + ", ".join(summary.skipped_datasets)
              + " — see `cirbench datasets list` for how to get them", file=sys.stderr)
    from .report import render

    print(render([out], "table"))
    return 0


# --- report ----------------------------------------------------------------------------------------
def _crop_provider(data_root):
    """Pixels for the visual-comparison plots: records hold none, so the image is degraded and the
    model run again (once per crop; models are built once)."""
    from .datasets import DatasetMissing, get_dataset
    from .models import WeightsMissing, create_model
    from .protocols import Degradation
    from .runner import degrade

    models = {}

    def provide(dataset, image, degradation, qf, model):
        try:
            ds = get_dataset(dataset, data_root)
            comp, gt = degrade(ds.load(ds.root / image), Degradation.from_name(degradation, qf))
            if model is None:
                return gt
            if model == "jpeg":
                return comp.pixels
            if model not in models:
                models[model] = create_model(model)
            return models[model].restore(comp.pixels).image
        except (DatasetMissing, WeightsMissing, KeyError, OSError):
            return None  # that panel is left out

    return provide


def cmd_report(args) -> int:
    from .report import render

    kwargs = dict(space=args.space, datasets=_csv(args.datasets), qfs=_qfs(args.qf), models=_csv(args.models),
                  published=args.published, ci=args.ci, reference=args.reference)
    if args.metrics:
        kwargs["metrics"] = tuple(_csv(args.metrics))
    plots = []
    if args.plots:
        from .plots import make_plots

        plots = make_plots(args.runs, args.plots, reference=args.reference, published=args.published,
                           data_root=args.data_root, crop_provider=_crop_provider(args.data_root))
        print(f"{len(plots)} plot files in {args.plots}", file=sys.stderr)
    if args.format == "html" and args.plots:
        kwargs["plots_dir"] = args.plots
    text = render(args.runs, args.format, **kwargs)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


# --- datasets ------------------------------------------------------------------------------------
def cmd_datasets(args) -> int:
    from tabulate import tabulate

    from .datasets import REGISTRY, DatasetMissing, closest, data_root, get_dataset, verify

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
    names = _csv(args.names) or list(REGISTRY)
    bad = 0
    for name in names:
        if name not in REGISTRY:
            raise KeyError(f"unknown dataset {name!r}{closest(name, REGISTRY)}; known: {', '.join(REGISTRY)}")
        rep = verify(name, args.data_root)
        status = "ok" if rep.ok else "FAILED"
        if rep.missing and rep.checked == 0:
            status = "absent"
        print(f"{name}: {status} — {rep.checked} checked in {rep.folder}"
              + (f"; {rep.note}" if rep.note else ""))
        for label, items in (("missing", rep.missing), ("extra", rep.extra), ("mismatched", rep.mismatched)):
            if items and not (label == "missing" and rep.checked == 0):
                print(f"  {label} ({len(items)}): " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
        bad += status == "FAILED"
    return 1 if bad else 0


# --- protocols -----------------------------------------------------------------------------------
def cmd_protocols(args) -> int:
    from .protocols import list_protocols, load_protocol

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
            for d in p.datasets:
                degs = sorted({(g.name, g.qf) for dd, g in p.jobs if dd == d})
                print(f"  {d}: " + ", ".join(f"{n}@{q}" for n, q in degs))
    return 0


# --- models --------------------------------------------------------------------------------------
def cmd_models(args) -> int:
    from .models import list_cards, load_card

    if args.action == "list":
        print(f"{'jpeg':28s} the JPEG input itself (zero baseline)")
        for name in list_cards():
            c = load_card(name)
            present = all(p.exists() for p in c.weight_paths()) and bool(c.weights)
            print(f"{name:28s} {c.arch:10s} {'weights ok ' if present else 'no weights '} {c.description[:60]}")
        return 0
    from .zoo_info import model_info

    for name in args.names:
        print(model_info(name, size=args.size, weights=args.weights))
    return 0


# --- merge ----------------------------------------------------------------------------------------
def cmd_merge(args) -> int:
    from .merge import merge_runs

    n = merge_runs(args.runs, args.out)
    print(f"merged {n} records into {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="cirbench", description=__doc__)
    p.add_argument("--version", action="version", version=f"cirbench {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="evaluate models on a protocol")
    r.add_argument("--protocol", default="blind", help="protocol name or TOML path (default: blind)")
    r.add_argument("--models", help="comma-separated model names (default: the protocol's)")
    r.add_argument("--weights", help="weights file for a single --models entry")
    r.add_argument("--datasets", help="comma-separated datasets (default: the protocol's; folder:PATH allowed)")
    r.add_argument("--qf", help="comma-separated quality factors to keep")
    r.add_argument("--data-root", help="data root (default: $CIRBENCH_DATA, else the user cache)")
    r.add_argument("--out", help="run directory (default: runs/PROTOCOL); rerun to resume")
    r.add_argument("--shard", help="K/N: evaluate the K-th of N image shards (merge with `cirbench merge`)")
    r.add_argument("--device", default="cpu", help="cpu or cuda")
    r.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    r.add_argument("--setting", help="inference setting: single (default) or ntire24")
    r.add_argument("--tile", type=int, help="tile size in pixels (default: whole image)")
    r.add_argument("--overlap", type=int, help="tile overlap in pixels (default 32)")
    r.add_argument("--ensemble", choices=["none", "transpose"], help="self-ensemble")
    r.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    r.add_argument("--channels-last", action="store_true")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="render tables and plots from run directories")
    rp.add_argument("runs", nargs="+")
    rp.add_argument("--format", default="table", choices=["table", "md", "csv", "json", "latex", "html"])
    rp.add_argument("-o", "--output", help="write to this file instead of stdout")
    rp.add_argument("--space", default="y", choices=["y", "rgb"])
    rp.add_argument("--metrics", help="comma-separated subset of psnr,ssim,psnrb")
    rp.add_argument("--datasets")
    rp.add_argument("--qf")
    rp.add_argument("--models")
    rp.add_argument("--published", action="store_true", help="add published rows beside ours")
    rp.add_argument("--ci", action="store_true", help="paired bootstrap 95%% CI and sign test vs --reference")
    rp.add_argument("--reference", default="jpeg")
    rp.add_argument("--plots", help="write plots (PNG and PDF) to this folder")
    rp.add_argument("--data-root")
    rp.set_defaults(func=cmd_report)

    d = sub.add_parser("datasets", help="list or verify datasets")
    d.add_argument("action", choices=["list", "verify"])
    d.add_argument("names", nargs="?", help="comma-separated (verify; default all)")
    d.add_argument("--data-root")
    d.set_defaults(func=cmd_datasets)

    pr = sub.add_parser("protocols", help="list, show or validate protocols")
    pr.add_argument("action", choices=["list", "show", "validate"])
    pr.add_argument("names", nargs="*")
    pr.set_defaults(func=cmd_protocols)

    m = sub.add_parser("models", help="list model cards or show one's details")
    m.add_argument("action", choices=["list", "info"])
    m.add_argument("names", nargs="*")
    m.add_argument("--size", type=int, default=256, help="square input side for GFLOPs/memory (default 256)")
    m.add_argument("--weights")
    m.set_defaults(func=cmd_models)

    mg = sub.add_parser("merge", help="merge the records of shard runs into one run directory")
    mg.add_argument("runs", nargs="+")
    mg.add_argument("--out", required=True)
    mg.set_defaults(func=cmd_merge)

    try:
        from .training import add_train_parser

        add_train_parser(sub)
    except ImportError:
        pass
    try:
        from .regress import add_regress_parser

        add_regress_parser(sub)
    except ImportError:
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors become one line on stderr and exit code 2 (tracebacks with --debug)."""
    from .checkpoints import CheckpointError
    from .config import ConfigError
    from .datasets import DatasetMissing
    from .images import ImageError
    from .models import WeightsMissing
    from .runner import RunError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        warnings.simplefilter("default")
        warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("cirbench: interrupted; records written so far are kept (rerun to resume)", file=sys.stderr)
        return 130
    except (ConfigError, DatasetMissing, ImageError, RunError, CheckpointError, WeightsMissing, KeyError,
            ValueError, OSError) as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"cirbench: error: {_one_line(msg)}", file=sys.stderr)
        return 2


def _one_line(msg: str) -> str:
    """Fold a multi-line message (e.g. a checkpoint's key lists) into one line: after a line ending
    in ':' with a space, between items with '; '."""
    out = ""
    for line in (part.strip() for part in str(msg).splitlines()):
        if line:
            out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


if __name__ == "__main__":
    sys.exit(main())
