"""Argument parsing and model building shared by the subcommands."""

from __future__ import annotations

import sys

from ..errors import ConfigError

__all__ = ["csv", "qfs", "set_threads", "add_filters", "build_models"]


def csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def qfs(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--qf takes comma-separated integers, got {text!r}") from None


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def add_filters(p, what: str, *, folders: bool = False) -> None:
    """``--datasets`` and ``--qf``, as every subcommand that selects work spells them; ``folders``: the
    subcommand also evaluates ``folder:PATH`` (a dataset, so only --datasets says so)."""
    folder = "; folder:PATH evaluates any folder of images" if folders else ""
    p.add_argument("--datasets", help=f"comma-separated datasets {what}{folder}")
    p.add_argument("--qf", help=f"comma-separated quality factors {what}")


def build_models(names: list[str], *, weights=None, settings=None, device: str = "cpu", skip_missing: bool = False,
                 profile: bool = True) -> dict:
    """Restorers by the name they are run under (a user model's own name for ``module:attr``), each with its
    profile (parameters, GFLOPs, peak memory) in ``info.extra`` for the report's efficiency table."""
    from ..errors import WeightsMissing
    from ..zoo import create_model
    from ..zoo.profile import profile as measure_profile

    out = {}
    for name in names:
        try:
            m = create_model(name, weights=weights if name != "jpeg" else None, settings=settings, device=device)
        except WeightsMissing as exc:
            if not skip_missing:
                raise
            print(f"skipped model: {exc}", file=sys.stderr)
            continue
        if profile and hasattr(m, "nets"):
            w = str(weights) if weights and name != "jpeg" else None
            m.info.extra["profile"] = measure_profile(name, w, weights_sha256=m.info.extra.get("weights_sha256"))
        out[m.info.name if name != m.info.name and ":" in name else name] = m
    return out
