"""pyiqa's metrics (LPIPS, DISTS, MUSIQ, MANIQA, CLIPIQA, NIQE, and any other) as cirbench metrics, their weights
fetched and verified by cirbench: pyiqa never downloads anything itself.

Names: ``pyiqa:NAME`` for any metric pyiqa has (``pyiqa:ms_ssim``, recorded as ``ms_ssim``; a name cirbench already
has is recorded as ``pyiqa_NAME``), and a short name for each curated one (``lpips``), registered from its
*metric card*: ``cirbench/data/metrics/NAME.toml``, or one in a folder of ``$CIRBENCH_METRIC_CARDS`` (first). A
card gives pyiqa's name, the label and direction, and every file the metric loads (URL, sha256, size, licence);
reading cards needs no pyiqa, so protocols and ``cirbench metrics list`` name them in any environment.

The numbers are ``pyiqa.create_metric(NAME)``'s with its defaults: the uint8 RGB image as float32 in [0, 1],
N x 3 x H x W, called ``metric(restored, ground_truth)``, or ``metric(restored)`` for a no-reference metric (so the
``jpeg`` row is the JPEG input's score). Colour images are recorded in ``rgb``; gray images in ``gray``, the plane
replicated to three channels as models get it. The network is built once per run on the run's device (and kept
for the process); a direction that disagrees with pyiqa's ``lower_better`` is refused.

Files: pyiqa, torchvision, CLIP and timm each look in a folder of their own. cirbench places a card's files
under ``$CIRBENCH_CACHE`` (torch hub ``torch/hub/pyiqa``, ``torch/hub/checkpoints``, ``torch/hub/clip``; the
Hugging Face cache ``hf/hub``) with :func:`cirbench.files.download`, the download model weights go through
(sha256 and size checked, moved into place only when they match). Before a network is built every file is
checked again (its sha256, or the prefix a torchvision file name carries); a file the card has no digest for is
downloaded anyway, its digest printed and recorded in run.json. While pyiqa builds, torch hub, pyiqa's download
folder and the Hugging Face cache point there (pyiqa and huggingface_hub fix theirs at import, so cirbench sets
the module values rather than environment variables: a pyiqa your code imported first is pointed the same way),
every downloader pyiqa reaches raises, and ``torch.load`` is forced to ``weights_only``: a file that is not on a
card is an error naming it, and no weight file runs code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from ..config import closest, find_tomls, from_table, load_toml
from ..errors import CheckpointError, ConfigError, FetchError, Unreachable, WeightsMissing
from ..files import atomic_write, cache_dir, download, offline, sha256_file
from .spaces import Pair
from .spec import REGISTRY, Metric

__all__ = ["SETUP", "IQA_SPACES", "CardFile", "MetricCard", "list_cards", "load_card", "register_card",
           "card_of", "destination", "missing_files", "fetch", "verify", "pyiqa_metric"]

SETUP = ("pip install 'cirbench[iqa]' beside your torch and torchvision, or on a CPU machine a separate "
         "environment: nox -s iqa (README, Perceptual metrics)")
IQA_SPACES = ("rgb", "gray")  # gray: the plane replicated to three channels
_HEX = re.compile(r"[0-9a-f]+")
_NAME = re.compile(r"[a-z0-9][a-z0-9_+-]*")
_NOT_PER_IMAGE = ("fid", "inception_score")  # pyiqa's set metrics: they compare folders, not image pairs


@dataclass(kw_only=True)
class CardFile:
    """One ``[[files]]`` entry: a file the metric loads, and where its consumer looks for it."""

    name: str
    url: str
    # pyiqa: pyiqa's own weights; checkpoints: torchvision's; clip: OpenAI CLIP's; hf: a Hugging Face model repo's
    folder: Literal["pyiqa", "checkpoints", "clip", "hf"]
    sha256: str = ""  # empty: not published; fetched anyway, printed and recorded in run.json
    hash_prefix: str = ""  # the sha256 prefix the file's name carries (torchvision's, pyiqa's): always checked
    bytes: int = 0
    repo: str = ""  # hf only: the repository, e.g. timm/vit_base_patch8_224.augreg2_in21k_ft_in1k
    revision: str = ""  # hf only: the commit the URL names; the cache's refs/main is set to it
    license: str = ""
    note: str = ""


@dataclass(kw_only=True)
class MetricCard:
    """A curated pyiqa metric: what the records call it, how reports read it and the files it needs."""

    name: str  # the record key and the short name (the file's stem)
    pyiqa: str  # pyiqa's name of it
    label: str
    higher_is_better: bool  # checked against pyiqa's lower_better when the network is built
    reference: Literal["full", "none"]
    unit: str = ""
    decimals: int = 4
    tolerance: float | None = None
    convention: str = ""
    description: str = ""
    license: str = ""  # of the code computing it
    citation: str = ""
    note: str = ""
    files: list[CardFile] = field(default_factory=list)
    path: Path = field(default=Path("."), metadata={"internal": True})


def _check(card: MetricCard, where: str) -> None:
    if card.name != card.path.stem or not _NAME.fullmatch(card.name):
        raise ConfigError(f"{where}: name {card.name!r} must be the file's stem and plain (a-z, 0-9, _ + -)")
    seen = set()
    for i, f in enumerate(card.files, 1):
        at = f"{where} [files #{i}]"
        if not f.url.startswith(("https://", "http://")):
            raise ConfigError(f"{at}: url must be an http(s) URL, got {f.url!r}")
        if not f.name or "/" in f.name or "\\" in f.name or f.name.startswith("."):
            raise ConfigError(f"{at}: name must be a plain file name, got {f.name!r}")
        if f.sha256 and not (len(f.sha256) == 64 and _HEX.fullmatch(f.sha256)):
            raise ConfigError(f"{at}: sha256 must be 64 lower-case hex digits, got {f.sha256!r}")
        if f.hash_prefix:
            if not (len(f.hash_prefix) >= 6 and _HEX.fullmatch(f.hash_prefix)) or f.hash_prefix not in f.name:
                raise ConfigError(f"{at}: hash_prefix must be hex digits the file name carries, got "
                                  f"{f.hash_prefix!r} for {f.name!r}")
            if f.sha256 and not f.sha256.startswith(f.hash_prefix):
                raise ConfigError(f"{at}: sha256 {f.sha256} does not start with hash_prefix {f.hash_prefix}")
        if f.bytes < 0:
            raise ConfigError(f"{at}: bytes must be the size in bytes, got {f.bytes}")
        if (f.folder == "hf") != bool(f.repo and f.revision):
            raise ConfigError(f"{at}: repo and revision go with folder = \"hf\", and it needs both")
        if f.revision and not (len(f.revision) == 40 and _HEX.fullmatch(f.revision)):
            raise ConfigError(f"{at}: revision must be a 40-hex commit, got {f.revision!r}")
        if (f.folder, f.repo, f.name) in seen:
            raise ConfigError(f"{at}: {f.name} is listed twice")
        seen.add((f.folder, f.repo, f.name))


def list_cards() -> dict[str, Path]:
    """Metric cards by name: ``$CIRBENCH_METRIC_CARDS`` folders first, then the packaged ones."""
    return find_tomls("CIRBENCH_METRIC_CARDS", "metrics")


def load_card(path: str | os.PathLike) -> MetricCard:
    """Load and validate a metric card."""
    p = Path(path)
    table = load_toml(p)
    table.setdefault("name", p.stem)
    card = from_table(MetricCard, table, where=str(p))
    card.path = p
    _check(card, str(p))
    return card


_CARDS: dict[str, MetricCard] = {}  # by cirbench's name
_BY_PYIQA: dict[str, str] = {}  # pyiqa's name -> cirbench's


def register_card(card: MetricCard) -> Metric:
    """Register the card's metric under its short name (and ``pyiqa:`` + pyiqa's name)."""
    other = REGISTRY.entries.get(card.name)
    if other is not None and (not isinstance(other, Metric) or other.source != _source(card)):
        raise ConfigError(f"{card.path}: metric {card.name!r} is already registered "
                          f"({getattr(other, 'source', other)})")
    m = Metric(name=card.name, label=card.label, unit=card.unit, decimals=card.decimals,
               higher_is_better=card.higher_is_better, reference=card.reference, spaces=IQA_SPACES, batched=True,
               device="any", tolerance=card.tolerance, source=_source(card),
               convention=card.convention or f"pyiqa create_metric({card.pyiqa!r}) defaults, RGB in [0, 1]",
               setup=partial(_setup, card.name, card.pyiqa))
    REGISTRY.register(card.name, m)
    _CARDS[card.name] = card
    _BY_PYIQA[card.pyiqa] = card.name
    return m


def _source(card: MetricCard) -> str:
    return f"pyiqa:{card.pyiqa} (card {card.path.name})"


def card_of(name: str) -> MetricCard:
    """The card of a registered short name (or of ``pyiqa:NAME`` for a curated NAME)."""
    space = REGISTRY.namespace_of(name)
    short = _BY_PYIQA.get(space[1], "") if space else name
    if short not in _CARDS:
        raise ConfigError(f"no metric card for {name!r}; cards: {', '.join(_CARDS)}{closest(name, _CARDS)}")
    return _CARDS[short]


# ---------------------------------------------------------------------------------------------- files


def _roots() -> dict[str, Path]:
    """Where each consumer looks, under ``$CIRBENCH_CACHE``."""
    hub = cache_dir() / "torch" / "hub"
    return {"hub": hub, "pyiqa": hub / "pyiqa", "checkpoints": hub / "checkpoints", "clip": hub / "clip",
            "hf": cache_dir() / "hf" / "hub"}


def _hf_repo_dir(f: CardFile) -> Path:
    return _roots()["hf"] / f"models--{f.repo.replace('/', '--')}"


def destination(f: CardFile) -> Path:
    """Where the file's consumer looks for it: torch hub's folders, or the Hugging Face cache's snapshot."""
    if f.folder == "hf":
        return _hf_repo_dir(f) / "snapshots" / f.revision / f.name
    return _roots()[f.folder] / f.name


