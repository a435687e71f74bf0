"""``cirbench run``: evaluate models on a protocol into a run folder (rerun the same ``--out`` to resume); the
work is :func:`cirbench.evaluate`'s."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import common


def add_parser(sub) -> None:
    r = sub.add_parser("run", help="evaluate models on a protocol")
    r.add_argument("--protocol", help="protocol name or TOML path (default: blind; with --datasets or --qf and no "
                   "--protocol: an ad-hoc blind run on exactly those values)")
    r.add_argument("--models", help="comma-separated model names (default: the protocol's)")
    r.add_argument("--weights", help="weights file for a single --models entry")
    common.add_filters(r, "(default: the protocol's; with --protocol, a subset of its)", folders=True)
    common.add_metrics(r)
    r.add_argument("--data-root", help="data root (default: $CIRBENCH_DATA, else the user cache)")
    r.add_argument("--out", help="run folder (default: runs/PROTOCOL); rerun to resume")
    r.add_argument("--shard", help="K/N: evaluate the K-th of N image shards (merge with `cirbench merge`)")
    r.add_argument("--device", default="auto",
                   help="auto (cuda if available; cuda:LOCAL_RANK under torchrun), cpu, cuda or cuda:N")
    r.add_argument("--threads", type=int, help="torch threads (default or 0: torch's choice)")
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
    r.add_argument("--trust-records", action="store_true",
                   help="resume an --out whose records have no run.json (what made them is unknown; default: refuse)")
    r.add_argument("--save-images", action="store_true",
                   help="also write every output and ground truth as PNG under OUT/images (for crops and outputs:)")
    r.set_defaults(func=run)


def run(args) -> int:
    from ..api import evaluate
    from ..report import render

    common.set_threads(args.threads)
    if args.offline:
        os.environ["CIRBENCH_OFFLINE"] = "1"
    datasets, qfs = common.csv(args.datasets, "--datasets"), common.qfs(args.qf)
    protocol_name = args.protocol or ("blind" if not (datasets or qfs) else None)
    models, metrics = common.csv(args.models, "--models"), common.csv(args.metrics, "--metrics")
    res = evaluate(models, protocol_name, datasets, qfs, metrics, args.data_root,
                   args.out or _default_out(protocol_name), args.device, weights=args.weights, setting=args.setting,
                   tile=args.tile, overlap=args.overlap, ensemble=args.ensemble, precision=args.precision,
                   channels_last=args.channels_last, shard=args.shard, save_images=args.save_images,
                   skip_invalid=args.skip_invalid, profile=not args.no_profile, progress=None, samples_fallback=True,
                   trust_records=args.trust_records)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    extra = [f"{res.already_done} model results already recorded"] if res.already_done else []
    extra += [f"{res.images_only} recorded ones run again for --save-images"] if res.images_only else []
    extra += [f"{res.skipped_invalid} skipped as invalid"] if res.skipped_invalid else []
    print(f"{res.written} records written to {res.out}" + (f" ({'; '.join(extra)})" if extra else "")
          + f"; wall {res.wall_seconds:.1f} s, model {res.model_seconds:.1f} s", file=sys.stderr)
    if res.skipped_datasets:
        print("datasets not present (skipped): " + ", ".join(res.skipped_datasets)
              + " — see `cirbench datasets list` for how to get them", file=sys.stderr)
    print(render([res.out], "table"))
    return 0


def _default_out(protocol_name: str | None) -> Path:
    """runs/NAME, the protocol's own name (an ad-hoc run's: adhoc)."""
    from ..eval.protocols import load_protocol

    return Path("runs") / (load_protocol(protocol_name).name if protocol_name else "adhoc")
