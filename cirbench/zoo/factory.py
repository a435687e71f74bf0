"""``create_model``: a restorer from a name (like timm's ``create_model``).

A name is ``jpeg`` (the compressed image itself), ``outputs:TEMPLATE`` (images another program restored,
see :mod:`cirbench.zoo.outputs`), a model card (name or ``.toml`` path), or an architecture
the registry resolves (an entry point, or ``module:attr``: an ``nn.Module`` instance, class or factory, or a
plain callable on NCHW float batches in [0, 1], or a ready-made restorer). A user network may declare
``in_channels`` (3 or 1), ``pad_multiple``, ``pad_mode`` and ``takes_qf`` (then it is called as
``net(x, qf_input=1 - QF/100)`` in non-blind protocols); see ``examples/my_model.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import archs
from ..config import closest
from ..errors import ConfigError, WeightsMissing
from ..files import sha256_file
from .cards import ModelCard, list_cards, load_card
from .checkpoints import load_into
from .fetch import fetch_card, missing_files
from .inference import InferenceSettings, TorchRestorer
from .outputs import OUTPUTS_PREFIX, OutputsRestorer
from .restorer import JpegBaseline, ModelInfo, Restored, Restorer

__all__ = ["create_model", "build_network", "PerQFRestorer", "missing_message"]


def build_network(card: ModelCard):
    """The card's architecture with its kwargs, randomly initialised (a card is data: registered names only)."""
    return archs.build_arch(card.arch, where=f"{card.path} arch", **card.kwargs)


def missing_message(card: ModelCard, paths: list[Path]) -> str:
    where = "; ".join(card.urls) if card.urls else "no public URL known"
    note = f" — {card.weights.note}" if card.weights.note else ""
    other = [str(p) for w in card.weight_names for p in card.mismatched(w)]
    if other:  # a file of that name is there, but it is not the card's: never used in its place
        note += f" ({', '.join(other)} {'has' if len(other) == 1 else 'have'} another sha256 than the card's)"
    return (f"model {card.name!r}: weights not found ({', '.join(str(p) for p in paths) or 'none named'}). "
            f"Get them with `cirbench models fetch {card.name}` or from: {where}{note}. Or put them next to the "
            "card, set CIRBENCH_WEIGHTS to their folder, or pass --weights PATH.")


def create_model(name: str, *, weights: str | os.PathLike | list | None = None,
                 settings: InferenceSettings | None = None, device: str = "cpu", fetch: bool = True,
                 allow_code: bool = True) -> Restorer:
    """Build a restorer by name (see the module doc). ``weights`` overrides the card's weight file(s); a card's
    missing weights are downloaded into the cache first unless ``fetch`` is off or ``$CIRBENCH_OFFLINE`` is set.
    ``allow_code=False`` (a name read from a data file, e.g. a protocol's ``models``) refuses ``module:attr``."""
    settings = settings or InferenceSettings()
    if name == "jpeg":
        return JpegBaseline()
    if name.startswith(OUTPUTS_PREFIX):
        return OutputsRestorer(name[len(OUTPUTS_PREFIX):])
    cards = list_cards()
    if name.endswith(".toml") or name in cards:
        card = load_card(name)
        if weights is None and not card.per_qf and fetch and missing_files(card):
            fetch_card(card)
        if card.per_qf and weights is None:
            return PerQFRestorer(card, {q: card.resolve(w) for q, w in card.per_qf.items()}, settings, device)
        if weights is not None:
            paths = [Path(w) for w in (weights if isinstance(weights, list) else [weights])]
            return card_restorer(card, paths, (), settings, device)
        return card_restorer(card, card.weight_paths(), card.sha256s, settings, device)
    if archs.import_spec(name, allow_code=allow_code):
        return _user_model(name, weights, settings, device)
    if not allow_code and ":" in name:
        archs.resolve(name, allow_code=False)  # raises: a data file named code
    raise ConfigError(f"unknown model {name!r}{closest(name, ['jpeg', *cards])}; known: jpeg, {', '.join(cards)}, "
                      "an installed entry point, or module:attr")