def _ensure_ref(f: CardFile) -> None:
    """huggingface_hub offline reads the revision of ``main`` from refs/main: the snapshot the card pins."""
    ref = _hf_repo_dir(f) / "refs" / "main"
    if not ref.is_file() or ref.read_text().strip() != f.revision:
        atomic_write(ref, f.revision)


def missing_files(card: MetricCard) -> list[CardFile]:
    return [f for f in card.files if not destination(f).is_file()]


def _by_hand(files: list[CardFile]) -> str:
    return "; ".join(f"{f.url} -> {destination(f)}" for f in files)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def fetch(card: MetricCard, *, log: Callable[[str], None] = _log) -> list[Path]:
    """Download every missing file of ``card`` (verified) to where its consumer looks; returns all its paths."""
    todo = missing_files(card)
    if todo and offline():
        raise WeightsMissing(f"metric {card.name!r}: {len(todo)} file(s) not found and downloads are off (--offline / "
                             f"CIRBENCH_OFFLINE=1); put them in place by hand: {_by_hand(todo)}")
    for f in todo:
        _fetch_one(card, f, log)
    return [destination(f) for f in card.files]


def _fetch_one(card: MetricCard, f: CardFile, log: Callable[[str], None]) -> None:
    dest = destination(f)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # innermost first
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Into a private folder beside the destination, checked there, then renamed: a refused or interrupted
        # download never appears under the name the consumer opens.
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
            part = Path(tmp) / f.name
            try:
                download(f.url, part, f.sha256 or None, size=f.bytes or None)
            except Unreachable as exc:
                raise WeightsMissing(f"metric {card.name!r}: could not reach {exc.host} ({exc.why}); nothing was "
                                     f"kept; check the network and retry, or put the file in place by hand: "
                                     f"{_by_hand([f])}") from None
            digest = sha256_file(part)
            if f.hash_prefix and not digest.startswith(f.hash_prefix):
                raise FetchError(f"{f.url}: sha256 {digest} does not start with {f.hash_prefix}, the prefix its name "
                                 "carries; nothing was kept")
            os.replace(part, dest)
    except BaseException:
        for p in created:  # the folders this fetch made, if still empty: a refused fetch leaves nothing
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    if f.folder == "hf":
        _ensure_ref(f)
    known = "matches the card" if f.sha256 else (
        ("its name's prefix matches; " if f.hash_prefix else "") + "no full digest on the card: recorded in run.json")
    log(f"{card.name}: {dest} sha256 {digest} ({known})")


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: each file hashed once a process


