"""Evaluation protocols: TOML files naming datasets, degradations and QFs (like lm-eval tasks).

A protocol file has ``name``, ``version``, ``description``, optional ``models`` (the default
models), ``give_qf`` (non-blind: models that take the QF receive it) and ``setting`` (inference
setting, default ``single``), and one or more ``[[tasks]]``::

    [[tasks]]
    datasets = ["live1", "classic5"]
    degradation = "jpeg"          # or "double"
    qfs = [10, 20, 30, 40]        # the (last) JPEG quality
    qf1 = [10, 30, 50]            # double only: the first quality
    shift = [4, 4]                # double only: (dy, dx) crop between the two compressions
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from .config import ConfigError, check_table, find_tomls, load_toml
from .datasets import REGISTRY, closest

__all__ = ["Degradation", "Protocol", "load_protocol", "list_protocols"]

_TOP = {"name": str, "version": str, "description": str, "models": list, "give_qf": bool,
        "setting": str, "tasks": list}
_TASK = {"datasets": list, "degradation": str, "qfs": list, "qf1": list, "shift": list}


@dataclass(frozen=True)
class Degradation:
    """One degradation: single JPEG at ``qf``, or double JPEG ``qf1`` → shift → ``qf``."""

    qf: int
    qf1: int | None = None
    shift: tuple[int, int] = (0, 0)

    @classmethod
    def from_name(cls, name: str, qf: int) -> Degradation:
        """Inverse of :attr:`name`: ("double-q10-s4x4", 30) -> Degradation(30, 10, (4, 4))."""
        if name == "jpeg":
            return cls(qf)
        m = re.fullmatch(r"double-q(\d+)-s(\d+)x(\d+)", name)
        if not m:
            raise ValueError(f"unknown degradation {name!r}")
        return cls(qf, int(m[1]), (int(m[2]), int(m[3])))

    @property
    def name(self) -> str:
        if self.qf1 is None:
            return "jpeg"
        return f"double-q{self.qf1}-s{self.shift[0]}x{self.shift[1]}"


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

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for d, _ in self.jobs))

    def select(self, datasets=None, qfs=None) -> Protocol:
        """The protocol restricted to some QFs and datasets (command-line filters). A requested
        dataset the protocol does not list (e.g. ``folder:PATH``) gets all the protocol's
        degradations."""
        degs = list(dict.fromkeys(g for _, g in self.jobs if not qfs or g.qf in qfs))
        jobs = [(d, g) for d, g in self.jobs if (not datasets or d in datasets) and g in degs]
        for d in datasets or ():
            if d not in self.datasets:
                jobs += [(d, g) for g in degs]
        return replace(self, jobs=tuple(jobs))


def list_protocols() -> dict[str, Path]:
    """Protocol files by name: ``$CIRBENCH_PROTOCOLS`` folders first, then the packaged ``protocols/``."""
    return find_tomls("CIRBENCH_PROTOCOLS", "protocols")


def _qf_list(values, where: str, key: str) -> list[int]:
    if not values or not all(isinstance(q, int) and not isinstance(q, bool) and 1 <= q <= 100 for q in values):
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
    data = load_toml(p)
    check_table(data, _TOP, where=str(p), required=("name", "version", "tasks"))
    jobs = []
    for i, task in enumerate(data["tasks"], 1):
        where = f"{p} [tasks #{i}]"
        if not isinstance(task, dict):
            raise ConfigError(f"{where}: each task must be a table")
        check_table(task, _TASK, where=where, required=("datasets", "qfs"))
        for d in task["datasets"]:
            if not isinstance(d, str) or (d not in REGISTRY and not d.startswith("folder:")):
                raise ConfigError(f"{where}: unknown dataset {d!r}{closest(str(d), REGISTRY)}")
        kind = task.get("degradation", "jpeg")
        qfs = _qf_list(task["qfs"], where, "qfs")
        if kind == "jpeg":
            if "qf1" in task or "shift" in task:
                raise ConfigError(f"{where}: qf1/shift only apply to degradation = \"double\"")
            degs = [Degradation(q) for q in qfs]
        elif kind == "double":
            qf1 = _qf_list(task.get("qf1", []), where, "qf1")
            shift = task.get("shift", [0, 0])
            if len(shift) != 2 or not all(isinstance(s, int) and 0 <= s < 8 for s in shift):
                raise ConfigError(f"{where}: shift must be [dy, dx] with 0 <= dy, dx < 8, got {shift!r}")
            degs = [Degradation(q2, q1, (shift[0], shift[1])) for q1 in qf1 for q2 in qfs]
        else:
            raise ConfigError(f"{where}: degradation must be \"jpeg\" or \"double\", got {kind!r}")
        jobs += [(d, g) for d in task["datasets"] for g in degs]
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    return Protocol(data["name"], data["version"], data.get("description", ""), p, sha,
                    tuple(data.get("models", ["jpeg"])), data.get("give_qf", False),
                    data.get("setting", "single"), tuple(dict.fromkeys(jobs)))
