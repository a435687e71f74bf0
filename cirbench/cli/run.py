"""``cirbench run``: evaluate models on a protocol into a run folder (rerun the same ``--out`` to resume)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import ConfigError
from . import common


def add_parser(sub) -> None:
    r = sub.add_parser("run", help="evaluate models on a protocol")
    r.add_argument("--protocol", help="protocol name or TOML path (default: blind; with --datasets or --qf and no "
                   "--protocol: an ad-hoc blind run on exactly those values)")
    r.add_argument("--models", help="comma-separated model names (default: the protocol's)")
    r.add_argument("--weights", help="weights file for a single --models entry")
    common.add_filters(r, "(default: the protocol's; with --protocol, a subset of its)", folders=True)
    r.add_argument("--data-root", help="data root (default: $CIRBENCH_DATA, else the user cache)")
    r.add_argument("--out", help="run folder (default: runs/PROTOCOL); rerun to resume")
    r.add_argument("--shard", help="K/N: evaluate the K-th of N image shards (merge with `cirbench merge`)")
    r.add_argument("--device", default="auto",
                   help="auto (cuda if available; cuda:LOCAL_RANK under torchrun), cpu, cuda or cuda:N")
    r.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    r.add_argument("--setting", help="inference setting: single (default) or ntire24")
    r.add_argument("--tile", type=int, help="tile size in pixels (default: whole image)")
    r.add_argument("--overlap", type=int, help="tile overlap in pixels (default 32)")
    r.add_argument("--ensemble", choices=["none", "transpose"], help="self-ensemble")
    r.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default) or bf16 autocast (CUDA, or a CPU with native bf16); records name the "
                        "setting with it, e.g. single+bf16, and means never mix the two")
    r.add_argument("--channels-last", action="store_true",
                   help="run networks in the channels-last memory format (a speed option, often faster on GPUs)")
    r.add_argument("--offline", action="store_true",
                   help="never download (as CIRBENCH_OFFLINE=1): missing weights are an error saying where to put them")
    r.add_argument("--no-profile", action="store_true",
                   help="do not measure parameters, GFLOPs and peak memory for the report's efficiency table")
    r.add_argument("--skip-invalid", action="store_true",
                   help="run on the usable images, naming the skipped ones (default: stop before computing anything)")
    r.add_argument("--save-images", action="store_true",
                   help="also write every output and ground truth as PNG under OUT/images (for crops and outputs:)")
    r.set_defaults(func=run)


def run(args) -> int:
    from ..eval import distributed
    from ..eval.protocols import Protocol, load_protocol
    from ..eval.runner import parse_shard
    from ..report import render
    from ..zoo.inference import InferenceSettings

    common.set_threads(args.threads)
    if args.offline:
        os.environ["CIRBENCH_OFFLINE"] = "1"
    datasets, qfs = common.csv(args.datasets), common.qfs(args.qf)
    if args.protocol or not (datasets or qfs):
        protocol = load_protocol(args.protocol or "blind").select(datasets, qfs)
    else:
        blind = load_protocol("blind")
        protocol = Protocol.adhoc(datasets or blind.datasets, qfs or sorted({g.qf for _, g in blind.jobs}),
                                  blind.models)
    if not protocol.jobs:
        raise ConfigError("nothing to run: the --datasets/--qf filters left no job in the protocol")
    settings = InferenceSettings.named(args.setting or protocol.setting, precision=args.precision,
                                       channels_last=args.channels_last,
                                       **({"tile": args.tile} if args.tile else {}),
                                       **({"overlap": args.overlap} if args.overlap is not None else {}),
                                       **({"ensemble": args.ensemble} if args.ensemble else {}))
    names = common.csv(args.models) or list(protocol.models)
    weighted = [n for n in names if n != "jpeg"]
    if args.weights and len(weighted) != 1:
        raise ConfigError(f"--weights needs exactly one model besides jpeg in --models, got {', '.join(weighted)}")
    ctx = distributed.setup(args.device, args.shard)
    try:
        models = common.build_models(names, weights=args.weights, settings=settings, device=ctx.device,
                                     skip_missing=not args.models, profile=not args.no_profile)
        if not models:
            raise ConfigError("no model to run")
        if not datasets:  # after the models, so a mistyped model or card is the only line printed
            protocol = _samples_when_nothing_present(protocol, args.data_root, say=ctx.main)
        out = Path(args.out) if args.out else Path("runs") / protocol.name
        kwargs = dict(data_root=args.data_root, required_datasets=set(datasets or ()), save_images=args.save_images,
                      skip_invalid=args.skip_invalid)
        if ctx.world == 1:
            kwargs["shard"] = parse_shard(args.shard)
        summary = distributed.run(protocol, models, out, ctx, **kwargs)
    finally:
        distributed.teardown(ctx)
    if not ctx.main:
        return 0
    print(f"{summary.written} records written to {out} ({summary.skipped_done} already done); "
          f"wall {summary.wall_seconds:.1f} s, model {summary.model_seconds:.1f} s", file=sys.stderr)
    if summary.skipped_datasets:
        print("datasets not present (skipped): " + ", ".join(summary.skipped_datasets)
              + " — see `cirbench datasets list` for how to get them", file=sys.stderr)
    print(render([out], "table"))
    return 0


def _samples_when_nothing_present(protocol, root, say: bool = True):
    """A fresh machine has no standard dataset: say how to get each, and run on the bundled samples."""
    from ..eval.datasets import REGISTRY, SAMPLES, data_root, present

    if any(present(d, root) for d in protocol.datasets):
        return protocol
    commands = list(dict.fromkeys(REGISTRY[d].fetch_command for d in protocol.datasets if d in REGISTRY))
    if say:
        print(f"none of the protocol's datasets ({', '.join(protocol.datasets)}) is under {data_root(root)}; get them "
              f"with: {'; '.join(commands)}. Running on the photographs bundled with scikit-image "
              f"({', '.join(SAMPLES)}) instead.", file=sys.stderr)
    return protocol.select(list(SAMPLES))
