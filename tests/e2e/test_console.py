"""The admin console (web/): its generated API client is current, it builds, its Vitest suite
passes, and its Playwright suite passes in Debian's Chromium against a real local stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
# `npm run test:e2e` exits with this when Chromium is missing and cannot be installed.
E2E_SKIPPED = 77


def _npm(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COVE_PYTHON": sys.executable, "CI": os.environ.get("CI", "true")}
    return subprocess.run(
        ["npm", *args],
        cwd=WEB,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{what} failed (exit {result.returncode}):\n{output[-20000:]}"
    return output


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed; the console needs Node 20 and npm (see web/README.md)")
    modules = WEB / "node_modules"
    if not (modules / ".package-lock.json").exists():
        _ok(_npm("ci", "--no-audit", "--no-fund", timeout=900), "npm ci")
    return modules


@pytest.mark.timeout(300)
def test_generated_api_client_matches_the_platform_openapi(node_modules: Path) -> None:
    _ok(_npm("run", "check:client", timeout=240), "npm run check:client")


@pytest.mark.vllm
@pytest.mark.stack
@pytest.mark.timeout(2400)
def test_console_builds_passes_vitest_and_playwright_on_the_local_stack(
    node_modules: Path,
) -> None:
    _ok(_npm("run", "build", timeout=600), "npm run build")
    assert (WEB / "dist" / "index.html").is_file()
    unit = _ok(_npm("run", "test", timeout=600), "npm run test (vitest)")
    print(unit[-2000:])
    e2e = _npm("run", "test:e2e", timeout=2100)
    output = e2e.stdout + e2e.stderr
    if e2e.returncode == E2E_SKIPPED:
        pytest.skip(output.strip().splitlines()[-1] if output.strip() else "Chromium unavailable")
    assert e2e.returncode == 0, f"npm run test:e2e failed:\n{output[-30000:]}"
    print(output[-4000:])
    screenshots = sorted(p.name for p in (WEB / "test-artifacts").glob("*.png"))
    assert screenshots, "the Playwright suite saved no screenshots"