def verify(card: MetricCard, *, log: Callable[[str], None] = _log) -> dict[str, str]:
    """Every file of ``card`` in place (fetched if missing) and as the card pins it: {file name: sha256}."""
    fetch(card, log=log)
    digests = {}
    for f in card.files:
        path = destination(f)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        digest = _VERIFIED.get(key) or sha256_file(path)
        problem = ""
        if f.sha256 and digest != f.sha256:
            problem = f"sha256 {digest}, the card pins {f.sha256}"
        elif f.hash_prefix and not digest.startswith(f.hash_prefix):
            problem = f"sha256 {digest} does not start with {f.hash_prefix}, the prefix its name carries"
        elif f.bytes and st.st_size != f.bytes:
            problem = f"{st.st_size} bytes, the card pins {f.bytes}"
        if problem:
            raise CheckpointError(f"{path}: {problem}; delete it and run `cirbench metrics fetch {card.name}` "
                                  f"(metric {card.name!r} is never computed from an unverified file)")
        _VERIFIED[key] = digest
        if f.folder == "hf":
            _ensure_ref(f)
        digests[f.name] = digest
    return digests


# ---------------------------------------------------------------------------------------------- pyiqa


def _import_pyiqa():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # pyiqa 0.1.16 leaves a YAML file open at import
            import pyiqa
    except Exception as exc:  # ImportError; torchvision's RuntimeError beside a CPU torch ("torchvision::nms")
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"pyiqa metrics need pyiqa, which cannot be imported here ({type(exc).__name__}: "
                          f"{first}); set it up: {SETUP}") from None
    return pyiqa


