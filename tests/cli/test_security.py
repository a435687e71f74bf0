"""Security rules of issue 8, checked on the package's source with ``ast`` (not regex, so comments,
docstrings and strings never count, and aliases such as ``from torch import load`` are caught).

* Every ``torch.load`` passes ``weights_only=True`` (a pickle can carry code; cirbench never runs it).
* No ``pickle.load``/``loads``/``Unpickler`` (nor ``marshal``/``shelve``, ``numpy.load(allow_pickle=True)``,
  ``eval``/``exec``).
* No shell: no ``os.system``/``os.popen``/``subprocess.getoutput``, no ``shell=True``; subprocesses get
  argument lists, so user strings are never parsed by a shell.
* Archive extraction happens in one place, ``cirbench.files.safe_extract``, which checks every member
  (absolute paths, '..', links, devices) and streams each wanted file itself, size-checked; nothing calls
  ``extractall`` or ``shutil.unpack_archive`` (tests/eval/test_fetch.py holds the behavioural tests).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cirbench

PACKAGE = Path(cirbench.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str:
    """``torch.serialization.load`` for the call's function, with import aliases resolved."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> full dotted name, from every import in the module (``import numpy as np``,
    ``from torch import load``)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, _dotted(node.func, aliases)


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def test_the_scan_sees_the_package():
    assert len(SOURCES) > 10
    found = [name for p in SOURCES for _, name in _calls(p) if name == "torch.load"]
    assert found, "the scan should find cirbench's (safe) torch.load calls"


def _unsafe_torch_loads(path: Path) -> list[ast.Call]:
    out = []
    for call, name in _calls(path):
        if name in ("torch.load", "torch.serialization.load"):
            flag = _kw(call, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                out.append(call)
    return out


def test_every_torch_load_is_weights_only():
    bad = [_where(p, c) for p in SOURCES for c in _unsafe_torch_loads(p)]
    assert not bad, f"torch.load without weights_only=True: {bad}"


UNSAFE_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads", "marshal.load",
    "marshal.loads", "shelve.open", "eval", "exec", "os.system", "os.popen", "subprocess.getoutput",
    "subprocess.getstatusoutput", "torch.hub.load", "torch.jit.load",
}


def test_no_unpickling_eval_or_shell_calls():
    bad = [f"{_where(p, c)} {n}" for p in SOURCES for c, n in _calls(p) if n in UNSAFE_CALLS]
    assert not bad, f"unsafe calls in the package: {bad}"


def test_numpy_load_never_allows_pickle():
    bad = []
    for path in SOURCES:
        for call, name in _calls(path):
            flag = _kw(call, "allow_pickle")
            if name == "numpy.load" and flag is not None and not (isinstance(flag, ast.Constant) and not flag.value):
                bad.append(_where(path, call))
    assert not bad


def test_subprocesses_never_use_a_shell():
    bad = []
    for path in SOURCES:
        for call, name in _calls(path):
            if not name.startswith("subprocess."):
                continue
            shell = _kw(call, "shell")
            if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                bad.append(f"{_where(path, call)} shell=")
            if call.args and not isinstance(call.args[0], ast.List | ast.Tuple):
                bad.append(f"{_where(path, call)} command is not an argument list")
    assert not bad, bad


def test_archives_are_extracted_only_by_the_safe_helper():
    """Archives are opened and extracted in one place, ``cirbench.files.safe_extract`` (tested against traversal,
    links and devices in tests/eval/test_fetch.py); no other module touches tarfile, zipfile or extractall."""
    bad = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr in ("extractall", "unpack_archive"):
                names = [node.attr]
            for n in names:
                if n.split(".")[0] in ("tarfile", "zipfile") or n.endswith(("extractall", "unpack_archive")):
                    bad.append(f"{_where(path, node)} {n}")
    assert all(b.startswith("cirbench/files.py:") for b in bad), f"archive handling outside files.safe_extract: {bad}"
    assert any("tarfile" in b for b in bad)  # the helper itself is found: the scan works
    # The helper streams each member itself (size-checked), so nothing calls extractall at all.
    assert not [b for b in bad if b.endswith(("extractall", "unpack_archive"))], bad


@pytest.mark.parametrize("source,unsafe", [
    ("import torch\ntorch.load(p)\n", 1),
    ("import torch\ntorch.load(p, weights_only=False)\n", 1),
    ("import torch\ntorch.load(p, weights_only=flag)\n", 1),
    ("from torch import load as L\nL(p)\n", 1),
    ("import torch as T\nT.serialization.load(p)\n", 1),
    ("import torch\ntorch.load(p, weights_only=True)  # torch.load(p)\n", 0),
    ("'torch.load(p)'\n", 0),
])
def test_the_scan_catches_unsafe_loads(tmp_path, source, unsafe):
    """The scan itself works: aliases are resolved, strings and comments do not count."""
    path = tmp_path / "m.py"
    path.write_text(source)
    assert len(_unsafe_torch_loads(path)) == unsafe
