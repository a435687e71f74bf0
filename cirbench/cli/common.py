"""Argument parsing shared by the subcommands."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["csv", "qfs", "set_threads", "add_filters", "add_metrics"]


def csv(text: str | None, option: str = "") -> list[str] | None:
    """Comma-separated names; None when the option was not given. Given but naming nothing (``--datasets ,``)
    is an error: it would otherwise mean "no filter", the opposite of what was typed."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{option or 'the option'} {text!r} names nothing; give comma-separated names, or leave "
                          "the option out")
    return items


def qfs(text: str | None) -> list[int] | None:
    items = csv(text, "--qf")
    if items is None:
        return None
    try:
        return [int(t) for t in items]
    except ValueError:
        raise ConfigError(f"--qf takes comma-separated integers, got {text!r}") from None


def set_threads(n: int | None) -> None:
    if n is None or n == 0:  # 0: torch's choice, as a training config's threads = 0
        return
    if n < 0:
        raise ConfigError(f"--threads {n}: give a positive number of threads (or 0 for torch's choice)")
    import torch

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