def _configs() -> dict:
    _import_pyiqa()
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return DEFAULT_CONFIGS


class _Blocked(Exception):
    """pyiqa (or torchvision, CLIP) tried to download ``url``."""

    def __init__(self, url: str, dest: str = ""):
        super().__init__(url)
        self.url, self.dest = url, dest


def _refuse(url, dst="", *args, **kwargs):
    raise _Blocked(str(getattr(url, "full_url", url)), str(dst))


@contextlib.contextmanager
def _sealed() -> Iterator[None]:
    """While pyiqa builds a network: every folder it reads under $CIRBENCH_CACHE, no download, weights_only."""
    import urllib.request

    import torch.hub
    from pyiqa.utils import download_util

    roots = _roots()
    saved_env = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    patches = [(download_util, "DEFAULT_CACHE_DIR", str(roots["pyiqa"])),
               (download_util, "download_url_to_file", _refuse), (torch.hub, "download_url_to_file", _refuse),
               (torch.hub, "_hub_dir", str(roots["hub"])), (urllib.request, "urlopen", _refuse)]
    try:
        import huggingface_hub.constants as hf
    except ImportError:
        hf = None
    if hf is not None:  # timm's weights (MANIQA's ViT): cache folder, and offline so a missing file is not fetched
        patches += [(hf, "HF_HUB_CACHE", str(roots["hf"])), (hf, "HF_HUB_OFFLINE", True)]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, value in patches:
            setattr(obj, attr, value)
        os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # torch refuses both at once
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"  # overrides pyiqa's and torchvision's weights_only=False
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _chain(exc: BaseException) -> list[BaseException]:
    out, todo = [], [exc]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not o for o in out):
            out.append(e)
            todo += [e.__cause__, e.__context__]
    return out


def _build_error(name: str, exc: Exception) -> Exception:
    """pyiqa's failure to build a network, said in one line with what to do."""
    chain = _chain(exc)
    blocked = next((e for e in chain if isinstance(e, _Blocked)), None)
    cards = ", ".join(str(p) for p in list_cards().values())
    if blocked is not None or any(type(e).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
                                  for e in chain):
        what = (f"{blocked.url}" + (f" to {blocked.dest}" if blocked.dest else "")) if blocked else str(exc)[:200]
        return WeightsMissing(f"pyiqa:{name} wanted to download {what}; cirbench fetches only files a metric card pins "
                              f"(the cards: {cards or 'none'}): write a card for it in a folder of "
                              "$CIRBENCH_METRIC_CARDS, or put the file there yourself")
    if any(isinstance(e, pickle.UnpicklingError) for e in chain):
        return CheckpointError(f"pyiqa:{name}: a weight file needs code to unpickle, and cirbench loads weights with "
                               f"weights_only only; refused ({str(exc).strip().splitlines()[0][:200]})")
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    hint = "; pin setuptools<82 (openai-clip imports pkg_resources)" if "pkg_resources" in first else ""
    return ConfigError(f"pyiqa could not build {name!r} ({type(exc).__name__}: {first}){hint}")


_NETS: dict[tuple[str, str, str], object] = {}  # (pyiqa name, device, cache) -> the built metric, once a process
_LOCK = threading.Lock()


