"""Models: the interface every restorer meets, model cards, and ``create_model``.

A *restorer* turns one compressed uint8 image into a restored uint8 image. Anything with::

    info: ModelInfo
    def restore(self, img: np.ndarray, qf: int | None) -> Restored

is one. ``create_model(name)`` builds the ``jpeg`` baseline (the compressed image itself), a model
card from ``models/*.toml`` (arch + kwargs + weights, like timm's pretrained configs), or a user
model given as ``module:attr`` (an ``nn.Module`` instance, class or factory, or a plain callable on
NCHW float batches in [0, 1]); ``module`` is imported from ``sys.path`` and, failing that, from the
current directory, so ``cirbench run --models examples.my_model:TinyNet`` works from the repository.
A network may declare ``in_channels`` (3 or 1), ``pad_multiple``, ``pad_mode`` and ``takes_qf``
(then it is called as ``net(x, qf_input=1 - QF/100)`` in non-blind protocols); see
``examples/my_model.py``.

Installed packages plug in through the ``cirbench.models`` entry-point group, e.g. in their
``pyproject.toml``::

    [project.entry-points."cirbench.models"]
    mynet = "mypkg.nets:MyNet"

``mynet`` then works both as a card's ``arch`` (called with the card's kwargs) and, when no card
has that name, directly as ``cirbench run --models mynet`` (like ``mypkg.nets:MyNet``).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import ConfigError, check_table, find_tomls, load_toml
from .datasets import closest

__all__ = ["ModelInfo", "Restored", "Restorer", "ModelCard", "JpegBaseline", "PerQFRestorer", "create_model",
           "list_cards",
           "load_card", "WeightsMissing"]


@dataclass
class ModelInfo:
    """What the harness needs to know about a model."""

    name: str
    channels: int = 3  # what the network takes: 3 (RGB; gray data is replicated) or 1
    pad_multiple: int = 1  # input H and W must be multiples of this
    pad_mode: str = "reflect"  # "reflect", "replicate", "symmetric", "official32" (PromptCIR's +32 rule)
    takes_qf: bool = False  # accepts the quality factor (non-blind protocols pass it)
    params: int | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)  # provenance: card file, weights sha256, settings...


@dataclass
class Restored:
    image: np.ndarray  # uint8, same shape as the input
    seconds: float = 0.0  # model time
    extras: dict = field(default_factory=dict)  # e.g. {"qf_pred": 31.2}
    nonfinite: bool = False  # the raw output held NaN/Inf


class Restorer(Protocol):
    info: ModelInfo

    def restore(self, img: np.ndarray, qf: int | None = None) -> Restored: ...


class WeightsMissing(FileNotFoundError):
    """A model card's weights are not on disk; the message says where to get them."""


class JpegBaseline:
    """The zero baseline: the compressed image, unchanged."""

    info = ModelInfo(name="jpeg", channels=0, description="the JPEG-compressed input itself", params=0)

    def restore(self, img: np.ndarray, qf: int | None = None) -> Restored:
        return Restored(img)


# --- model cards -----------------------------------------------------------------------------------

_CARD = {"name": str, "arch": str, "description": str, "license": str, "citation": str, "channels": int,
         "pad_multiple": int, "pad_mode": str, "takes_qf": bool, "kwargs": dict, "weights": dict,
         "setting": str, "training": dict}
_WEIGHTS = {"path": (str, list), "url": (str, list), "sha256": (str, list), "per_qf": dict, "note": str}
_PAD_MODES = ("reflect", "replicate", "symmetric", "official32", "none")


@dataclass(frozen=True)
class ModelCard:
    name: str
    arch: str
    kwargs: dict
    path: Path
    description: str = ""
    license: str = ""
    citation: str = ""
    channels: int = 3
    pad_multiple: int = 1
    pad_mode: str = "reflect"
    takes_qf: bool = False
    setting: str = "single"
    weights: tuple[str, ...] = ()  # local paths (relative to the card), one or several (ensembles)
    urls: tuple[str, ...] = ()
    sha256: tuple[str | None, ...] = ()
    per_qf: dict = field(default_factory=dict)  # {qf: path} for a model per QF
    weights_note: str = ""

    def resolve(self, weight: str) -> Path:
        """A weight file: absolute, else relative to ``$CIRBENCH_WEIGHTS`` (if it is there) or to the card."""
        p = Path(weight).expanduser()
        if p.is_absolute():
            return p
        cands = [self.path.parent / p]
        if os.environ.get("CIRBENCH_WEIGHTS"):
            cands.insert(0, Path(os.environ["CIRBENCH_WEIGHTS"]) / p)
        return next((c for c in cands if c.exists()), cands[-1])

    def weight_paths(self) -> list[Path]:
        return [self.resolve(w) for w in self.weights]


