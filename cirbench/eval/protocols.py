"""Evaluation protocols: TOML files naming datasets, degradations and QFs (like lm-eval tasks).

A protocol file has ``name``, ``version``, ``description``, optional ``models`` (the default
models), ``metrics`` (default psnr, ssim, psnrb; registered metrics or entry points only: a data file never
names code), ``give_qf`` (non-blind: models that take the QF receive it) and ``setting`` (inference
setting, default ``single``), and one or more ``[[tasks]]``::

    [[tasks]]
    datasets = ["live1", "classic5"]
    degradation = "jpeg"          # or "double"
    qfs = [10, 20, 30, 40]        # the (last) JPEG quality
    qf1 = [10, 30, 50]            # double only: the first quality
    shift = [4, 4]                # double only: (dy, dx) crop between the two compressions

A protocol is data: its ``name`` is a plain name (it names the default run folder, ``runs/NAME``), its
``models`` are ``jpeg``, cards and registered architectures (never ``module:attr``), and a ``folder:PATH``
dataset or an ``outputs:TEMPLATE`` model is a relative path inside the protocol file's folder, resolved
against it. :func:`problems` checks what loading does not (models and settings that exist, folders present):
``cirbench protocols validate``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ..config import closest, find_tomls, from_table, load_toml
from ..errors import ConfigError
from ..files import inside
from ..jpeg import Degradation
from ..metrics import resolve_metrics
from .datasets import REGISTRY

__all__ = ["Degradation", "Protocol", "load_protocol", "list_protocols", "problems", "PLAIN_NAME"]

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a protocol's name is a folder name under runs/
FOLDER, OUTPUTS = "folder:", "outputs:"
# An ad-hoc run's definition: what its records mean, whatever datasets and QFs were picked (as a protocol
# file's sha256 does not change with --datasets/--qf filters), so ad-hoc runs into one folder resume.
ADHOC_DEFINITION = "adhoc v1: blind single JPEG (Pillow, quality QF, 4:2:0) on the datasets and QFs given"


@dataclass(kw_only=True)
class _Task:
    datasets: list[str]
    qfs: list[int]
    degradation: Literal["jpeg", "double"] = "jpeg"
    qf1: list[int] | None = None
    shift: list[int] | None = None


@dataclass(kw_only=True)
class _ProtocolFile:
    name: str
    version: str
    description: str = ""
    models: list[str] = field(default_factory=lambda: ["jpeg"])
    metrics: list[str] | None = None
    give_qf: bool = False
    setting: str = "single"
    tasks: list[_Task]


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str
    description: str
    path: Path
    sha256: str
    models: tuple[str, ...]
    give_qf: bool
    setting: str
    jobs: tuple[tuple[str, Degradation], ...]  # (dataset, degradation), in run order
    metrics: tuple[str, ...] = ()  # the protocol's metrics; () = the default ones

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for d, _ in self.jobs))

    def select(self, datasets=None, qfs=None) -> Protocol:
        """The protocol restricted to some datasets and QFs (command-line filters). A filter value the protocol
        lacks is an error naming the protocol's values; ``folder:PATH`` and the bundled samples, which no
        protocol lists, get all the protocol's degradations."""
        have_qfs = sorted({g.qf for _, g in self.jobs})
        lacking = [q for q in qfs or () if q not in have_qfs]
        if lacking:
            raise ConfigError(f"--qf {','.join(map(str, lacking))}: protocol {self.name!r} has QF "
                              f"{','.join(map(str, have_qfs))}; without --protocol, --qf runs exactly the QFs given")
        extra = [d for d in datasets or () if d not in self.datasets]
        for d in extra:
            if d not in REGISTRY and not d.startswith("folder:"):
                raise ConfigError(f"unknown dataset {d!r}{closest(d, REGISTRY)}; known: {', '.join(REGISTRY)}, "
                                  "or folder:PATH")
        unknown = [d for d in extra if not (d.startswith("folder:") or d in ("samples", "samples_gray"))]
        if unknown:
            raise ConfigError(f"--datasets {','.join(unknown)}: protocol {self.name!r} has {', '.join(self.datasets)}; "
                              "without --protocol, --datasets runs exactly the datasets given")
        degs = list(dict.fromkeys(g for _, g in self.jobs if not qfs or g.qf in qfs))
        jobs = [(d, g) for d, g in self.jobs if (not datasets or d in datasets) and g in degs]
        jobs += [(d, g) for d in extra for g in degs]
        return replace(self, jobs=tuple(jobs))

    @classmethod
    def adhoc(cls, datasets: list[str], qfs: list[int], models: tuple[str, ...]) -> Protocol:
        """A blind run on exactly these datasets and QFs (single JPEG): ``cirbench run`` without --protocol."""
        for d in datasets:
            if d not in REGISTRY and not d.startswith("folder:"):
                raise ConfigError(f"unknown dataset {d!r}{closest(d, REGISTRY)}; known: {', '.join(REGISTRY)}, "
                                  "or folder:PATH")
        _qf_list(qfs, "--qf", "the QFs")
        text = ADHOC_DEFINITION
        jobs = tuple(dict.fromkeys((d, Degradation(q)) for d in datasets for q in qfs))
        return cls("adhoc", "1", f"ad-hoc blind run: {', '.join(datasets)} at QF {', '.join(map(str, qfs))}",
                   Path("<command line>"), hashlib.sha256(text.encode()).hexdigest(), models, False, "single", jobs)


# The inference settings a protocol may name (cirbench.zoo.inference.InferenceSettings.named's presets; a
# test keeps the two lists equal, and this module stays free of torch).
SETTINGS = ("single", "ntire24")