def card_restorer(card: ModelCard, paths: list[Path], shas: tuple, settings: InferenceSettings,
                  device: str) -> TorchRestorer:
    """The card's network(s) loaded strictly from ``paths`` (several = checkpoint averaging)."""
    missing = [p for p in paths if not p.exists()]
    if not paths or missing:
        raise WeightsMissing(missing_message(card, missing))
    nets = []
    for i, p in enumerate(paths):
        net = build_network(card)
        load_into(net, p, sha256=shas[i] if i < len(shas) else None)
        nets.append(net.eval())
    info = ModelInfo(name=card.name, channels=card.channels, pad_multiple=card.pad_multiple,
                     pad_mode=card.pad_mode, takes_qf=card.takes_qf,
                     params=sum(t.numel() for t in nets[0].parameters()), description=card.description,
                     extra={"card": card.path.name, "arch": card.arch, "weights": [p.name for p in paths],
                            "weights_sha256": [sha256_file(p) for p in paths]})
    if card.setting != "single" and settings.name == "single":
        settings = InferenceSettings.named(card.setting, precision=settings.precision,
                                           channels_last=settings.channels_last)
    return TorchRestorer(nets, info, settings, device=device)


class PerQFRestorer:
    """A model with one checkpoint per quality factor (``[weights.per_qf]`` in its card): the non-blind
    protocol's QF picks the checkpoint, each loaded on first use."""

    def __init__(self, card: ModelCard, paths: dict[int, Path], settings: InferenceSettings, device: str):
        self.card, self.paths, self.settings, self.device = card, paths, settings, device
        missing = [p for p in paths.values() if not p.exists()]
        if missing:
            raise WeightsMissing(missing_message(card, missing))
        self.info = ModelInfo(name=card.name, channels=card.channels, pad_multiple=card.pad_multiple,
                              pad_mode=card.pad_mode, takes_qf=True, description=card.description,
                              extra={"card": card.path.name, "arch": card.arch,
                                     "per_qf": {q: p.name for q, p in sorted(paths.items())},
                                     "weights_sha256": [sha256_file(p) for _, p in sorted(paths.items())]})
        self._models: dict[int, Restorer] = {}

    def restore(self, img: np.ndarray, qf: int | None = None) -> Restored:
        if qf is None:
            raise ConfigError(f"model {self.card.name!r} has one checkpoint per QF ({sorted(self.paths)}); "
                              "run it with a non-blind protocol (--protocol nonblind)")
        if qf not in self.paths:
            raise ConfigError(f"model {self.card.name!r} has no checkpoint for QF {qf}; it has {sorted(self.paths)}")
        if qf not in self._models:
            self._models[qf] = card_restorer(self.card, [self.paths[qf]], (), self.settings, self.device)
            self.info.params = self._models[qf].info.params
        return self._models[qf].restore(img, None)


def _user_model(spec: str, weights, settings: InferenceSettings, device: str) -> Restorer:
    """An architecture the registry resolves: an nn.Module (instance, class or factory), a batch callable,
    or a ready-made restorer."""
    import torch

    obj: Any = archs.resolve(spec)
    spec = archs.import_spec(spec) or spec
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, torch.nn.Module)
                                 and getattr(obj, "__cirbench_factory__", False)):
        obj = obj()
    if hasattr(obj, "restore") and hasattr(obj, "info"):
        return obj  # already a restorer
    extra: dict = {"user": spec}
    if weights is not None and isinstance(obj, torch.nn.Module):
        load_into(obj, weights)
        extra.update(weights=[Path(weights).name], weights_sha256=[sha256_file(weights)])
    info = ModelInfo(
        name=getattr(obj, "cirbench_name", spec.rpartition(":")[2] or spec), channels=getattr(obj, "in_channels", 3),
        pad_multiple=getattr(obj, "pad_multiple", 1), pad_mode=getattr(obj, "pad_mode", "reflect"),
        takes_qf=getattr(obj, "takes_qf", False),
        params=sum(p.numel() for p in obj.parameters()) if isinstance(obj, torch.nn.Module) else None,
        extra=extra,
    )
    if isinstance(obj, torch.nn.Module):
        obj.eval()
    return TorchRestorer([obj], info, settings, device=device)
