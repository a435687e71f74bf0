"""TOML configuration files (protocols, model cards), validated on load with clear errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .datasets import closest

__all__ = ["ConfigError", "load_toml", "check_table", "find_tomls"]


class ConfigError(ValueError):
    """A configuration file is malformed; the message names the file and the key."""


def load_toml(path: str | Path) -> dict:
    """Parse a TOML file, turning syntax errors into a ConfigError naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "a table"}


def check_table(table: dict, schema: dict[str, Any], *, where: str, required: tuple[str, ...] = ()) -> dict:
    """Check a table's keys and value types against ``schema`` ({key: type or tuple of types}).

    ``where`` names the file (and table) in errors, e.g. ``"protocols/blind.toml [tasks.1]"``.
    """
    for key in table:
        if key not in schema:
            raise ConfigError(f"{where}: unknown key {key!r}{closest(key, schema)}; allowed: {', '.join(schema)}")
    for key in required:
        if key not in table:
            raise ConfigError(f"{where}: missing required key {key!r}")
    for key, value in table.items():
        types = schema[key] if isinstance(schema[key], tuple) else (schema[key],)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise ConfigError(f"{where}: key {key!r} must be {want}, got {value!r}")
    return table


def find_tomls(env_var: str, packaged: str) -> dict[str, Path]:
    """TOML files by stem: the folders in ``$env_var`` (os.pathsep-separated) first, then the packaged
    folder ``cirbench/data/<packaged>``; the first file of a name wins."""
    from importlib import resources

    dirs = [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    dirs.append(Path(str(resources.files("cirbench") / "data" / packaged)))
    found: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found
