"""Model cards: ``models/*.toml`` files naming an architecture, its keyword arguments and its weights, like
timm's pretrained configs (URL + sha256). The schema is the :class:`ModelCard` dataclass, validated on load.

Cards are found in the ``$CIRBENCH_MODELS`` folders first, then among the packaged ``models/``. A weight
file is looked for, in order: an absolute path; ``$CIRBENCH_WEIGHTS/<file>``; beside the card; the cache,
``$CIRBENCH_CACHE/weights/<file>`` (where ``cirbench models fetch`` puts downloads; cards naming the same
file share it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ..config import closest, find_tomls, from_table, load_toml
from ..errors import ConfigError
from ..files import cache_dir

__all__ = ["Weights", "WeightFile", "ModelCard", "list_cards", "load_card"]


@dataclass(kw_only=True)
class Weights:
    """The ``[weights]`` table: one file, several (checkpoint averaging) or one per QF."""

    path: str | list[str] = ""  # file name(s); default: the URL's last path segment
    url: str | list[str] = ""  # one per file, or one folder URL (Google Drive) for all
    sha256: str | list[str] = ""
    bytes: int | list[int] = 0  # sizes, checked after a download when known
    per_qf: dict = field(default_factory=dict)  # {"10": "file_q10.pth", ...}: the non-blind protocol picks
    note: str = ""


@dataclass(frozen=True)
class WeightFile:
    """One weight file of a card: its name, where to download it and what it must hash to."""

    name: str
    url: str = ""
    sha256: str = ""
    size: int = 0


@dataclass(kw_only=True)
class ModelCard:
    name: str
    arch: str
    description: str = ""
    license: str = ""
    citation: str = ""
    channels: Literal[1, 3] = 3
    pad_multiple: int = 1
    pad_mode: Literal["reflect", "replicate", "symmetric", "official32", "none"] = "reflect"
    takes_qf: bool = False
    setting: str = "single"
    kwargs: dict = field(default_factory=dict)
    weights: Weights = field(default_factory=Weights)
    training: dict = field(default_factory=dict)
    path: Path = field(default=Path("."), metadata={"internal": True})  # the card file

    @property
    def weight_names(self) -> tuple[str, ...]:
        names = _as_tuple(self.weights.path)
        if names:
            return names
        # No path: each URL's last segment, except a Drive folder link, which names no file.
        return tuple(Path(urlsplit(u).path).name for u in self.urls if "drive.google.com" not in u)

    @property
    def files(self) -> tuple[WeightFile, ...]:
        """Each weight file with its URL (a folder URL is shared), sha256 and size where the card gives them."""
        urls, shas, sizes = self.urls, self.sha256s, _as_tuple(self.weights.bytes)
        out = []
        for i, name in enumerate(self.weight_names):
            url = urls[i] if len(urls) > i else (urls[0] if len(urls) == 1 else "")
            out.append(WeightFile(name, url, shas[i] if len(shas) > i else "", sizes[i] if len(sizes) > i else 0))
        return tuple(out)

    @property
    def urls(self) -> tuple[str, ...]:
        return _as_tuple(self.weights.url)

    @property
    def sha256s(self) -> tuple[str, ...]:
        return _as_tuple(self.weights.sha256)

    @property
    def per_qf(self) -> dict[int, str]:
        return {int(k): v for k, v in self.weights.per_qf.items()}

    def cache_path(self, weight: str) -> Path:
        """Where a download of ``weight`` goes."""
        return cache_dir() / "weights" / weight

    def resolve(self, weight: str) -> Path:
        """A weight file where it is (see the module doc for the order), else its cache path."""
        p = Path(weight).expanduser()
        if p.is_absolute():
            return p
        cands = [self.path.parent / p, self.cache_path(weight)]
        if os.environ.get("CIRBENCH_WEIGHTS"):
            cands.insert(0, Path(os.environ["CIRBENCH_WEIGHTS"]) / p)
        return next((c for c in cands if c.exists()), cands[-1])

    def weight_paths(self) -> list[Path]:
        return [self.resolve(w) for w in self.weight_names]


def _as_tuple(v) -> tuple:
    return tuple(v) if isinstance(v, list) else ((v,) if v else ())


def list_cards() -> dict[str, Path]:
    """Model cards by name: ``$CIRBENCH_MODELS`` folders first, then the packaged ``models/``."""
    return find_tomls("CIRBENCH_MODELS", "cards")


def load_card(name_or_path: str | os.PathLike) -> ModelCard:
    """Load and validate a model card by name or path."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        cards = list_cards()
        if str(name_or_path) not in cards:
            raise ConfigError(f"unknown model {str(name_or_path)!r}{closest(str(name_or_path), [*cards, 'jpeg'])}; "
                              f"known: jpeg, {', '.join(cards)}")
        p = cards[str(name_or_path)]
    card = from_table(ModelCard, load_toml(p), where=str(p))
    card.path = p
    bad = [k for k in card.weights.per_qf if not str(k).isdigit()]
    if bad:
        raise ConfigError(f"{p} [weights.per_qf]: keys must be quality factors, got {bad[0]!r}")
    return card
