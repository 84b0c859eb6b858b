"""`cove up` as a user runs it: the whole stack starts, serves, restarts and stops cleanly.

The model instance is the demo BU's deployment, run by the worker's local runtime driver."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from cove.platform.local.procs import free_port, pid_alive

pytestmark = [pytest.mark.vllm, pytest.mark.stack]

COVE = [sys.executable, "-m", "cove.platform.cli"]


@pytest.fixture
def home() -> Iterator[Path]:
    # The local Postgres runs as `postgres` when we are root: the directory must be reachable.
    path = Path(tempfile.mkdtemp(prefix="cove-stack-"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run([*COVE, "down"], env=_env(path, 0, 0), check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _env(home: Path, gateway_port: int, platform_port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COVE_") or k in {"COVE_CACHE_DIR", "COVE_VLLM_PYTHON"}
    }
    env.update(
        COVE_HOME=str(home / "state"),
        COVE_GATEWAY_PORT=str(gateway_port),
        COVE_PLATFORM_PORT=str(platform_port),
        **extra,
    )
    return env


def _start(home: Path, gw: int, pf: int) -> tuple[subprocess.Popen[str], str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [*COVE, "up"],
        env=_env(home, gw, pf),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=home,
    )
    assert proc.stdout is not None
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("Ctrl-C"):
            break
    text = "".join(output)
    assert "Cove is up" in text, text
    return proc, text, time.monotonic() - started


def _key(text: str) -> str:
    match = re.search(r"Demo API key\s+(cove_\S+)", text)
    assert match, text
    return match.group(1)


def test_up_serves_completions_then_stops_and_restarts_cleanly(home: Path) -> None:
    gw, pf = free_port(), free_port()
    proc, text, first = _start(home, gw, pf)
    run_file = home / "state" / "run" / "stack.json"
    state = json.loads(run_file.read_text())
    pids = list(state["processes"].values())
    assert set(state["processes"]) == {"redis", "platform", "gateway", "worker", "beat"}
    # vLLM is the demo deployment's instance, started by the worker's local runtime driver.
    (record,) = (home / "state" / "runtime").glob("*/instance.json")
    instance = json.loads(record.read_text())
    assert pid_alive(instance["pid"])
    pids.append(instance["pid"])
    assert f"vLLM at http://127.0.0.1:{instance['port']}" in text
    key = _key(text)
    assert f"http://127.0.0.1:{gw}/v1" in text
    assert "curl" in text
    assert "OPENAI_BASE_URL" in text

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gw}/v1", api_key=key, max_retries=0)
    completion = client.completions.create(model="cove-tiny", prompt="def f(x):", max_tokens=4)
    assert completion.choices[0].text is not None
    import httpx

    bus = httpx.get(
        f"http://127.0.0.1:{pf}/api/v1/bus",
        headers={
            "Authorization": f"Bearer {(home / 'state' / 'admin-api-key').read_text().strip()}"
        },
    )
    assert [b["slug"] for b in bus.json()] == ["demo"]
    demo = bus.json()[0]["id"]
    (deployment,) = httpx.get(
        f"http://127.0.0.1:{pf}/api/v1/bus/{demo}/deployments",
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert (deployment["runtime"], deployment["status"]) == ("local", "ready")
    assert deployment["endpoint_url"] == f"http://127.0.0.1:{instance['port']}"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0
    assert not run_file.exists()
    assert not any(pid_alive(pid) for pid in pids)
    assert not record.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", gw)) != 0

    # Warm restart keeps the data and the demo key; `cove down` stops it from outside.
    proc2, text2, second = _start(home, gw, pf)
    assert _key(text2) == key
    (again,) = (home / "state" / "runtime").glob("*/instance.json")
    restarted = json.loads(again.read_text())
    assert restarted["pid"] != instance["pid"]
    print(f"\nfirst start {first:.1f} s, warm restart {second:.1f} s")
    down = subprocess.run(
        [*COVE, "down"], env=_env(home, gw, pf), capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 0, down.stderr
    assert proc2.wait(timeout=60) == 0
    assert not pid_alive(restarted["pid"])


def test_a_model_path_that_is_not_a_model_directory_fails_clearly(home: Path) -> None:
    bogus = home / "not-a-model"
    bogus.mkdir()
    result = subprocess.run(
        [*COVE, "up"],
        env=_env(home, free_port(), free_port(), COVE_MODEL=str(bogus)),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=home,
    )
    assert result.returncode == 1
    assert "is not a model directory" in result.stderr
    assert not (home / "state" / "run" / "stack.json").exists()
    # Nothing is left running: Postgres was stopped again.
    pg = subprocess.run(
        ["pgrep", "-f", str(home / "state" / "pg")], capture_output=True, text=True, check=False
    )
    assert pg.stdout.strip() == ""


def test_a_busy_gateway_port_fails_before_anything_starts(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*COVE, "up"],
            env=_env(home, port, free_port()),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=home,
        )
    assert result.returncode == 1
    assert f"Port {port} (the gateway) is already in use" in result.stderr
    assert "COVE_GATEWAY_PORT" in result.stderr


def test_a_database_url_that_does_not_answer_fails_clearly(home: Path) -> None:
    dead = f"postgresql://cove@127.0.0.1:{free_port()}/cove"
    env = _env(home, free_port(), free_port(), COVE_DATABASE_URL=dead)
    result = subprocess.run(
        [*COVE, "up"], env=env, capture_output=True, text=True, timeout=60, cwd=home
    )
    assert result.returncode == 1
    assert "COVE_DATABASE_URL does not answer" in result.stderr