def list_cards() -> dict[str, Path]:
    """Model cards by name: ``$CIRBENCH_MODELS`` folders first, then the packaged ``models/``."""
    return find_tomls("CIRBENCH_MODELS", "cards")


def _as_tuple(v) -> tuple:
    return tuple(v) if isinstance(v, list) else ((v,) if v else ())


def load_card(name_or_path: str | os.PathLike) -> ModelCard:
    """Load and validate a model card by name or path."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        cards = list_cards()
        if str(name_or_path) not in cards:
            raise KeyError(f"unknown model {str(name_or_path)!r}{closest(str(name_or_path), [*cards, 'jpeg'])}; "
                           f"known: jpeg, {', '.join(cards)}")
        p = cards[str(name_or_path)]
    data = load_toml(p)
    check_table(data, _CARD, where=str(p), required=("name", "arch"))
    w = data.get("weights", {})
    check_table(w, _WEIGHTS, where=f"{p} [weights]")
    if data.get("pad_mode", "reflect") not in _PAD_MODES:
        raise ConfigError(f"{p}: pad_mode must be one of {_PAD_MODES}, got {data['pad_mode']!r}")
    per_qf = {}
    for k, v in w.get("per_qf", {}).items():
        if not k.isdigit():
            raise ConfigError(f"{p} [weights.per_qf]: keys must be quality factors, got {k!r}")
        per_qf[int(k)] = v
    return ModelCard(
        name=data["name"], arch=data["arch"], kwargs=data.get("kwargs", {}), path=p,
        description=data.get("description", ""), license=data.get("license", ""),
        citation=data.get("citation", ""), channels=data.get("channels", 3),
        pad_multiple=data.get("pad_multiple", 1), pad_mode=data.get("pad_mode", "reflect"),
        takes_qf=data.get("takes_qf", False), setting=data.get("setting", "single"),
        weights=_as_tuple(w.get("path")), urls=_as_tuple(w.get("url")), sha256=_as_tuple(w.get("sha256")),
        per_qf=per_qf, weights_note=w.get("note", ""),
    )


def build_network(card: ModelCard):
    """The card's architecture with its kwargs, randomly initialised."""
    from .archs import ARCHS, build_arch

    for ep in entry_points(group="cirbench.models"):
        ARCHS.setdefault(ep.name, ep.load())
    return build_arch(card.arch, **card.kwargs)


def _missing_message(card: ModelCard, paths: list[Path]) -> str:
    where = "; ".join(card.urls) if card.urls else "no public URL known"
    return (f"model {card.name!r}: weights not found ({', '.join(str(p) for p in paths)}). "
            f"Get them from: {where}{' — ' + card.weights_note if card.weights_note else ''}. "
            f"Then put them next to the card, set CIRBENCH_WEIGHTS to their folder, or pass --weights PATH.")


def create_model(name: str, *, weights: str | os.PathLike | list | None = None, settings=None,
                 device: str = "cpu") -> Restorer:
    """Build a restorer by name: ``jpeg``, a model card name or path, or ``module:attr``.

    ``weights`` overrides the card's weight file(s); ``settings`` are inference settings
    (:class:`cirbench.inference.InferenceSettings`).
    """
    from .inference import InferenceSettings

    settings = settings or InferenceSettings()
    if name == "jpeg":
        return JpegBaseline()
    if ":" in name and not name.endswith(".toml") and not Path(name).exists():
        return _user_model(name, weights, settings, device)
    if not name.endswith(".toml") and name not in list_cards():
        ep = next((e for e in entry_points(group="cirbench.models") if e.name == name), None)
        if ep is not None:
            return _user_model(ep.value, weights, settings, device)
    card = load_card(name)
    if card.per_qf and weights is None:
        return PerQFRestorer(card, {q: card.resolve(w) for q, w in card.per_qf.items()}, settings, device)
    if weights is not None:
        paths = [Path(w) for w in (weights if isinstance(weights, list) else [weights])]
        shas: tuple = ()
    else:
        paths, shas = card.weight_paths(), card.sha256
    return _card_restorer(card, paths, shas, settings, device)


