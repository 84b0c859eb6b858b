"""Each image installs Cove with one extra (`[gateway]`, `[api]`, `[worker]`): every
third-party module a service's code imports must come with that extra (directly or through a
dependency), or the image fails at start-up with ModuleNotFoundError. The dev install has
everything, so only this test notices a missing one."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

# Modules our code imports inside try/except, so their absence is handled.
OPTIONAL = {"uvloop"}


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def _wanted(spec: str, extras: set[str]) -> Requirement | None:
    """The requirement, if it applies on this platform with these extras of its owner."""
    req = Requirement(spec)
    if req.marker is None:
        return req
    if any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
        return req
    return None


def _installed_with(specs: list[str]) -> set[str]:
    """Every distribution the requirements `specs` install, following dependencies (and the
    extras asked for) as they are installed here."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [req for spec in specs if (req := _wanted(spec, set())) is not None]
    while todo:
        req = todo.pop()
        key = (_canonical(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(dep for spec in requires if (dep := _wanted(spec, set(req.extras))))
    return names


def _declared(extra: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _installed_with(
        list(project["dependencies"]) + list(project["optional-dependencies"][extra])
    )


def _third_party_imports(where: Path) -> set[str]:
    found: set[str] = set()
    for path in where.rglob("*.py") if where.is_dir() else [where]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            # Only module-level imports are needed at start-up; imports inside functions
            # are lazy (CLI commands, benchmarks) and checked where they run.
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if node.col_offset != 0:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("cove", "__future__"):
                    continue
                found.add(top)
    return found


def _distributions_of(module: str) -> set[str]:
    return {_canonical(d) for d in metadata.packages_distributions().get(module, [])}


@pytest.mark.parametrize(
    ("extra", "folders"),
    [
        ("gateway", ["gateway/cove/gateway"]),
        # The policy dry run imports the gateway's scanner and path exclusions.
        (
            "api",
            [
                "platform/cove/platform/api",
                "platform/cove/platform/policies",
                "gateway/cove/gateway/policy",
                "gateway/cove/gateway/policies.py",
            ],
        ),
    ],
)
def test_every_module_level_import_comes_with_the_extra(extra: str, folders: list[str]) -> None:
    declared = _declared(extra)
    missing: dict[str, set[str]] = {}
    for folder in folders:
        for module in _third_party_imports(ROOT / folder) - OPTIONAL:
            dists = _distributions_of(module)
            assert dists, f"{module} is imported but not installed"
            if not dists & declared:
                missing[module] = dists
    assert not missing, f"not installed by cove[{extra}]: {missing}"
