"""docs/architecture.md is the map of the code: it must describe every part, and the import
directions it forbids must not occur in the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "incidentbook"
MAP = ROOT / "docs" / "architecture.md"

# part -> parts it must never import (see "Rules that hold" in docs/architecture.md)
FORBIDDEN: dict[str, set[str]] = {
    "telemetry": {"agent", "kernel_ext", "notebook", "runner", "intake", "incidents",
                  "postmortems", "evals", "scenarios", "cli"},
    "analysis": {"agent", "kernel_ext", "notebook", "runner", "intake", "incidents",
                 "postmortems", "evals", "scenarios", "telemetry", "cli"},
    "agent": {"kernel_ext", "notebook", "intake", "evals", "scenarios", "cli", "runner"},
    "incidents": {"kernel_ext", "notebook", "agent", "runner", "cli", "intake"},
    "actions": {"kernel_ext", "notebook", "agent", "cli", "intake"},
    "postmortems": {"kernel_ext", "cli", "scenarios"},
    "runner": {"kernel_ext", "cli", "scenarios"},
    "notebook": {"kernel_ext", "cli"},
}
# nobody imports these (except the named importers)
TOP_ONLY = {"cli": set(), "kernel_ext": {"__init__"}}

# Existing exceptions, each named in docs/architecture.md; this list may only shrink.
KNOWN_EXCEPTIONS = {
    ("agent/claude.py", "runner"),
    ("notebook.py", "kernel_ext"),
    ("incidents/store.py", "intake"),
    ("runner/catalogue.py", "scenarios"),
    ("postmortems/examples.py", "scenarios"),
}


def _parts() -> list[str]:
    names = []
    for p in sorted(PKG.iterdir()):
        if p.name.startswith(("_", ".")) or p.name == "__pycache__":
            continue
        if p.is_dir() and (p / "__init__.py").exists():
            names.append(p.name)
        elif p.suffix == ".py":
            names.append(p.name)
        elif p.is_dir() and p.name == "migrations":
            names.append(p.name)
    return names


def _imports() -> list[tuple[str, str, str]]:
    """(file relative to the package, importing part, imported part) for every import."""
    out = []
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).as_posix()
        part = rel.split("/")[0].removesuffix(".py")
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = ([f"incidentbook.{a.name}" for a in node.names]
                        if node.module == "incidentbook" else [node.module])
            for m in mods:
                bits = m.split(".")
                if bits[0] == "incidentbook" and len(bits) > 1 and bits[1] != part:
                    out.append((rel, part, bits[1]))
    return out


def test_every_part_is_on_the_map():
    text = MAP.read_text(encoding="utf-8")
    described = set(re.findall(r"^\| `([^`]+)`", text, flags=re.M))
    described |= {n for cell in re.findall(r"^\| ([^|]+) \|", text, flags=re.M)
                  for n in re.findall(r"`([^`]+)`", cell)}
    missing = [p for p in _parts()
               if p not in described and p.rstrip("/") + "/" not in described]
    assert not missing, f"describe these in docs/architecture.md: {missing}"


def test_no_forbidden_import_direction():
    bad = []
    for rel, part, target in _imports():
        forbidden = FORBIDDEN.get(part, set())
        only = TOP_ONLY.get(target)
        if target in forbidden or (only is not None and part not in only):
            if (rel, target) not in KNOWN_EXCEPTIONS:
                bad.append(f"incidentbook/{rel} imports incidentbook.{target}")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(sorted(set(bad)))


@pytest.mark.parametrize("rel,target", sorted(KNOWN_EXCEPTIONS))
def test_known_exceptions_are_still_real(rel, target):
    """An exception that no longer occurs must be taken off the list (it may only shrink)."""
    assert (rel, target) in {(r, t) for r, _, t in _imports()}, (
        f"{rel} no longer imports {target}: remove it from KNOWN_EXCEPTIONS")
