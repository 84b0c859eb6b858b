"""`cove up`: the whole stack on one machine, started in order, stopped cleanly.

Postgres (a project-local cluster unless COVE_DATABASE_URL is given), migrations, Redis, the
platform API, the gateway, a Celery worker and beat. The model instance is the demo BU's
deployment: the worker's local runtime driver starts its vLLM CPU process, exactly as it runs
any deployment created through the API, and the stack waits until the reconciler reports it
ready. The supervisor records what it started in `<state>/run/stack.json`, so `cove down` (or
the next `cove up` after a crash) can stop it, and the instances under `<state>/runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pydantic import Field

from cove.platform.core import migrate
from cove.platform.core.db import SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.local.postgres import INSTALL_HINT, LocalPostgres
from cove.platform.local.procs import (
    StackError,
    free_port,
    http_ok,
    pid_alive,
    port_in_use,
    spawn,
    stop_process_group,
    wait_until,
)
from cove.platform.local.seed import SeedResult, seed_demo

VLLM_VERSION = "0.32.0"
RECONCILE_TASK = "deployment.reconcile"
# uvicorn closes idle kept-alive connections after 5 s by default; clients that reuse a
# connection just then see it closed under them. Outlast the usual client and proxy idle timeouts.
KEEP_ALIVE_SECONDS = 75


def default_cache_dir() -> Path:
    return Path(os.environ.get("COVE_CACHE_DIR", Path.home() / ".cache" / "cove"))


class StackSettings(CoveSettings):
    home: Path = Path(".cove")
    bind_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    platform_port: int = Field(default=8000, ge=1, le=65535)
    # A local model directory to serve; unset means the tiny model built by `cove model build-tiny`.
    model: Path | None = None
    cache_dir: Path = Field(default_factory=default_cache_dir)
    vllm_python: Path | None = None
    vllm_start_timeout: float = 300.0
    # Set when the user gave their own database / Redis (COVE_DATABASE_URL / COVE_REDIS_URL).
    external_database: bool = False
    external_redis: bool = False


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_file: Path


@dataclass
class Stack:
    settings: StackSettings
    echo: Callable[[str], None] = print
    children: list[Child] = field(default_factory=list)
    postgres: LocalPostgres | None = None
    urls: dict[str, str] = field(default_factory=dict)
    seed: SeedResult | None = None
    _stopping: bool = False

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    @property
    def run_file(self) -> Path:
        return self.home / "run" / "stack.json"

    @property
    def runtime_dir(self) -> Path:
        """The local runtime's state: one directory per model instance the worker runs."""
        return self.home / "runtime"

    # ---- start -------------------------------------------------------------------------

    def up(self) -> None:
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        clear_stale_run(self.home, self.echo)
        self._write_run_file()
        try:
            self._check_ports()
            secret = self._secret_key()
            database_url = self._start_postgres()
            self.echo("cove: applying migrations")
            migrate.upgrade(database_url)
            redis_url = self._start_redis()
            model_dir, meta = self._model()
            vllm_python = self._vllm_python()
            env = {
                **os.environ,
                "COVE_DATABASE_URL": database_url,
                "COVE_REDIS_URL": redis_url,
                "COVE_SECRET_KEY": secret,
                "COVE_EVENT_SPOOL_DIR": str(self.home / "spool" / "gateway"),
                # The worker's local runtime driver runs the model instances.
                "COVE_RUNTIME_STATE_DIR": str(self.runtime_dir),
                "COVE_VLLM_PYTHON": str(vllm_python),
                "COVE_VLLM_START_TIMEOUT": str(self.settings.vllm_start_timeout),
                # Look again at a starting instance every second, so it is reported ready soon.
                "COVE_REQUEUE_SECONDS": os.environ.get("COVE_REQUEUE_SECONDS", "1"),
                "COVE_VLLM_CPU_KVCACHE_GIB": os.environ.get(
                    "COVE_VLLM_CPU_KVCACHE_GIB", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
                ),
            }
            console = console_dir()
            if console is not None:
                env["COVE_CONSOLE_DIR"] = str(console)
            env.pop("COVE_APP_DATABASE_URL", None)
            child_settings = CoveSettings(
                database_url=database_url,
                redis_url=redis_url,
                secret_key=secret,
            )
            self.echo("cove: seeding the demo business unit")
            self.seed = asyncio.run(
                seed_demo(
                    child_settings,
                    state_dir=self.home,
                    model_name=meta["name"],
                    model_location=str(model_dir),
                    fim_tokens=meta.get("fim_tokens"),
                    context_length=meta.get("context_length"),
                )
            )
            self._write_env_file(env)
            py = sys.executable
            host = self.settings.bind_host
            # The worker first: its local runtime starts vLLM while the services come up.
            worker = self._spawn(
                "worker",
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "cove.platform.worker",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    "1",
                    "--hostname",
                    "cove@%h",
                ],
                env,
            )
            self._reconcile_now(child_settings)
            platform = self._spawn(
                "platform",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "cove.platform.api.app:main_app",
                    "--host",
                    host,
                    "--port",
                    str(self.settings.platform_port),
                    "--timeout-keep-alive",
                    str(KEEP_ALIVE_SECONDS),
                ],
                env,
            )
            gateway = self._spawn(
                "gateway",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "cove.gateway.app:main_app",
                    "--host",
                    host,
                    "--port",
                    str(self.settings.gateway_port),
                    "--timeout-keep-alive",
                    str(KEEP_ALIVE_SECONDS),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                ],
                env,
            )
            base = f"http://127.0.0.1:{self.settings.platform_port}"
            gw = f"http://127.0.0.1:{self.settings.gateway_port}"
            self._wait_http(platform, f"{base}/readyz", 60)
            self._wait_http(gateway, f"{gw}/healthz", 60)
            beat = self._spawn(
                "beat",
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "cove.platform.worker",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(self.home / "run" / "celerybeat-schedule"),
                ],
                env,
            )
            self._wait_log(worker, "ready.", 60)
            self._wait_log(beat, "beat: Starting", 30)
            self.echo(f"cove: waiting for vLLM ({meta['name']}) to serve")
            vllm_url = self._wait_for_instance(child_settings, worker)
            self.urls = {"console": base + "/", "platform": base, "gateway": gw, "vllm": vllm_url}
            self._write_run_file()
        except BaseException:
            self.down()
            raise
        self.echo(self.summary(time.monotonic() - started))

    def _check_ports(self) -> None:
        for name, port in (
            ("gateway", self.settings.gateway_port),
            ("platform API", self.settings.platform_port),
        ):
            if port_in_use(port):
                variable = "COVE_GATEWAY_PORT" if name == "gateway" else "COVE_PLATFORM_PORT"
                raise StackError(
                    f"Port {port} (the {name}) is already in use. Stop whatever listens there "
                    f"(`ss -ltnp 'sport = :{port}'` shows it) or choose another port with "
                    f"{variable}=<port>."
                )

    def _secret_key(self) -> str:
        if "COVE_SECRET_KEY" in os.environ:
            return self.settings.secret_key.get_secret_value()
        path = self.home / "secret-key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def _start_postgres(self) -> str:
        if self.settings.external_database:
            url = self.settings.database_url
            self.echo("cove: using the database in COVE_DATABASE_URL")
            try:
                with psycopg.connect(url, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                raise StackError(
                    f"COVE_DATABASE_URL does not answer ({str(exc).strip().splitlines()[0]}). "
                    "Check the host, port and credentials, or unset it to use a local cluster."
                ) from exc
            return url
        self.postgres = LocalPostgres(self.home / "pg" / "data")
        self.echo(f"cove: starting PostgreSQL in {self.postgres.data_dir}")
        self.postgres.ensure_initialised()
        port = self.postgres.start()
        self._write_run_file()
        return self.postgres.ensure_database(port)

    def _start_redis(self) -> str:
        if self.settings.external_redis:
            return self.settings.redis_url
        binary = _which("redis-server")
        if binary is None:
            raise StackError(
                "redis-server was not found. Install it (sudo apt-get install -y redis-server) "
                "or set COVE_REDIS_URL to an existing Redis."
            )
        port = free_port()
        data = self.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        child = self._spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ],
            dict(os.environ),
        )
        wait_until(
            lambda: _redis_ping(port),
            timeout=20,
            what="Redis",
            alive=lambda: child.popen.poll() is None,
            log_file=child.log_file,
        )
        return f"redis://127.0.0.1:{port}/0"

    def _model(self) -> tuple[Path, dict[str, Any]]:
        from cove.finetune.tinymodel import (
            build_tiny_model,
            is_current_tiny_model,
            is_model_dir,
            read_model_metadata,
        )

        if self.settings.model is not None:
            model_dir = self.settings.model.expanduser().resolve()
            problem = is_model_dir(model_dir)
            if problem is not None:
                raise StackError(
                    f"COVE_MODEL={self.settings.model} is not a model directory: {problem}. "
                    "Point it at a directory with config.json, weights and tokenizer files, "
                    "or unset it to use the built-in tiny model."
                )
            return model_dir, read_model_metadata(model_dir)
        model_dir = tiny_model_dir(self.settings.cache_dir)
        if not is_current_tiny_model(model_dir):
            self.echo(f"cove: building the tiny model in {model_dir} (once)")
            build_tiny_model(model_dir)
        return model_dir, read_model_metadata(model_dir)

    def _vllm_python(self) -> Path:
        python = self.settings.vllm_python or (
            self.settings.cache_dir / f"venv-vllm-{VLLM_VERSION}" / "bin" / "python"
        )
        if not Path(python).exists():
            raise StackError(
                f"The vLLM environment is missing ({python}). Create it with "
                "scripts/ensure-vllm.sh (`make up` does this), or set COVE_VLLM_PYTHON."
            )
        return Path(python).absolute()

    def _reconcile_now(self, settings: CoveSettings) -> None:
        """Queue the demo deployment's reconcile for the worker (the periodic sweep would too,
        but only after its first interval)."""
        from cove.platform.core.celery_app import create_celery

        assert self.seed is not None
        create_celery(settings).send_task(RECONCILE_TASK, args=[str(self.seed.deployment_id)])

    def _wait_for_instance(self, settings: CoveSettings, worker: Child) -> str:
        """Wait until the reconciler has seen the demo deployment's vLLM serve; returns its
        URL."""
        from cove.platform.deployments import repository as deployment_repository

        assert self.seed is not None
        deployment_id = self.seed.deployment_id
        log_file = self.runtime_dir / str(deployment_id) / "vllm.log"
        db = SyncDatabase(settings)
        db.open()
        found: dict[str, Any] = {}

        def serving() -> bool:
            with db.platform() as conn:
                state = deployment_repository.observed_state(conn, deployment_id)
            if state is None:
                raise StackError("the demo deployment disappeared while the stack started")
            found.update(status=state[0], detail=state[1], url=state[2])
            return state[0] == "ready"

        try:
            wait_until(
                serving,
                timeout=self.settings.vllm_start_timeout,
                what="vLLM (the demo deployment)",
                alive=lambda: worker.popen.poll() is None,
                log_file=log_file if log_file.exists() else worker.log_file,
            )
        except StackError as exc:
            detail = found.get("detail") or "no detail yet"
            raise StackError(f"{exc}\nThe deployment reports: {detail}") from None
        finally:
            db.close()
        return str(found["url"])

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        log_file = self.home / "logs" / f"{name}.log"
        child = Child(name, spawn(argv, env=env, log_file=log_file), log_file)
        self.children.append(child)
        self._write_run_file()
        return child

    def _wait_http(self, child: Child, url: str, timeout: float) -> None:
        wait_until(
            lambda: http_ok(url),
            timeout=timeout,
            what=child.name,
            alive=lambda: child.popen.poll() is None,
            log_file=child.log_file,
        )

    def _wait_log(self, child: Child, needle: str, timeout: float) -> None:
        def seen() -> bool:
            return needle in child.log_file.read_text(errors="replace")

        wait_until(
            seen,
            timeout=timeout,
            what=child.name,
            alive=lambda: child.popen.poll() is None,
            log_file=child.log_file,
        )

    def _write_run_file(self) -> None:
        self.run_file.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor": os.getpid(),
            "processes": {c.name: c.popen.pid for c in self.children},
            "postgres_data": str(self.postgres.data_dir) if self.postgres else None,
            "runtime_dir": str(self.runtime_dir),
            "urls": self.urls,
        }
        self.run_file.write_text(json.dumps(state, indent=2))

    def _write_env_file(self, env: dict[str, str]) -> None:
        """Settings for CLI commands run beside the stack (`cove bu create`, ...)."""
        keys = ("COVE_DATABASE_URL", "COVE_REDIS_URL", "COVE_SECRET_KEY")
        path = self.home / "env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{k}={env[k]}\n" for k in keys)

    # ---- run and stop --------------------------------------------------------------------

    def wait(self) -> None:
        """Block until Ctrl-C / SIGTERM, reporting children that die meanwhile."""
        stop = {"now": False}

        def handler(signum: int, _frame: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        reported: set[str] = set()
        while not stop["now"]:
            for child in self.children:
                if child.popen.poll() is not None and child.name not in reported:
                    reported.add(child.name)
                    self.echo(
                        f"cove: {child.name} exited with code {child.popen.returncode}; "
                        f"see {child.log_file}"
                    )
            time.sleep(0.5)
        self.echo("cove: stopping")
        self.down()

    def down(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for child in reversed(self.children):
            stop_process_group(child.popen.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=5)
        stop_instances(self.runtime_dir)
        if self.postgres is not None:
            self.postgres.stop()
        with contextlib.suppress(FileNotFoundError):
            self.run_file.unlink()
        self.echo("cove: stopped")

    def summary(self, seconds: float) -> str:
        assert self.seed is not None
        gw = self.urls["gateway"]
        key = self.seed.demo_key
        note = "new" if self.seed.demo_key_is_new else f"kept in {self.home / 'demo-api-key'}"
        return f"""
Cove is up ({seconds:.0f} s).

  Console       {self.urls["console"]}
  Platform API  {self.urls["platform"]}/docs
  Gateway       {gw}/v1
  Model         {self.seed.model_name} (vLLM at {self.urls["vllm"]})
  Demo API key  {key}   ({note}; BU 'demo')
  Admin API key in {self.home / "admin-api-key"}
  Logs          {self.home / "logs"}

Try it:
  curl -s {gw}/v1/completions -H "Authorization: Bearer {key}" \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "{self.seed.model_name}", "prompt": "def add(a, b):", "max_tokens": 16}}'

OpenAI-compatible IDE client (Continue, JetBrains "custom OpenAI", the openai SDK):
  OPENAI_BASE_URL={gw}/v1
  OPENAI_API_KEY={key}
  model: {self.seed.model_name}

Ctrl-C (or `make down`) stops everything.
"""


def vllm_argv(python: Path, model_dir: Path, name: str, port: int) -> list[str]:
    return [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "1024",
        "--dtype",
        "float32",
        "--enable-lora",
        "--max-lora-rank",
        "8",
        "--max-loras",
        "4",
    ]


def console_dir() -> Path | None:
    """The built console: COVE_CONSOLE_DIR, else web/dist of this checkout when built."""
    given = os.environ.get("COVE_CONSOLE_DIR")
    if given:
        return Path(given)
    built = Path(__file__).resolve().parents[4] / "web" / "dist"
    return built if (built / "index.html").is_file() else None


def tiny_model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / "cove-tiny-seed0"


def clear_stale_run(home: Path, echo: Callable[[str], None]) -> None:
    """Refuse to start twice; clean up after a supervisor that died without stopping."""
    run_file = home / "run" / "stack.json"
    if not run_file.exists():
        return
    try:
        state = json.loads(run_file.read_text())
    except ValueError:
        run_file.unlink()
        return
    supervisor = int(state.get("supervisor") or 0)
    if supervisor and supervisor != os.getpid() and pid_alive(supervisor):
        raise StackError(
            f"Cove is already running (supervisor pid {supervisor}). Stop it with `make down` "
            "first."
        )
    echo("cove: cleaning up after a previous run that did not stop cleanly")
    stop_recorded(state)
    run_file.unlink()


def stop_instances(runtime_dir: Path) -> None:
    """Stop the vLLM processes the worker's local runtime started (they run in sessions of
    their own, so stopping the worker leaves them), and forget them: the next `cove up` starts
    each afresh instead of treating the stop as a crash to back off from."""
    for record in runtime_dir.glob("*/instance.json"):
        with contextlib.suppress(ValueError, KeyError, OSError):
            pid = int(json.loads(record.read_text())["pid"])
            if pid_alive(pid):
                stop_process_group(pid, grace=15)
        record.unlink(missing_ok=True)


def stop_recorded(state: dict[str, Any]) -> None:
    for pid in reversed(list((state.get("processes") or {}).values())):
        if pid_alive(int(pid)):
            stop_process_group(int(pid))
    if state.get("runtime_dir"):
        stop_instances(Path(state["runtime_dir"]))
    data = state.get("postgres_data")
    if data:
        LocalPostgres(Path(data)).stop()


def down(home: Path, echo: Callable[[str], None] = print) -> bool:
    """Stop a running stack from another process. Returns False if none was running."""
    run_file = home.resolve() / "run" / "stack.json"
    if not run_file.exists():
        echo("cove: nothing is running")
        return False
    state = json.loads(run_file.read_text())
    supervisor = int(state.get("supervisor") or 0)
    if supervisor and pid_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and pid_alive(supervisor):
            time.sleep(0.2)
    stop_recorded(state)
    with contextlib.suppress(FileNotFoundError):
        run_file.unlink()
    echo("cove: stopped")
    return True


def _which(name: str) -> str | None:
    from shutil import which

    return which(name)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


__all__ = ["INSTALL_HINT", "Stack", "StackError", "StackSettings", "down"]
