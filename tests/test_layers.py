"""The wings' import rules (docs/architecture.md), checked on the source: nothing imports what stands above it,
and no module is part of an import circle. Imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "cirbench"

# The ground floor: each module may import only the ground modules named here (and nothing above).
GROUND = {
    "errors": set(),
    "files": {"errors"},
    "config": {"errors"},
    "registry": {"config", "errors"},
    "jpeg": {"errors"},
    "images": {"errors"},
    "records": {"errors", "files"},  # the record contract: evaluation writes it, reports read it
    "distributed": {"errors"},
    "progress": set(),
}
WINGS = ("metrics", "archs", "zoo", "eval", "report", "train", "api", "cli")
# wing -> wings it must never import. report/ reads records alone: never the zoo, the networks or evaluation.
NEVER = {
    "ground": set(WINGS),
    "metrics": {"archs", "zoo", "eval", "report", "train", "api", "cli"},
    "archs": {"zoo", "eval", "report", "train", "api", "cli"},
    "zoo": {"eval", "report", "train", "api", "cli"},
    "eval": {"report", "train", "api", "cli"},
    "report": {"archs", "zoo", "eval", "train", "api", "cli"},
    "train": {"report", "api", "cli"},
    "api": {"cli"},
}


def _name(path: Path) -> str:
    parts = ["cirbench", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _wing(mod: str) -> str:
    head = mod.split(".")[1] if "." in mod else ""
    return "ground" if head in GROUND else "top" if head in ("", "__main__") else head


def _imports(path: Path, mod: str) -> set[str]:
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "cirbench"}
        elif isinstance(node, ast.ImportFrom):
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            if target.split(".")[0] == "cirbench":
                out |= {target} | {f"{target}.{a.name}" for a in node.names}  # `from . import x` names a module
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_name(f): f for f in PKG.rglob("*.py")}
    return {m: {t for t in _imports(f, m) if t in files and t != m} for m, f in files.items()}


def test_every_module_belongs_to_a_known_wing(graph):
    unknown = {m for m in graph if _wing(m) not in (*NEVER, "cli", "top")}
    assert not unknown, f"modules outside the wings of docs/architecture.md: {sorted(unknown)}"


def test_nothing_imports_against_the_wings(graph):
    bad = []
    for m, targets in graph.items():
        for t in targets:
            if _wing(t) in NEVER.get(_wing(m), ()):
                bad.append(f"{m} imports {t}")
            if _wing(m) == "ground" and _wing(t) == "ground" and t.split(".")[1] not in GROUND[m.split(".")[1]]:
                bad.append(f"{m} imports {t} (ground floor: {m.split('.')[1]} may import "
                           f"{sorted(GROUND[m.split('.')[1]]) or 'nothing'})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circles(graph):
    def children(m):  # a package importing its own modules (re-exports) is not a circle
        return {t for t in graph[m] if not t.startswith(m + ".")}

    state: dict[str, int] = {}  # 1 on the stack, 2 done
    circles = []

    def visit(m, stack):
        state[m] = 1
        for t in children(m):
            if state.get(t) == 1:
                circles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "\n".join(circles)


def test_the_check_sees_a_violation(tmp_path):
    """The rules bite: a report module that imported the zoo inside a function would be flagged."""
    bad = tmp_path / "render.py"
    bad.write_text("def f():\n    from ..zoo import create_model\n")
    targets = _imports(bad, "cirbench.report.render")
    assert "cirbench.zoo" in targets and _wing("cirbench.zoo") in NEVER[_wing("cirbench.report.render")]
