"""Network architectures (networks only) and the one registry that names them.

``build_arch(name, **kwargs)`` is how model cards and training configs make a network. A name resolves,
first match wins, to:

1. a registered architecture: cirbench's own (``promptcir``, ``promptir``, ``fbcnn``) or one added with
   :func:`register`;
2. an installed package's entry point in the ``cirbench.models`` group, e.g. in its ``pyproject.toml``::

       [project.entry-points."cirbench.models"]
       mynet = "mypkg.nets:MyNet"

3. an import path ``module:attr``; ``module`` comes from ``sys.path`` and, failing that, from the current
   directory (the ``cirbench`` console script does not put it on ``sys.path``, unlike ``python -m``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from ..config import closest
from ..errors import ConfigError
from .fbcnn import FBCNN
from .promptcir import PromptCIR
from .promptir import PromptIR

__all__ = ["FBCNN", "PromptCIR", "PromptIR", "ARCHS", "register", "resolve", "build_arch", "is_import_path",
           "entry_point_names", "import_spec"]

ARCHS: dict[str, Callable[..., Any]] = {"promptcir": PromptCIR, "promptir": PromptIR, "fbcnn": FBCNN}
ENTRY_POINT_GROUP = "cirbench.models"


def register(name: str, builder: Callable[..., Any] | None = None):
    """Make ``name`` buildable (usable as a decorator: ``@register("mynet")``)."""
    if builder is None:
        return lambda b: register(name, b)
    ARCHS[name.lower()] = builder
    return builder


def is_import_path(name: str) -> bool:
    """``module:attr`` (and not a Windows drive or a URL-like spelling)."""
    mod, sep, attr = name.partition(":")
    return bool(sep and mod and attr and "/" not in name and "\\" not in name)


def _import_module(mod_name: str):
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name is None or not mod_name.startswith(exc.name) or cwd in sys.path:
            raise  # a missing dependency inside the user's module, or the current directory already searched
        sys.path.append(cwd)  # appended: installed packages keep precedence
        return importlib.import_module(mod_name)


def entry_point_names() -> list[str]:
    """Names installed packages register in the ``cirbench.models`` entry-point group."""
    return [e.name for e in entry_points(group=ENTRY_POINT_GROUP)]


def _entry_point(name: str):
    return next((e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == name), None)


def import_spec(name: str) -> str | None:
    """The ``module:attr`` an entry point or import path stands for (None for registered names and others)."""
    ep = _entry_point(name)
    if ep is not None:
        return ep.value
    return name if is_import_path(name) else None


def resolve(name: str) -> Any:
    """The class, factory or object a name stands for (see the module doc for the order)."""
    if name.lower() in ARCHS:
        return ARCHS[name.lower()]
    spec = import_spec(name)
    if spec is None:
        known = [*ARCHS, *entry_point_names()]
        raise ConfigError(f"unknown architecture {name!r}{closest(name, known)}; known: {', '.join(known)}, "
                          "or module:attr")
    mod_name, _, attr = spec.partition(":")
    try:
        return getattr(_import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{name!r}: cannot import {spec} ({exc})") from None


def build_arch(name: str, **kwargs) -> Any:
    """Instantiate an architecture by name with the given keyword arguments."""
    return resolve(name)(**kwargs)