def list_protocols() -> dict[str, Path]:
    """Protocol files by name: ``$CIRBENCH_PROTOCOLS`` folders first, then the packaged ``protocols/``."""
    return find_tomls("CIRBENCH_PROTOCOLS", "protocols")


def _qf_list(values, where: str, key: str) -> list[int]:
    if not values or not all(1 <= q <= 100 for q in values):
        raise ConfigError(f"{where}: {key} must be a non-empty list of integers in 1..100, got {values!r}")
    return list(values)


def load_protocol(name_or_path: str | os.PathLike) -> Protocol:
    """Load and validate a protocol by name (``blind``) or path (``my/protocol.toml``)."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        known = list_protocols()
        if str(name_or_path) not in known:
            raise ConfigError(
                f"unknown protocol {str(name_or_path)!r}{closest(str(name_or_path), known)}; "
                f"known: {', '.join(known)}"
            )
        p = known[str(name_or_path)]
    spec = from_table(_ProtocolFile, load_toml(p), where=str(p))
    if not PLAIN_NAME.fullmatch(spec.name):
        raise ConfigError(f"{p}: key 'name' must be a plain name (letters, digits, '.', '_', '-'), got "
                          f"{spec.name!r}: it names the run folder runs/NAME")
    if not spec.tasks:
        raise ConfigError(f"{p}: the protocol has no [[tasks]]; add at least one")
    for key, values in (("models", spec.models), ("metrics", spec.metrics)):
        if values is not None and not values:
            raise ConfigError(f"{p}: key {key!r} is an empty list; name at least one, or leave the key out")
    if spec.setting not in SETTINGS:
        raise ConfigError(f"{p}: key 'setting' is {spec.setting!r}{closest(spec.setting, SETTINGS)}; known: "
                          f"{', '.join(SETTINGS)}")
    models = tuple(_model(m, p) for m in spec.models)
    jobs = []
    for i, task in enumerate(spec.tasks, 1):
        where = f"{p} [tasks #{i}]"
        if not task.datasets:
            raise ConfigError(f"{where}: key 'datasets' is an empty list; name at least one dataset")
        datasets = []
        for d in task.datasets:
            if d.startswith(FOLDER):
                d = FOLDER + str(_inside_protocol(d[len(FOLDER):], p, f"{where} datasets"))
            elif d not in REGISTRY:
                raise ConfigError(f"{where}: unknown dataset {d!r}{closest(d, REGISTRY)}")
            datasets.append(d)
        qfs = _qf_list(task.qfs, where, "qfs")
        if task.degradation == "jpeg":
            if task.qf1 is not None or task.shift is not None:
                raise ConfigError(f"{where}: qf1/shift only apply to degradation = \"double\"")
            degs = [Degradation(q) for q in qfs]
        else:
            qf1 = _qf_list(task.qf1 or [], where, "qf1")
            shift = task.shift if task.shift is not None else [0, 0]
            if len(shift) != 2 or not all(0 <= s < 8 for s in shift):
                raise ConfigError(f"{where}: shift must be [dy, dx] with 0 <= dy, dx < 8, got {shift!r}")
            degs = [Degradation(q2, q1, (shift[0], shift[1])) for q1 in qf1 for q2 in qfs]
        jobs += [(d, g) for d in datasets for g in degs]
    metrics = ()
    if spec.metrics is not None:
        resolve_metrics(spec.metrics, allow_code=False, where=f"{p} metrics")  # refused now, not mid-run
        metrics = tuple(spec.metrics)
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    return Protocol(spec.name, spec.version, spec.description, p, sha, models, spec.give_qf,
                    spec.setting, tuple(dict.fromkeys(jobs)), metrics)


def _inside_protocol(raw: str, path: Path, key: str) -> Path:
    """A path a protocol names, resolved against the protocol's folder, which it may not leave."""
    if not inside(raw):
        raise ConfigError(f"{path}: key {key!r} names {raw!r}, which is not inside the protocol's folder "
                          "(absolute paths, '~' and '..' are refused); give a path relative to the protocol file, "
                          "or name the folder on the command line (--datasets folder:PATH)")
    if raw.startswith("~"):
        raise ConfigError(f"{path}: key {key!r} names {raw!r}: '~' is not expanded in a protocol; give a path "
                          "relative to the protocol file")
    return path.resolve().parent / raw


def _model(name: str, path: Path) -> str:
    """A protocol's model name: never code (``module:attr``); ``outputs:`` templates stay in its folder."""
    from ..registry import is_import_path

    if name.startswith(OUTPUTS):
        return OUTPUTS + str(_inside_protocol(name[len(OUTPUTS):], path, "models"))
    if is_import_path(name):
        raise ConfigError(f"{path}: key 'models' names {name!r}, an import path; a protocol may name only jpeg, "
                          "model cards and registered architectures (`cirbench models list`); run your own code "
                          "with --models module:attr")
    return name


def problems(protocol: Protocol) -> list[str]:
    """What a protocol that loads would still fail on (``cirbench protocols validate``): unknown models, absent
    ``folder:`` datasets. Each line names the protocol file and the key."""
    from ..zoo.cards import list_cards

    out = []
    where = str(protocol.path)
    cards = list_cards()
    for m in protocol.models:
        if m == "jpeg" or m.startswith(OUTPUTS) or m in cards:
            continue
        from ..archs import REGISTRY as ARCHS

        if m.lower() in ARCHS or m in ARCHS.entry_point_names():
            continue
        out.append(f"{where}: key 'models' names an unknown model {m!r}{closest(m, ['jpeg', *cards])}; known: "
                   f"jpeg, {', '.join(cards)}, or a registered architecture")
    for d in protocol.datasets:
        if d.startswith(FOLDER) and not Path(d[len(FOLDER):]).is_dir():
            out.append(f"{where}: dataset {d}: folder not found")
    return out