def _network(name: str, device: str):
    key = (name, device, str(cache_dir()))  # the files it loaded are the cache's
    with _LOCK:
        if key not in _NETS:
            pyiqa = _import_pyiqa()
            import torch

            try:
                # pyiqa prints what it loads on stdout, which is the report's: to stderr with it.
                with _sealed(), contextlib.redirect_stdout(sys.stderr):
                    _NETS[key] = pyiqa.create_metric(name, device=torch.device(device))
            except Exception as exc:  # pyiqa, torchvision, timm, CLIP: any of their errors
                raise _build_error(name, exc) from None
        return _NETS[key]


def _as_input(planes, device):
    """Float64 planes on 0..255 as pyiqa reads an image: float32 / 255 (torchvision's ToTensor, bit for bit), three
    channels (gray replicated)."""
    import torch

    x = planes.to(torch.float32).div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1).contiguous()
    return x.to(device)


def _setup(short: str | None, name: str, device: str) -> tuple[Callable[[Pair], object], dict]:
    """Verify the card's files, build pyiqa's network on ``device``; the batched function and run.json's details."""
    import torch

    pyiqa = _import_pyiqa()  # first: no weights are downloaded for a metric that cannot run here
    card = _CARDS.get(short) if short else None
    digests = verify(card) if card is not None else {}
    cfg = _configs().get(name)
    if cfg is None:
        raise ConfigError(f"pyiqa {pyiqa.__version__} has no metric {name!r}{closest(name, _configs())}")
    if card is not None:
        lower, mode = bool(cfg.get("lower_better", False)), cfg.get("metric_mode")
        if card.higher_is_better == lower or (mode == "NR") != (card.reference == "none"):
            raise ConfigError(f"{card.path}: pyiqa {pyiqa.__version__} says {name!r} is {mode}, "
                              f"{'lower' if lower else 'higher'} is better; the card disagrees: update it")
    net = _network(name, device)
    no_ref = cfg.get("metric_mode") == "NR"

    def fn(pair: Pair):
        with torch.no_grad():
            out = _as_input(pair.out, device)
            v = net(out) if no_ref else net(out, _as_input(pair.gt, device))
        v = v.detach().to("cpu", torch.float64).reshape(-1)
        if v.numel() != pair.out.shape[0]:
            raise ConfigError(f"pyiqa:{name} gave {v.numel()} values for {pair.out.shape[0]} images: not a per-image "
                              "metric")
        return v

    import torchvision

    details = {"pyiqa": pyiqa.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
               "device": device}
    if digests:
        details["weights_sha256"] = digests
    return fn, details


_ADHOC: dict[str, Metric] = {}


def pyiqa_metric(name: str) -> Metric:
    """What ``pyiqa:NAME`` stands for: a curated card's metric (no pyiqa needed), else one described by pyiqa's
    own configuration (direction from ``lower_better``, FR/NR from ``metric_mode``)."""
    name = name.strip()
    if name in _BY_PYIQA:
        return REGISTRY.entries[_BY_PYIQA[name]]
    if name in _ADHOC:
        return _ADHOC[name]
    if not name:
        raise ConfigError("pyiqa: give a metric name, e.g. pyiqa:gmsd")
    if any(s in name for s in _NOT_PER_IMAGE):
        raise ConfigError(f"pyiqa:{name} compares image sets, not an image with its ground truth: not a per-image "
                          "metric")
    configs = _configs()
    if name not in configs:
        raise ConfigError(f"pyiqa has no metric {name!r}{closest(name, configs)}; pyiqa.list_models() names them")
    cfg = configs[name]
    import pyiqa

    key = name if name.lower() not in REGISTRY.entries else f"pyiqa_{name}"  # cirbench's own keeps its name
    top = [float(v) for v in re.findall(r"\d+(?:\.\d+)?", str(cfg.get("score_range", "")))]
    m = Metric(name=key, label=name.upper().replace("_", "-"), decimals=2 if top and max(top) > 10 else 4,
               higher_is_better=not cfg.get("lower_better", False),
               reference="none" if cfg.get("metric_mode") == "NR" else "full", spaces=IQA_SPACES, batched=True,
               device="any", source=f"pyiqa:{name}",
               convention=f"pyiqa {pyiqa.__version__} create_metric({name!r}) defaults, RGB in [0, 1]",
               setup=partial(_setup, None, name))
    _ADHOC[name] = m
    return m


def _register_packaged() -> None:
    from . import psnr, psnrb, ssim  # noqa: F401  (registered first: a card cannot take cirbench's own names)

    for path in list_cards().values():
        register_card(load_card(path))


REGISTRY.add_namespace("pyiqa", pyiqa_metric)
_register_packaged()