def _card_restorer(card: ModelCard, paths: list[Path], shas: tuple, settings, device: str) -> Restorer:
    """The card's network(s) loaded strictly from ``paths`` (several = checkpoint averaging)."""
    from .checkpoints import file_sha256, load_into
    from .inference import InferenceSettings, TorchRestorer

    if not paths:
        raise WeightsMissing(_missing_message(card, []))
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise WeightsMissing(_missing_message(card, missing))
    nets = []
    for i, p in enumerate(paths):
        net = build_network(card)
        load_into(net, p, sha256=shas[i] if i < len(shas) else None)
        nets.append(net.eval())
    params = sum(t.numel() for t in nets[0].parameters())
    info = ModelInfo(name=card.name, channels=card.channels, pad_multiple=card.pad_multiple,
                     pad_mode=card.pad_mode, takes_qf=card.takes_qf, params=params,
                     description=card.description,
                     extra={"card": card.path.name, "arch": card.arch, "weights": [p.name for p in paths],
                            "weights_sha256": [file_sha256(p) for p in paths]})
    if card.setting != "single" and settings.name == "single":
        settings = InferenceSettings.named(card.setting)
    return TorchRestorer(nets, info, settings, device=device)


class PerQFRestorer:
    """A model with one checkpoint per quality factor (``[weights.per_qf]`` in its card): the non-blind
    protocol's QF picks the checkpoint, each loaded on first use."""

    def __init__(self, card: ModelCard, paths: dict[int, Path], settings, device: str):
        from .checkpoints import file_sha256

        self.card, self.paths, self.settings, self.device = card, paths, settings, device
        missing = [p for p in paths.values() if not p.exists()]
        if missing:
            raise WeightsMissing(_missing_message(card, missing))
        self.info = ModelInfo(name=card.name, channels=card.channels, pad_multiple=card.pad_multiple,
                              pad_mode=card.pad_mode, takes_qf=True, description=card.description,
                              extra={"card": card.path.name, "arch": card.arch,
                                     "per_qf": {q: p.name for q, p in sorted(paths.items())},
                                     "weights_sha256": [file_sha256(p) for _, p in sorted(paths.items())]})
        self._models: dict[int, Restorer] = {}

    def restore(self, img: np.ndarray, qf: int | None = None) -> Restored:
        if qf is None:
            raise ValueError(f"model {self.card.name!r} has one checkpoint per QF ({sorted(self.paths)}); "
                             "run it with a non-blind protocol (--protocol nonblind)")
        if qf not in self.paths:
            raise ValueError(f"model {self.card.name!r} has no checkpoint for QF {qf}; it has {sorted(self.paths)}")
        if qf not in self._models:
            self._models[qf] = _card_restorer(self.card, [self.paths[qf]], (), self.settings, self.device)
            self.info.params = self._models[qf].info.params
        return self._models[qf].restore(img, None)


def _import_user_module(mod_name: str):
    """Import ``mod_name``; if it is not found, retry with the current directory on ``sys.path``
    (the ``cirbench`` console script does not put it there, unlike ``python -m``)."""
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name is None or not mod_name.startswith(exc.name) or cwd in sys.path:
            raise  # a missing dependency inside the user's module, or CWD already searched
        sys.path.append(cwd)  # appended: installed packages keep precedence
        return importlib.import_module(mod_name)


def _user_model(spec: str, weights, settings, device: str) -> Restorer:
    """``package.module:attr`` — an nn.Module (instance, class or factory) or a batch callable."""
    import torch

    from .checkpoints import file_sha256, load_into
    from .inference import TorchRestorer

    mod_name, _, attr = spec.partition(":")
    try:
        obj: Any = getattr(_import_user_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise KeyError(f"user model {spec!r}: cannot import ({exc})") from None
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, torch.nn.Module)
                                 and getattr(obj, "__cirbench_factory__", False)):
        obj = obj()
    if hasattr(obj, "restore") and hasattr(obj, "info"):
        return obj  # already a restorer
    extra: dict = {"user": spec}
    if weights is not None and isinstance(obj, torch.nn.Module):
        load_into(obj, weights)
        extra.update(weights=[Path(weights).name], weights_sha256=[file_sha256(weights)])
    info = ModelInfo(
        name=getattr(obj, "cirbench_name", attr), channels=getattr(obj, "in_channels", 3),
        pad_multiple=getattr(obj, "pad_multiple", 1), pad_mode=getattr(obj, "pad_mode", "reflect"),
        takes_qf=getattr(obj, "takes_qf", False),
        params=sum(p.numel() for p in obj.parameters()) if isinstance(obj, torch.nn.Module) else None,
        extra=extra,
    )
    if isinstance(obj, torch.nn.Module):
        obj.eval()
    return TorchRestorer([obj], info, settings, device=device)
