"""Configuration is data: TOML files (protocols, model cards, training configs) read into dataclasses and
validated on load by the one validator, :func:`from_table`.

A dataclass field without a default is a required key; its annotation is the accepted type (``str``,
``int``, ``float`` (an integer is accepted), ``bool``, ``list[T]``, ``dict``, ``Literal[...]``, unions such
as ``str | list[str]``, or another dataclass for a sub-table). Fields whose metadata says ``internal`` are
not keys. Every error is a :class:`~cirbench.errors.ConfigError` naming the file, the table and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["ConfigError", "load_toml", "from_table", "find_tomls", "closest"]


def closest(name: str, choices) -> str:
    """' (did you mean X?)' for the closest known name, or ''."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def load_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file; a missing file or bad syntax is a ConfigError naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML file; name the .toml file itself") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied; make the file readable") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
          dict: "a table"}


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return "a list" + ("" if item is Any else f" of {_describe(item).removeprefix('a ').removeprefix('an ')}s")
    if dataclasses.is_dataclass(tp):
        return "a table"
    return _NAMES.get(origin or tp, getattr(tp, "__name__", str(tp)))


class _Mismatch(Exception):
    pass


def _convert(value, tp, where: str, key: str):
    """``value`` checked against annotation ``tp`` (ints widened to float where a float is asked)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return from_table(tp, value, where=where, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, where, key)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool) != any(
                isinstance(a, bool) for a in typing.get_args(tp)):
            raise _Mismatch
        return value
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise _Mismatch
        (item,) = typing.get_args(tp) or (Any,)
        if dataclasses.is_dataclass(item):  # a list of tables ([[key]]), each named by its position
            return [from_table(item, v, where=f"{where} [{key} #{i}]") for i, v in enumerate(value, 1)]
        return [_convert(v, item, where, key) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if tp is type(None):
        raise _Mismatch
    if isinstance(value, bool) != (tp is bool):  # bool is an int subclass: keep them apart
        raise _Mismatch
    if tp is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, tp):
        raise _Mismatch
    return value


def _fail(where: str, key: str, tp, value):
    raise ConfigError(f"{where}: key {key!r} must be {_describe(tp)}, got {value!r}")


def from_table(cls, table: dict, *, where: str, prefix: str = ""):
    """Build dataclass ``cls`` from a parsed TOML table; unknown, missing and mistyped keys are errors that
    name ``where`` (the file, and the table) and the dotted key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: {prefix[:-1] or 'the file'} must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in table.items():
        if key not in fields:
            section = f" in [{prefix[:-1]}]" if prefix else ""
            raise ConfigError(f"{where}: unknown key {prefix + key!r}{closest(key, fields)}; "
                              f"allowed{section}: {', '.join(fields)}")
        try:
            kwargs[key] = _convert(value, hints[key], where, prefix + key)
        except _Mismatch:
            _fail(where, prefix + key, hints[key], value)
    for name, f in fields.items():
        if name in kwargs:
            continue
        if dataclasses.is_dataclass(hints[name]):  # an absent sub-table still needs its required keys
            kwargs[name] = from_table(hints[name], {}, where=where, prefix=prefix + name + ".")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {prefix + name!r}")
    return cls(**kwargs)


def find_tomls(env_var: str, packaged: str) -> dict[str, Path]:
    """TOML files by stem: the folders in ``$env_var`` (os.pathsep-separated) first, then the packaged
    folder ``cirbench/data/<packaged>``; the first file of a name wins."""
    dirs = [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    dirs.append(Path(str(resources.files("cirbench") / "data" / packaged)))
    found: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found
