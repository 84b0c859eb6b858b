"""The local runtime: each deployment is a vLLM CPU process on the worker's machine.

State lives in `<state_dir>/<deployment id>/`: `instance.json` (pid, port, the command's
fingerprint, restarts) and `vllm.log`. The process runs in its own session, so it outlives the
worker task that started it; every reconcile looks at it again: a dead process is restarted
(with a growing pause when it keeps dying), a changed spec restarts it with the new command,
and `stop` ends the whole process group (vLLM's engine runs in child processes) and removes
the directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cove.finetune.tinymodel import is_model_dir
from cove.platform.deployments.runtime.base import (
    AdapterFailure,
    AdapterRef,
    Observed,
    Target,
)
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.local.procs import free_port, port_in_use, spawn, stop_process_group
from cove.platform.local.stack import vllm_argv

STATE_FILE = "instance.json"
LOG_FILE = "vllm.log"
DEFAULT_MAX_LORAS = 4
# After this long serving, a crash is treated as a first crash again (no pause).
STABLE_SECONDS = 120.0
MAX_BACKOFF_SECONDS = 300.0
LOG_LIMIT_BYTES = 20 * 1024 * 1024
_API_SERVER_MODULE = b"vllm.entrypoints.openai.api_server"


@dataclass(frozen=True, slots=True)
class LocalState:
    pid: int
    port: int
    fingerprint: str
    generation: int
    started_at: float
    restarts: int = 0
    healthy_since: float | None = None
    exited_at: float | None = None


class LocalDriver:
    def __init__(
        self,
        state_dir: Path,
        python: Path,
        api: VllmApi,
        *,
        host: str = "127.0.0.1",
        start_timeout: float = 600.0,
        cpu_kvcache_gib: int = 1,
    ) -> None:
        self._state_dir = state_dir
        self._python = python
        self._api = api
        self._host = host
        self._start_timeout = start_timeout
        self._kvcache_gib = cpu_kvcache_gib

    # ---- the driver interface -----------------------------------------------------------

    def ensure(self, target: Target) -> Observed:
        problem = self._preflight(target)
        if problem is not None:
            return self._failed(target, problem)
        directory = self.instance_dir(target)
        state = self._read(directory)
        fingerprint = self._fingerprint(target)
        if state is not None and self._alive(state):
            if state.fingerprint == fingerprint:
                return self._observe(target, directory, state)
            # A new spec: the same port, so the gateway's route stays valid.
            stop_process_group(state.pid, grace=15)
            started = self._start(target, directory, state.port, state.restarts)
            return Observed(
                phase="starting",
                endpoint_url=self._url(started.port),
                replicas=1,
                replicas_ready=0,
                detail="restarting with the new spec",
                restarted=True,
            )
        if state is None:
            started = self._start(target, directory, None, 0)
            return Observed(
                phase="starting",
                endpoint_url=self._url(started.port),
                replicas=1,
                replicas_ready=0,
                detail="vLLM is starting",
            )
        return self._after_exit(target, directory, state)

    def status(self, target: Target) -> Observed:
        directory = self.instance_dir(target)
        state = self._read(directory)
        if state is None:
            return Observed("absent", target.endpoint_url, 1, 0, "not started")
        if not self._alive(state):
            return self._failed(target, f"vLLM (pid {state.pid}) is not running", directory)
        return self._observe(target, directory, state)

    def stop(self, target: Target) -> None:
        directory = self.instance_dir(target)
        state = self._read(directory)
        if state is not None:
            stop_process_group(state.pid, grace=15)
        shutil.rmtree(directory, ignore_errors=True)

    def load_adapter(self, target: Target, adapter: AdapterRef) -> None:
        if not (Path(adapter.location) / "adapter_config.json").is_file():
            raise AdapterFailure(
                f"{adapter.location} is not a PEFT adapter directory on this machine"
            )
        self._api.load_adapter(self._live_url(target), adapter.name, adapter.location)

    def unload_adapter(self, target: Target, name: str) -> None:
        state = self._read(self.instance_dir(target))
        if state is None or not self._alive(state):
            return  # nothing runs, so nothing is loaded
        self._api.unload_adapter(self._url(state.port), name)

    # ---- what else the local stack and tests use ----------------------------------------

    def instance_dir(self, target: Target) -> Path:
        return self._state_dir / str(target.deployment_id)

    def pid(self, target: Target) -> int | None:
        state = self._read(self.instance_dir(target))
        return None if state is None else state.pid

    def command(self, target: Target, port: int) -> tuple[list[str], dict[str, str]]:
        """The argv and the environment vLLM is started with."""
        spec = target.spec
        max_len = spec.vllm.max_model_len or target.context_length or 1024
        argv = vllm_argv(self._python, Path(target.model_location), target.served_model_name, port)
        _set(argv, "--host", self._host)
        _set(argv, "--max-model-len", str(max_len))
        if target.mode == "shared":
            _set(argv, "--max-lora-rank", str(target.max_lora_rank))
            _set(argv, "--max-loras", str(spec.vllm.max_loras or DEFAULT_MAX_LORAS))
        else:
            for flag in ("--enable-lora", "--max-lora-rank", "--max-loras"):
                _drop(argv, flag)
        argv.append(
            "--enable-prefix-caching"
            if spec.vllm.enable_prefix_caching
            else "--no-enable-prefix-caching"
        )
        for flag in sorted(spec.vllm.extra_args):
            value = spec.vllm.extra_args[flag]
            if flag == "dtype":
                _set(argv, "--dtype", str(value))
            elif isinstance(value, bool):
                argv.append(f"--{flag}" if value else f"--no-{flag}")
            else:
                argv.append(f"--{flag}={value}")
        # Cove's own settings (database, secret key) are none of vLLM's business.
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
        env.update(
            {
                "VLLM_CPU_KVCACHE_SPACE": str(spec.vllm.cpu_kvcache_space_gib or self._kvcache_gib),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
            }
        )
        if target.mode == "shared":
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        return argv, env

    # ---- internals ------------------------------------------------------------------------

    def _preflight(self, target: Target) -> str | None:
        if not target.model_location.startswith("/"):
            return (
                f"the local runtime needs a model directory on this machine; the catalog has"
                f" '{target.model_location}'"
            )
        problem = is_model_dir(Path(target.model_location))
        if problem is not None:
            return f"model {target.model}: {problem}"
        if not self._python.exists():
            return (
                f"the vLLM environment is missing ({self._python}); create it with"
                " scripts/ensure-vllm.sh or set COVE_VLLM_PYTHON"
            )
        return None

    def _fingerprint(self, target: Target) -> str:
        argv, env = self.command(target, 0)
        relevant = {k: v for k, v in env.items() if k.startswith(("VLLM_", "HF_", "TRANSFORMERS_"))}
        text = json.dumps({"argv": argv, "env": relevant}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _start(
        self, target: Target, directory: Path, port: int | None, restarts: int
    ) -> LocalState:
        directory.mkdir(parents=True, exist_ok=True)
        if port is None or port_in_use(port):
            port = free_port()
        argv, env = self.command(target, port)
        log = directory / LOG_FILE
        if log.exists() and log.stat().st_size > LOG_LIMIT_BYTES:
            log.replace(directory / f"{LOG_FILE}.1")
        with log.open("a") as out:
            out.write(f"\n---- cove: starting vLLM (restart {restarts}) at {time.ctime()}\n")
        proc = spawn(argv, env=env, log_file=log)
        state = LocalState(
            pid=proc.pid,
            port=port,
            fingerprint=self._fingerprint(target),
            generation=target.generation,
            started_at=time.time(),
            restarts=restarts,
        )
        self._write(directory, state)
        return state

    def _after_exit(self, target: Target, directory: Path, state: LocalState) -> Observed:
        """The process is gone: restart it, pausing longer each time it keeps dying."""
        now = time.time()
        # Whatever is left of its process group (vLLM's engine core) goes first.
        stop_process_group(state.pid, grace=5)
        if state.exited_at is None:
            state = replace(state, exited_at=now)
            self._write(directory, state)
        served_long = state.healthy_since is not None and (
            (state.exited_at or now) - state.healthy_since >= STABLE_SECONDS
        )
        restarts = 0 if served_long else state.restarts
        pause = 0.0 if restarts == 0 else min(MAX_BACKOFF_SECONDS, 5.0 * 2**restarts)
        waited = now - (state.exited_at or now)
        tail = _tail(directory / LOG_FILE)
        if waited < pause:
            return Observed(
                phase="failed",
                endpoint_url=self._url(state.port),
                replicas=1,
                replicas_ready=0,
                detail=(
                    f"vLLM exited {restarts + 1} times; next restart in {pause - waited:.0f} s."
                    f" Last log lines:\n{tail}"
                ),
            )
        started = self._start(target, directory, state.port, restarts + 1)
        return Observed(
            phase="starting",
            endpoint_url=self._url(started.port),
            replicas=1,
            replicas_ready=0,
            detail=f"vLLM (pid {state.pid}) exited; restarted (restart {restarts + 1})."
            f" Last log lines:\n{tail}",
            restarted=True,
        )

    def _observe(self, target: Target, directory: Path, state: LocalState) -> Observed:
        url = self._url(state.port)
        if self._api.healthy(url):
            if state.healthy_since is None:
                state = replace(state, healthy_since=time.time())
                self._write(directory, state)
            served = self._api.served(url)
            if served is None or target.served_model_name not in served:
                return Observed(
                    "degraded",
                    url,
                    1,
                    0,
                    f"vLLM answers but does not serve '{target.served_model_name}'",
                    served=served,
                )
            return Observed("ready", url, 1, 1, None, served=served)
        if state.healthy_since is not None:
            return Observed("degraded", url, 1, 0, "vLLM runs but /health does not answer")
        elapsed = time.time() - state.started_at
        if elapsed > self._start_timeout:
            return Observed(
                "failed",
                url,
                1,
                0,
                f"vLLM was not ready after {elapsed:.0f} s. Last log lines:\n"
                f"{_tail(directory / LOG_FILE)}",
            )
        return Observed("starting", url, 1, 0, f"vLLM is loading the model ({elapsed:.0f} s)")

    def _failed(self, target: Target, detail: str, directory: Path | None = None) -> Observed:
        if directory is not None:
            detail = f"{detail}. Last log lines:\n{_tail(directory / LOG_FILE)}"
        return Observed("failed", target.endpoint_url, 1, 0, detail)

    def _live_url(self, target: Target) -> str:
        state = self._read(self.instance_dir(target))
        if state is None or not self._alive(state):
            raise AdapterFailure("the instance is not running")
        return self._url(state.port)

    def _url(self, port: int) -> str:
        return f"http://{self._host}:{port}"

    @staticmethod
    def _read(directory: Path) -> LocalState | None:
        try:
            data = json.loads((directory / STATE_FILE).read_text())
            return LocalState(**data)
        except (OSError, ValueError, TypeError):
            return None

    @staticmethod
    def _write(directory: Path, state: LocalState) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / f".{STATE_FILE}.tmp"
        staging.write_text(json.dumps(asdict(state)))
        staging.replace(directory / STATE_FILE)

    @staticmethod
    def _alive(state: LocalState) -> bool:
        """The recorded vLLM server still runs (not exited, not a zombie, not a reused pid)."""
        with contextlib.suppress(ChildProcessError):
            reaped, _ = os.waitpid(state.pid, os.WNOHANG)
            if reaped == state.pid:
                return False
        try:
            os.kill(state.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False
        proc = Path(f"/proc/{state.pid}")
        if not proc.exists():
            return True  # no procfs to look closer with
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if stat.rpartition(")")[2].split()[0] in {"Z", "X"}:
            return False
        return _API_SERVER_MODULE in cmdline and str(state.port).encode() in cmdline


def _set(argv: list[str], flag: str, value: str) -> None:
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]


def _drop(argv: list[str], flag: str) -> None:
    if flag not in argv:
        return
    index = argv.index(flag)
    takes_value = index + 1 < len(argv) and not argv[index + 1].startswith("--")
    del argv[index : index + (2 if takes_value else 1)]


def _tail(log: Path, lines: int = 8, limit: int = 1500) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16_384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])[-limit:]
