"""The metric spec and the one registry of metrics (the generic :class:`cirbench.registry.Registry`).

A :class:`Metric` says everything a report needs to show a number: its label, unit, decimals and direction
(``higher_is_better``), the spaces it applies to, and whether it needs the ground truth. Runs write each
metric's spec into ``run.json``, so reports read a user metric's direction from the records alone.

A user's metric is a plain function ``fn(restored, target) -> float`` on uint8 arrays (HxW for ``y``/``gray``,
HxWx3 for ``rgb``), with optional attributes ``higher_is_better`` (default True), ``unit``, ``decimals``,
``spaces``, ``label`` and ``name``; it is named on the command line as ``module:attr``, registered with
:func:`register`, or installed as an entry point of the ``cirbench.metrics`` group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .spaces import SPACES, Pair

__all__ = ["Metric", "REGISTRY", "register", "get_metric", "resolve_metrics", "metric_names", "PLUGIN_SPACES"]

REGISTRY = Registry("metric", "cirbench.metrics")
PLUGIN_SPACES = ("y", "y-full", "rgb", "gray")  # uint8 images; y-float is float64, so a plug-in opts in to it


@dataclass(frozen=True)
class Metric:
    """A metric's spec and, where it can be computed here, its function.

    ``batched``: ``fn(pair)`` takes a :class:`~cirbench.metrics.spaces.Pair` and returns one value per image
    (a tensor or sequence of shape (B,)); else ``fn(restored, target)`` (``fn(restored)`` with
    ``reference == "none"``) takes one image's arrays and returns a float. ``device`` is where it computes:
    "cpu", or "any" (the evaluation device).

    A metric that holds a network has ``setup`` instead of ``fn``: ``setup(device)`` builds it and returns
    ``(fn, details)``; :meth:`ready` calls it once per run, and ``details`` (library versions, weight digests)
    go into run.json with the spec."""

    name: str
    label: str = ""
    unit: str = ""
    decimals: int = 4
    higher_is_better: bool = True
    reference: str = "full"  # "full" (needs the ground truth) or "none" (scores the restored image alone)
    spaces: tuple[str, ...] = PLUGIN_SPACES
    batched: bool = False
    device: str = "cpu"
    tolerance: float | None = None  # regress: |delta| allowed on a mean (default: half a printed digit)
    convention: str = ""  # how it is computed, in a few words, for run.json and captions
    source: str = "builtin"  # "builtin", an entry point's or the user's module:attr
    details: dict = field(default_factory=dict, compare=False)  # what setup() found: versions, weight digests
    fn: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    setup: Callable[[str], tuple[Callable[..., Any], dict]] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)
        object.__setattr__(self, "spaces", tuple(self.spaces))
        bad = [s for s in self.spaces if s not in SPACES]
        if bad or not self.spaces:
            raise ConfigError(f"metric {self.name!r}: spaces {list(self.spaces)} must be some of {', '.join(SPACES)}")
        if self.reference not in ("full", "none"):
            raise ConfigError(f"metric {self.name!r}: reference must be 'full' or 'none', got {self.reference!r}")

    @property
    def tol(self) -> float:
        """The regression tolerance of a mean: the spec's, else half a unit of the last printed digit."""
        return self.tolerance if self.tolerance is not None else 0.5 * 10.0 ** -self.decimals

    @property
    def heading(self) -> str:
        """The label with its unit, for axes and captions: "PSNR (dB)", "SSIM"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def ready(self, device: str = "cpu") -> Metric:
        """The metric with its function, built on ``device`` where it has a ``setup`` (a network)."""
        if self.fn is not None or self.setup is None:
            return self
        fn, details = self.setup("cpu" if self.device == "cpu" else device)
        return replace(self, fn=fn, details={**self.details, **details})

    def compute(self, pair: Pair) -> list[float]:
        """One value per image of ``pair`` (NaN where the function gave none)."""
        if self.fn is None and self.setup is not None:
            return self.ready().compute(pair)  # outside a run (image_metrics, score): built once, on the CPU
        if self.fn is None:
            raise ConfigError(f"metric {self.name!r} is described by a run's records but not importable here "
                              f"({self.source}); install or name it to compute it")
        if self.batched:
            values = self.fn(pair)
            return [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
        out = []
        for i in range(pair.gt.shape[0]):
            restored, target = pair.arrays(i)
            v = self.fn(restored) if self.reference == "none" else self.fn(restored, target)
            out.append(float(v) if v is not None else math.nan)
        return out

    def info(self) -> dict:
        """The spec as data (run.json's ``metrics``): everything but the function."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("fn", "setup", "name")}
        d["spaces"] = list(self.spaces)
        if not d["details"]:
            del d["details"]  # run.json of a metric without a setup stays as it was
        return d

    @classmethod
    def from_info(cls, name: str, info: dict) -> Metric:
        """A spec read back from run.json (no function: reports need only the description)."""
        known = {f.name for f in fields(cls)} - {"fn", "setup", "name"}
        return cls(name=name, **{k: (tuple(v) if k == "spaces" else v) for k, v in info.items() if k in known})


def _as_metric(obj: Any, name: str, source: str) -> Metric:
    """A Metric from what a registry name stands for: a Metric, or a plain function with optional attributes."""
    if isinstance(obj, Metric):
        return obj
    if isinstance(obj, type) or not callable(obj):
        raise ConfigError(f"{source}: a metric must be a function fn(restored, target) -> float, got {obj!r}")
    spec = {k: getattr(obj, k) for k in ("label", "unit", "decimals", "higher_is_better", "reference", "spaces",
                                         "batched", "device", "tolerance", "convention") if hasattr(obj, k)}
    return Metric(name=str(getattr(obj, "name", name)), source=source, fn=obj, **spec)


def register(fn: Callable | None = None, /, **spec):
    """Register a metric: ``@register`` on a function (its name and attributes make the spec), or
    ``@register(name=..., higher_is_better=False, ...)`` with the spec as keywords."""
    def wrap(f: Callable) -> Callable:
        m = Metric(**{"name": f.__name__, **spec, "fn": f}) if spec else _as_metric(f, f.__name__, "registered")
        REGISTRY.register(m.name, m)
        return f

    return wrap(fn) if fn is not None else wrap


def get_metric(name: str, *, allow_code: bool = True, where: str = "") -> Metric:
    """The metric ``name`` stands for (registered, an entry point, or ``module:attr`` with ``allow_code``)."""
    obj = REGISTRY.resolve(name, allow_code=allow_code, where=where)
    if isinstance(obj, Metric):
        return obj
    spec = REGISTRY.import_spec(name, allow_code=allow_code) or name
    m = _as_metric(obj, spec.rpartition(":")[2], spec)
    if m.name in REGISTRY and REGISTRY.resolve(m.name) is not obj:
        raise ConfigError(f"{where + ': ' if where else ''}metric {name!r} is named {m.name!r}, which another "
                          f"metric already has; give the function a `name` attribute")
    return m


def resolve_metrics(names: Iterable[str], *, allow_code: bool = True, where: str = "") -> list[Metric]:
    """Metrics by name, in order; two names for one record field are an error."""
    out: dict[str, Metric] = {}
    for n in names:
        m = get_metric(n, allow_code=allow_code, where=where)
        if m.name in out:
            raise ConfigError(f"{where + ': ' if where else ''}metric {m.name!r} is asked for twice")
        out[m.name] = m
    if not out:
        raise ConfigError(f"{where + ': ' if where else ''}no metric named")
    return list(out.values())


def metric_names() -> list[str]:
    return REGISTRY.names()

