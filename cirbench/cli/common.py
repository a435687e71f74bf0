"""Argument parsing shared by the subcommands."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["csv", "qfs", "set_threads", "add_filters", "add_metrics"]


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


def add_metrics(p) -> None:
    """``--metrics``, as ``run`` spells it (the names are the metrics registry's: `cirbench metrics list`)."""
    p.add_argument("--metrics", help="comma-separated metrics to compute (default: the protocol's; `cirbench metrics "
                   "list` names them): registered names, installed plug-ins, or module:attr (a function "
                   "fn(restored, target) -> float; see README)")
