"""The repository layout promised in DESIGN.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("platform", "tenants", "gateway", "finetune")


def test_stdlib_platform_module_is_not_shadowed_from_the_repo_root() -> None:
    # `-c` puts the current directory first on sys.path, as pytest and `python -m` do.
    result = subprocess.run(
        [sys.executable, "-c", "import platform; print(platform.system())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"Linux", "Darwin", "Windows"}


def test_top_level_folders_are_not_packages_and_cove_is_a_namespace() -> None:
    for name in (*SOURCE_ROOTS, "tests", "helm", "terraform", "web"):
        assert (ROOT / name).is_dir(), f"missing top-level folder {name}/"
    for name in SOURCE_ROOTS:
        assert not (ROOT / name / "__init__.py").exists(), f"{name}/__init__.py shadows imports"
        assert not (ROOT / name / "cove" / "__init__.py").exists()
        assert (ROOT / name / "cove" / name).is_dir()


def test_every_component_imports_under_cove() -> None:
    code = (
        "import cove.platform.core.settings, cove.tenants.principal, cove.gateway.app, "
        "cove.finetune.tinymodel, cove.platform.api.app; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr
