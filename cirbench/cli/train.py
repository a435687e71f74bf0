"""``cirbench train``: train with a TOML config; under ``torchrun --nproc_per_node=N -m cirbench train`` as DDP."""

from __future__ import annotations

import os
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a restoration network (PromptCIR two-stage recipe)",
                       description="Train with a TOML config; run under torchrun --nproc_per_node=N for DDP.")
    p.add_argument("--config", required=True, help="training TOML (see configs/)")
    p.add_argument("--out", default=None, help="output folder (default: runs/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint_last.pt exactly")
    p.add_argument("--steps-override", type=int, default=None, metavar="N",
                   help="squeeze both stages and the warm-up into N steps in total (smoke runs)")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after global step STEP with a checkpoint; --resume continues")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes of wall time with a checkpoint and final_ema.safetensors "
                        "(a time-boxed run, e.g. on a lent GPU); --resume continues")
    p.add_argument("--allow-code", action="store_true",
                   help="let the config's model.arch be module:attr (imports your module)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import train

    out = args.out or str(Path("runs") / "train" / Path(args.config).stem)
    result = train(args.config, out, resume=args.resume, steps_override=args.steps_override, stop_at=args.stop_at,
                   max_minutes=args.max_minutes, allow_code=args.allow_code)
    if int(os.environ.get("RANK", "0")) == 0:
        state = "finished" if result["finished"] else "stopped"
        print(f"{state} at step {result['step']} ({result['seconds']:.0f} s of training); outputs in {out}")
    return 0
