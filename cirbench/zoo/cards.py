"""Model cards: ``models/*.toml`` files naming an architecture, its keyword arguments and its weights, like
timm's pretrained configs (URL + sha256). The schema is the :class:`ModelCard` dataclass, validated on load.

Cards are found in the ``$CIRBENCH_MODELS`` folders first, then among the packaged ``models/``. A card is
data: its ``arch`` names a registered architecture (never ``module:attr``), and its weight file names are
relative paths that stay inside the folder they are looked up in (no ``..``, no absolute path). A weight file
is looked for, in order: ``$CIRBENCH_WEIGHTS/<file>``; beside the card; the cache,
``$CIRBENCH_CACHE/weights/<file>`` (where ``cirbench models fetch`` puts downloads). A file found there is used
only when its sha256 matches the card's (when the card gives one); a cached file of the same name but another
digest (another card's) is left alone, and this card's goes to ``weights/sha256-<digest[:16]>/<file>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ..config import closest, find_tomls, from_table, load_toml
from ..errors import ConfigError
from ..files import cache_dir, inside, verified_sha256
from ..registry import is_import_path

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

    def sha256_of(self, weight: str) -> str:
        """The digest the card gives for ``weight`` ("" when none)."""
        names, shas = self.weight_names, self.sha256s
        return shas[names.index(weight)].lower() if weight in names and names.index(weight) < len(shas) else ""

    def cache_path(self, weight: str, sha256: str = "") -> Path:
        """Where a download of ``weight`` goes: ``weights/<file>``, unless a file of another digest (another
        card's of the same name) is there; then ``weights/sha256-<digest[:16]>/<file>``, so neither is
        overwritten."""
        plain = cache_dir() / "weights" / weight
        if sha256 and plain.is_file() and verified_sha256(plain) != sha256.lower():
            return cache_dir() / "weights" / f"sha256-{sha256.lower()[:16]}" / weight
        return plain

    def candidates(self, weight: str, sha256: str = "") -> list[Path]:
        """Every place ``weight`` is looked for, in order (see the module doc)."""
        p = Path(weight)
        cands = [self.path.parent / p, cache_dir() / "weights" / p]
        if sha256:
            cands.append(cache_dir() / "weights" / f"sha256-{sha256.lower()[:16]}" / p)
        if os.environ.get("CIRBENCH_WEIGHTS"):
            cands.insert(0, Path(os.environ["CIRBENCH_WEIGHTS"]) / p)
        return cands

    def resolve(self, weight: str, sha256: str | None = None) -> Path:
        """A weight file where it is and, when the card gives a digest, with that digest (checked once per
        size and mtime); else where a download of it goes."""
        sha = (self.sha256_of(weight) if sha256 is None else sha256).lower()
        for c in self.candidates(weight, sha):
            if c.is_file() and (not sha or verified_sha256(c) == sha):
                return c
        return self.cache_path(weight, sha)

    def mismatched(self, weight: str) -> list[Path]:
        """Files named ``weight`` that are there but hold another digest than the card's."""
        sha = self.sha256_of(weight)
        return [c for c in self.candidates(weight, sha) if sha and c.is_file() and verified_sha256(c) != sha]

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
    if is_import_path(card.arch):  # a card is data: it never names code to import
        raise ConfigError(f"{p}: key 'arch' is an import path ({card.arch!r}); a card may name only registered "
                          "architectures or installed entry points (`cirbench models list`); run your own code "
                          "with --models module:attr")
    for key, names in (("weights.path", card.weight_names if card.weights.path else ()),
                       ("weights.url", () if card.weights.path else card.weight_names),
                       ("weights.per_qf", tuple(card.weights.per_qf.values()))):
        for name in names:
            if not isinstance(name, str) or not inside(name):
                raise ConfigError(f"{p}: key {key!r} names {name!r}, which is not a file inside the weights folder "
                                  "(absolute paths and '..' are refused); give a relative file name")
    bad = [k for k in card.weights.per_qf if not str(k).isdigit()]
    if bad:
        raise ConfigError(f"{p} [weights.per_qf]: keys must be quality factors, got {bad[0]!r}")
    return card
