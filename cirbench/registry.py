"""The one registry: names that stand for things (architectures, metrics), as timm's and pyiqa's do.

A name resolves, first match wins, to:

1. something registered with :meth:`Registry.register` (cirbench's own, or a user's, as a decorator);
2. an installed package's entry point in the registry's group, e.g. in its ``pyproject.toml``::

       [project.entry-points."cirbench.metrics"]
       mae = "mypkg.metrics:mae"

3. an import path ``module:attr``, only where ``allow_code`` is on: code the user typed (``--models``,
   ``--metrics``), never a name read from a data file (a card, a protocol, a config). ``module`` comes from
   ``sys.path`` and, failing that, from the current directory (the ``cirbench`` console script does not put
   it on ``sys.path``, unlike ``python -m``).

A *namespace* ``PREFIX:NAME`` hands the names of another library to a resolver (``pyiqa:gmsd``). It is checked
before the import path, so ``pyiqa:gmsd`` never means ``import pyiqa; pyiqa.gmsd``; it names no user code and is
accepted in data files too.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from .config import closest
from .errors import ConfigError

__all__ = ["Registry", "is_import_path"]


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


class Registry:
    """Names of one kind (``"architecture"``, ``"metric"``) with an entry-point group for plug-ins."""

    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self.entries: dict[str, Any] = {}  # registered in this process, by lower-case name
        self.namespaces: dict[str, Callable[[str], Any]] = {}  # PREFIX -> resolver of the NAME in PREFIX:NAME

    def add_namespace(self, prefix: str, resolve: Callable[[str], Any]) -> None:
        """Names ``PREFIX:NAME`` resolve to ``resolve(NAME)``."""
        self.namespaces[prefix.lower()] = resolve

    def namespace_of(self, name: str) -> tuple[str, str] | None:
        """``(prefix, rest)`` when ``name`` is in a namespace, else None."""
        prefix, sep, rest = name.partition(":")
        return (prefix.lower(), rest) if sep and prefix.lower() in self.namespaces else None

    def register(self, name: str, obj: Any = None):
        """Make ``name`` stand for ``obj`` (usable as a decorator: ``@REGISTRY.register("mynet")``)."""
        if obj is None:
            return lambda o: self.register(name, o)
        self.entries[name.lower()] = obj
        return obj

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.entries

    def entry_point_names(self) -> list[str]:
        """Names installed packages register in this registry's entry-point group."""
        return [e.name for e in entry_points(group=self.group)]

    def names(self) -> list[str]:
        return [*self.entries, *(n for n in self.entry_point_names() if n.lower() not in self.entries)]

    def _entry_point(self, name: str):
        return next((e for e in entry_points(group=self.group) if e.name == name), None)

    def import_spec(self, name: str, *, allow_code: bool = True) -> str | None:
        """The ``module:attr`` an entry point (or, with ``allow_code``, an import path) stands for."""
        ep = self._entry_point(name)
        if ep is not None:
            return ep.value
        return name if allow_code and is_import_path(name) else None

    def resolve(self, name: str, *, allow_code: bool = True, where: str = "") -> Any:
        """The object ``name`` stands for (see the module doc for the order). ``where`` prefixes errors (a file
        and key) when the name comes from a data file, where ``module:attr`` is refused."""
        if name.lower() in self.entries:
            return self.entries[name.lower()]
        prefix = f"{where}: " if where else ""
        space = self.namespace_of(name)
        if space is not None:
            try:
                return self.namespaces[space[0]](space[1])
            except ConfigError as exc:
                raise ConfigError(f"{prefix}{exc}") from None
        spec = self.import_spec(name, allow_code=allow_code)
        if spec is None:
            known = self.names()
            if is_import_path(name):  # allow_code is off: a data file named code
                raise ConfigError(f"{prefix}{self.kind} {name!r} is an import path; a data file may name only "
                                  f"registered {self.kind}s ({', '.join(known)}) or installed entry points "
                                  f"(group {self.group!r}). Give module:attr on the command line instead")
            raise ConfigError(f"{prefix}unknown {self.kind} {name!r}{closest(name, known)}; known: "
                              f"{', '.join(known)}" + "".join(f", {p}:NAME" for p in self.namespaces)
                              + (", or module:attr" if allow_code else ""))
        mod_name, _, attr = spec.partition(":")
        try:
            return getattr(_import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{prefix}{name!r}: cannot import {spec} ({exc})") from None

    def build(self, name: str, *args, allow_code: bool = True, where: str = "", **kwargs) -> Any:
        """Call what ``name`` stands for (a class or a factory) with the given arguments."""
        obj: Callable[..., Any] = self.resolve(name, allow_code=allow_code, where=where)
        return obj(*args, **kwargs)
