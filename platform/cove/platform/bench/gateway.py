"""`cove bench gateway`: the latency the gateway adds over calling its upstream directly.

One run sets up everything in a temporary directory and tears it down at the end (also on
Ctrl-C, SIGTERM or failure):

- a throw-away Postgres cluster with Cove's migrations, and a Redis server, both on free ports;
- the fixed-latency responder (`responder.py`), the upstream of every overhead figure;
- one BU seeded through Cove's own repositories: a developer key, a deployment whose
  endpoint is the responder, and an organisation policy with every limit switched on (set far
  above the offered load), the default secret redaction and path exclusions;
- the gateway as in production (`uvicorn --factory cove.gateway.app:main_app --loop uvloop
  --http httptools --no-access-log`, JSON logs, OpenTelemetry middleware), writing its usage
  events to that Postgres;
- LiteLLM's proxy (`litellm[proxy]` in its own venv, `scripts/ensure-litellm.sh`) with its
  default settings and one `openai/<model>` entry pointing at the same responder;
- afterwards, the real vLLM serving the tiny model, for a short smoke run.

Each scenario (open loop at a fixed rate, closed loop at a fixed concurrency; plain and
streaming) runs direct and Cove alternately in `rounds` slices each, so slow drifts in the
machine's background load hit both alike, then LiteLLM's slices. Before every slice the proxies
must be idle (an overloaded proxy keeps working through abandoned requests). "Added" is a
target's percentile minus the direct percentile of the same scenario.

CPU split: by default nothing is pinned and the kernel places every process; each proxy's CPU
time per request is measured from /proc and reported beside its latency, which stays meaningful
when other work shares the machine. With `pin` (two or more CPUs) the gateway and LiteLLM get
the last CPU and everything else (load generator, responder, Redis, Postgres, this process) the
others, so the proxy under test never competes with the load generator for a core: steadier on
a quiet machine, worse on a shared one, where a pinned process cannot move off a CPU that other
work has taken. With more than one gateway worker the gateway may use every CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import UUID

import orjson
import psycopg

from cove.platform.bench.load import LoadSamples, LoadSpec, Percentiles
from cove.platform.bench.prompt import PROMPT, SMOKE_PROMPT, with_secret
from cove.platform.local.postgres import LocalPostgres
from cove.platform.local.procs import (
    StackError,
    free_port,
    http_ok,
    spawn,
    stop_process_group,
    wait_until,
)
from cove.platform.local.stack import VLLM_VERSION, default_cache_dir, tiny_model_dir, vllm_argv

LITELLM_VERSION = "1.100.5"
MODEL = "bench-model"
SMOKE_MODEL = "cove-tiny"
FILE_PATH = "src/shop/orders/service.py"


@dataclass(frozen=True)
class BenchOptions:
    rate: float = 300.0
    # A second, lower open-loop rate for plain requests (LiteLLM's working range); 0 skips it.
    low_rate: float = 100.0
    duration: float = 15.0
    warmup: float = 1.0
    rounds: int = 3
    concurrency: int = 8
    upstream_latency_ms: float = 20.0
    stream_chunks: int = 4
    chunk_gap_ms: float = 2.0
    timeout: float = 10.0
    gateway_workers: int = 1
    litellm: bool = True
    vllm: bool = True
    vllm_requests: int = 20
    vllm_concurrency: int = 2
    secret: bool = False
    pin: bool = False
    keep: bool = False
    # Open-loop slices of direct and Cove whose generator lateness p99 exceeds this are re-run.
    max_generator_lag_ms: float = 10.0


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    # Process group whose CPU use must settle before a slice starts (None: nothing to wait on).
    pgid: int | None = None


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    mode: str
    stream: bool
    rate: float = 0.0
    concurrency: int = 0


@dataclass
class Summary:
    target: str
    sent: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    rps: float
    latency: Percentiles | None
    total: Percentiles | None
    lag: Percentiles | None
    warm_ok: int
    # CPU time of the proxy's processes per request served (warm-up included).
    cpu_ms_per_request: float | None = None

    @classmethod
    def of(
        cls, target: str, samples: LoadSamples, open_loop: bool, cpu_s: float | None = None
    ) -> Summary:
        served = samples.ok + samples.warm_ok
        return cls(
            target=target,
            sent=samples.sent,
            ok=samples.ok,
            errors=samples.errors,
            error_kinds=dict(samples.error_kinds),
            rps=round(samples.ok / samples.window, 1) if samples.window > 0 else 0.0,
            latency=Percentiles.of(samples.latency),
            total=Percentiles.of(samples.total),
            lag=Percentiles.of(samples.lag) if open_loop else None,
            warm_ok=samples.warm_ok,
            cpu_ms_per_request=(
                round(cpu_s * 1000 / served, 3) if cpu_s is not None and served else None
            ),
        )


@dataclass
class ScenarioResult:
    scenario: Scenario
    rows: dict[str, Summary] = field(default_factory=dict)

    def added(self, target: str, quantile: str, *, total: bool = False) -> float | None:
        base = self.rows.get("direct")
        row = self.rows.get(target)
        if base is None or row is None:
            return None
        a = row.total if total else row.latency
        b = base.total if total else base.latency
        if a is None or b is None:
            return None
        return round(float(getattr(a, quantile)) - float(getattr(b, quantile)), 3)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[4]


@contextlib.contextmanager
def _affinity(cpus: set[int] | None) -> Iterator[None]:
    """Children started inside inherit `cpus`; this process gets its own set back after."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _group_cpu_ticks(pgid: int) -> int:
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; the fields after it are fixed.
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks


IDLE_WAIT_S = 90.0
MAX_SLICE_RETRIES = 2


def _generator_starved(samples: LoadSamples, max_lag_ms: float) -> bool:
    lag = Percentiles.of(samples.lag)
    return lag is not None and lag.p99 > max_lag_ms


def _wait_idle(pgid: int, *, limit: float = 0.1, max_wait: float = IDLE_WAIT_S) -> bool:
    """Wait until a process group uses less than `limit` of a CPU (after an overload, a proxy
    may still be working through its backlog)."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        before = _group_cpu_ticks(pgid)
        time.sleep(0.25)
        if (_group_cpu_ticks(pgid) - before) / hz / 0.25 < limit:
            return True
    return False


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float = 30.0) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - local URL
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


class GatewayBench:
    """The processes of one benchmark run; `close()` stops every one of them."""

    def __init__(self, options: BenchOptions, echo: Callable[[str], None]) -> None:
        self.options = options
        self.echo = echo
        self._cleanup = contextlib.ExitStack()
        self.work = Path(tempfile.mkdtemp(prefix="cove-bench-"))
        # As root the cluster runs as `postgres`, which must be able to reach the directory.
        os.chmod(self.work, 0o755)  # noqa: S103 - a temp dir of logs and a throw-away cluster
        if not options.keep:
            self._cleanup.callback(shutil.rmtree, self.work, True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.others, self.proxy_cpus = self._cpu_plan()
        self.all_cpus = os.sched_getaffinity(0)
        if self.others is not None:
            self._cleanup.callback(os.sched_setaffinity, 0, set(self.all_cpus))
            os.sched_setaffinity(0, self.others)
        self.database_url = ""
        self.redis_url = ""
        self.responder_url = ""
        self.gateway_url = ""
        self.litellm_url = ""
        self.vllm_url = ""
        self.key = ""
        self.bu_id: UUID | None = None
        self.secret_key = secrets.token_urlsafe(36)
        self.slices_rerun = 0

    # ---- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._cleanup.close()

    def __enter__(self) -> GatewayBench:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _cpu_plan(self) -> tuple[set[int] | None, set[int] | None]:
        cpus = sorted(os.sched_getaffinity(0))
        if not self.options.pin or len(cpus) < 2:
            return None, None
        return set(cpus[:-1]), {cpus[-1]}

    @property
    def cpu_split(self) -> str:
        if self.others is None or self.proxy_cpus is None:
            return "unpinned"
        gateway = "all" if self.options.gateway_workers > 1 else ",".join(map(str, self.proxy_cpus))
        return (
            f"gateway:{gateway} litellm:{','.join(map(str, sorted(self.proxy_cpus)))} "
            f"load+responder+redis+postgres:{','.join(map(str, sorted(self.others)))}"
        )

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], cpus: set[int] | None = None
    ) -> subprocess.Popen[bytes]:
        with _affinity(cpus):
            proc = spawn(argv, env=env, log_file=self.work / "logs" / f"{name}.log")
        self.procs[name] = proc
        self._cleanup.callback(self._stop, name)
        return proc

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        stop_process_group(proc.pid, grace=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def _log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def _alive(self, name: str) -> Callable[[], bool]:
        proc = self.procs[name]
        return lambda: proc.poll() is None

    # ---- set-up ------------------------------------------------------------------------

    def start(self) -> None:
        if self.options.vllm:
            self._check_vllm_env()
        self._start_postgres()
        self._start_redis()
        self._start_responder()
        asyncio.run(self._seed())
        self._start_gateway()
        if self.options.litellm:
            self._start_litellm()

    def _start_postgres(self) -> None:
        from cove.platform.core import migrate

        self.echo("bench: starting a throw-away Postgres cluster")
        cluster = LocalPostgres(self.work / "pg" / "data")
        cluster.ensure_initialised()
        port = cluster.start()
        self._cleanup.callback(cluster.stop)
        self.database_url = cluster.ensure_database(port)
        migrate.upgrade(self.database_url)

    def _start_redis(self) -> None:
        import redis

        port = free_port()
        data = self.work / "redis"
        data.mkdir()
        self._spawn(
            "redis",
            [
                "redis-server",
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
        client = redis.Redis(port=port)

        def ping() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(ping, timeout=20, what="redis", alive=self._alive("redis"))
        client.close()
        self.redis_url = f"redis://127.0.0.1:{port}/0"

    def _start_responder(self) -> None:
        port = free_port()
        o = self.options
        self._spawn(
            "responder",
            [
                sys.executable,
                "-m",
                "cove.platform.bench.responder",
                "--port",
                str(port),
                "--latency-ms",
                str(o.upstream_latency_ms),
                "--stream-chunks",
                str(o.stream_chunks),
                "--chunk-gap-ms",
                str(o.chunk_gap_ms),
            ],
            dict(os.environ),
        )
        self.responder_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{self.responder_url}/health"),
            timeout=30,
            what="responder",
            alive=self._alive("responder"),
            log_file=self._log("responder"),
        )

    def _db(self) -> Any:
        from cove.platform.core.db import Database
        from cove.platform.core.settings import CoveSettings

        settings = CoveSettings(
            database_url=self.database_url,
            redis_url=self.redis_url,
            secret_key=self.secret_key,
        )
        return Database(settings, min_size=0)

    async def _seed(self) -> None:
        from cove.platform.deployments import repository as deployment_repository
        from cove.platform.models import repository as model_repository
        from cove.platform.policies import service as policy_service
        from cove.tenants.bus import repository as bu_repository
        from cove.tenants.keys import repository as key_repository
        from cove.tenants.keys.secrets import issue_key
        from cove.tenants.principal import Principal, Role, Scope

        pepper = self.secret_key.encode()
        db = self._db()
        await db.open()
        try:
            async with db.platform() as conn:
                bu = await bu_repository.insert(conn, {"slug": "bench", "name": "Benchmark BU"})
                dev = await key_repository.ensure_user(
                    conn, subject="bench:dev", username="bench-dev", email="dev@bench.local"
                )
                await key_repository.set_membership(conn, bu.id, dev, "developer")
                issued = issue_key(pepper)
                await key_repository.insert(
                    conn,
                    {
                        "tenant_id": bu.id,
                        "user_id": dev,
                        "name": "bench developer key",
                        "key_id": issued.key_id,
                        "salt": issued.salt,
                        "hash": issued.digest,
                        "scopes": ["completions", "events"],
                        "expires_at": None,
                    },
                )
                model_id = await model_repository.upsert_base_model(
                    conn,
                    name=MODEL,
                    location="bench://responder",
                    family="llama",
                    fim_tokens={
                        "prefix": "<fim_prefix>",
                        "suffix": "<fim_suffix>",
                        "middle": "<fim_middle>",
                    },
                    context_length=16384,
                )
                await deployment_repository.upsert(
                    conn,
                    {
                        "tenant_id": bu.id,
                        "name": "default",
                        "model_id": model_id,
                        "served_model_name": MODEL,
                        "endpoint_url": self.responder_url,
                    },
                )
            admin = Principal(
                subject="bench:admin",
                username="cove-bench",
                tenant_id=None,
                user_id=None,
                roles=frozenset({Role.PLATFORM_ADMIN}),
                scopes=frozenset({Scope.ADMIN_WRITE}),
            )
            await policy_service.put_org(db, admin, org_policy(), None)
        finally:
            await db.close()
        self.key = issued.plaintext
        self.bu_id = bu.id

    def _start_gateway(self) -> None:
        port = free_port()
        env = {
            **os.environ,
            "COVE_ENV": "production",
            "COVE_LOG_JSON": "true",
            "COVE_DATABASE_URL": self.database_url,
            "COVE_REDIS_URL": self.redis_url,
            "COVE_SECRET_KEY": self.secret_key,
            "COVE_EVENT_SPOOL_DIR": str(self.work / "spool"),
        }
        for name in ("COVE_APP_DATABASE_URL", "COVE_OTLP_ENDPOINT"):
            env.pop(name, None)
        workers = self.options.gateway_workers
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "cove.gateway.app:main_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
        ]
        if workers > 1:
            argv += ["--workers", str(workers)]
        cpus = set(self.all_cpus) if workers > 1 else self.proxy_cpus
        self.echo(f"bench: starting the gateway ({workers} worker(s))")
        self._spawn("gateway", argv, env, cpus)
        self.gateway_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{self.gateway_url}/healthz"),
            timeout=60,
            what="gateway",
            alive=self._alive("gateway"),
            log_file=self._log("gateway"),
        )
        target = self.targets()["cove"]
        body = completion_body(self.prompt, stream=False)
        wait_until(
            lambda: _post(target.url, body, target.headers) == 200,
            timeout=30,
            what="a completion through the gateway",
            alive=self._alive("gateway"),
            log_file=self._log("gateway"),
        )

    def _litellm_python(self) -> Path:
        given = os.environ.get("COVE_LITELLM_PYTHON")
        if given:
            return Path(given)
        venv = default_cache_dir() / f"venv-litellm-{LITELLM_VERSION}"
        if not (venv / ".cove-ready").exists():
            script = _repo_root() / "scripts" / "ensure-litellm.sh"
            if not script.exists():
                raise StackError(
                    f"LiteLLM's environment is missing at {venv} and {script} is not there to "
                    "build it; set COVE_LITELLM_PYTHON or pass --no-litellm."
                )
            self.echo(f"bench: building LiteLLM {LITELLM_VERSION}'s environment (once)")
            env = {**os.environ, "COVE_CACHE_DIR": str(default_cache_dir())}
            result = subprocess.run(
                ["bash", str(script)], env=env, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise StackError(f"{script} failed:\n{result.stderr[-3000:]}")
        return venv / "bin" / "python"

    def _start_litellm(self) -> None:
        python = self._litellm_python()
        port = free_port()
        config = self.work / "litellm.yaml"
        # JSON is YAML: no YAML writer needed for LiteLLM's config file.
        config.write_bytes(
            orjson.dumps(
                {
                    "model_list": [
                        {
                            "model_name": MODEL,
                            "litellm_params": {
                                "model": f"openai/{MODEL}",
                                "api_base": f"{self.responder_url}/v1",
                                "api_key": "bench-no-key",
                            },
                        }
                    ]
                },
                option=orjson.OPT_INDENT_2,
            )
        )
        env = {
            **os.environ,
            # The price map is otherwise fetched from GitHub at start-up; offline it only waits.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        self.echo(f"bench: starting LiteLLM {LITELLM_VERSION}'s proxy")
        litellm = python.parent / "litellm"
        self._spawn(
            "litellm",
            [
                str(litellm),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
            self.proxy_cpus,
        )
        self.litellm_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{self.litellm_url}/health/liveliness"),
            timeout=180,
            what="LiteLLM",
            alive=self._alive("litellm"),
            log_file=self._log("litellm"),
        )
        target = self.targets()["litellm"]
        wait_until(
            lambda: (
                _post(target.url, completion_body(self.prompt, stream=False), target.headers) == 200
            ),
            timeout=60,
            what="a completion through LiteLLM",
            alive=self._alive("litellm"),
            log_file=self._log("litellm"),
        )

    # ---- vLLM smoke ----------------------------------------------------------------------

    def _vllm_python(self) -> Path:
        return Path(
            os.environ.get(
                "COVE_VLLM_PYTHON",
                str(default_cache_dir() / f"venv-vllm-{VLLM_VERSION}" / "bin" / "python"),
            )
        )

    def _check_vllm_env(self) -> None:
        if not self._vllm_python().exists():
            raise StackError(
                f"vLLM's environment is missing at {self._vllm_python()}: run "
                "scripts/ensure-vllm.sh, set COVE_VLLM_PYTHON, or pass --no-vllm."
            )

    def start_vllm(self) -> None:
        from cove.finetune.tinymodel import (
            build_tiny_model,
            is_current_tiny_model,
            read_model_metadata,
        )

        model_dir = tiny_model_dir(default_cache_dir())
        if not is_current_tiny_model(model_dir):
            self.echo(f"bench: building the tiny model in {model_dir} (once)")
            build_tiny_model(model_dir)
        meta = read_model_metadata(model_dir)
        port = free_port()
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
        }
        self.echo("bench: starting vLLM with the tiny model (about 30 s)")
        self._spawn(
            "vllm",
            vllm_argv(self._vllm_python(), model_dir, SMOKE_MODEL, port),
            env,
            set(self.all_cpus),
        )
        self.vllm_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{self.vllm_url}/health"),
            timeout=300,
            what="vLLM",
            alive=self._alive("vllm"),
            log_file=self._log("vllm"),
        )
        asyncio.run(self._add_vllm_deployment(meta.get("fim_tokens")))
        target = self.targets()["cove-vllm"]
        wait_until(
            lambda: _post(target.url, smoke_body(stream=False), target.headers) == 200,
            timeout=30,
            what="a vLLM completion through the gateway",
            alive=self._alive("gateway"),
            log_file=self._log("gateway"),
        )

    async def _add_vllm_deployment(self, fim: dict[str, str] | None) -> None:
        from cove.platform.deployments import repository as deployment_repository
        from cove.platform.models import repository as model_repository

        db = self._db()
        await db.open()
        try:
            async with db.platform() as conn:
                model_id = await model_repository.upsert_base_model(
                    conn,
                    name=SMOKE_MODEL,
                    location=str(tiny_model_dir(default_cache_dir())),
                    family="llama",
                    fim_tokens=fim,
                    context_length=1024,
                )
                await deployment_repository.upsert(
                    conn,
                    {
                        "tenant_id": self.bu_id,
                        "name": "vllm-smoke",
                        "model_id": model_id,
                        "served_model_name": SMOKE_MODEL,
                        "endpoint_url": self.vllm_url,
                    },
                )
                # The gateways reload their route tables on this notification.
                await conn.execute("SELECT pg_notify('cove_routes', %s)", (str(self.bu_id),))
        finally:
            await db.close()

    def stop(self, name: str) -> None:
        self._stop(name)

    def settle(self) -> None:
        """Wait until no proxy is still busy with an earlier slice."""
        for name in ("gateway", "litellm"):
            proc = self.procs.get(name)
            if proc is not None and not _wait_idle(proc.pid):
                self.echo(f"bench: {name} is still busy after {IDLE_WAIT_S:.0f} s; going on")

    # ---- measuring -----------------------------------------------------------------------

    @property
    def prompt(self) -> str:
        return with_secret() if self.options.secret else PROMPT

    def targets(self) -> dict[str, Target]:
        json_headers = {"content-type": "application/json"}
        cove_headers = {
            **json_headers,
            "authorization": f"Bearer {self.key}",
            # IDE requests carry the file path, so the exclusion globs are evaluated too.
            "x-cove-file-path": FILE_PATH,
        }
        found: dict[str, Target] = {}
        if self.responder_url:
            found["direct"] = Target("direct", f"{self.responder_url}/v1/completions", json_headers)
        if self.gateway_url:
            gateway = self.procs.get("gateway")
            found["cove"] = Target(
                "cove",
                f"{self.gateway_url}/v1/completions",
                cove_headers,
                gateway.pid if gateway else None,
            )
            if self.vllm_url:
                found["cove-vllm"] = Target(
                    "cove",
                    f"{self.gateway_url}/v1/completions",
                    cove_headers,
                    gateway.pid if gateway else None,
                )
        if self.litellm_url:
            litellm = self.procs.get("litellm")
            found["litellm"] = Target(
                "litellm",
                f"{self.litellm_url}/v1/completions",
                json_headers,
                litellm.pid if litellm else None,
            )
        if self.vllm_url:
            found["direct-vllm"] = Target("direct", f"{self.vllm_url}/v1/completions", json_headers)
        return found

    def run_slice(
        self,
        target: Target,
        scenario: Scenario,
        body: bytes,
        *,
        duration: float,
        warmup: float,
        requests: int | None = None,
        warmup_requests: int = 0,
    ) -> tuple[LoadSamples, float | None]:
        """One run of the load generator; returns its samples and the CPU seconds the
        target's processes used meanwhile (None for the direct target)."""
        self.settle()
        ticks = _group_cpu_ticks(target.pgid) if target.pgid is not None else 0
        spec = LoadSpec(
            url=target.url,
            body=body,
            headers=target.headers,
            stream=scenario.stream,
            mode=scenario.mode,
            rate=scenario.rate or 1.0,
            concurrency=scenario.concurrency or 1,
            duration=duration,
            warmup=warmup,
            requests=requests,
            warmup_requests=warmup_requests,
            timeout=self.options.timeout,
        )
        answer = self._exchange(
            spec.to_json(), timeout=warmup + duration + self.options.timeout + 120
        )
        cpu_s = None
        if target.pgid is not None:
            cpu_s = (_group_cpu_ticks(target.pgid) - ticks) / os.sysconf("SC_CLK_TCK")
        return LoadSamples.from_json(answer), cpu_s

    def _exchange(self, request: bytes, *, timeout: float) -> bytes:
        """Send one spec line to the load generator and wait for its result line."""
        proc = self._load_generator()
        assert proc.stdin is not None
        assert proc.stdout is not None
        load_in, load_out = proc.stdin.fileno(), proc.stdout.fileno()
        view = memoryview(request + b"\n")
        while view:
            view = view[os.write(load_in, view) :]
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        while not chunks or not chunks[-1].endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([load_out], [], [], max(0.0, remaining))
            chunk = os.read(load_out, 1 << 16) if ready else b""
            if not chunk:
                self._stop("load")
                why = "exited" if ready else f"gave no answer in {timeout:.0f} s"
                raise StackError(f"the load generator {why}; see {self._log('load')}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _load_generator(self) -> subprocess.Popen[bytes]:
        """One long-lived load generator process serves every slice (see `load.main`)."""
        proc = self.procs.get("load")
        if proc is not None and proc.poll() is None:
            return proc
        log = self._log("load")
        with _affinity(self.others), log.open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cove.platform.bench.load"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                bufsize=0,
                start_new_session=True,
            )
        self.procs["load"] = proc
        self._cleanup.callback(self._stop, "load")
        return proc

    def run_scenario(self, scenario: Scenario, names: list[str]) -> ScenarioResult:
        o = self.options
        targets = self.targets()
        body = completion_body(self.prompt, stream=scenario.stream)
        merged = {name: LoadSamples() for name in names}
        cpu: dict[str, float | None] = dict.fromkeys(names)
        rounds = max(1, o.rounds)
        # Direct and Cove alternate slice by slice, so drifts in the machine's load hit both.
        # LiteLLM comes after them: when it falls behind, it keeps working through abandoned
        # requests for a while, which must not land in another target's slices.
        plan = [name for _ in range(rounds) for name in names if name != "litellm"]
        plan += ["litellm"] * rounds if "litellm" in names else []
        for name in plan:
            for attempt in range(MAX_SLICE_RETRIES + 1):
                samples, used = self.run_slice(
                    targets[name], scenario, body, duration=o.duration / rounds, warmup=o.warmup
                )
                # A load generator that could not keep its own timetable (the host stalled it)
                # measured the host, not the target. LiteLLM's slices are kept whatever happens:
                # its backlog of open requests is what slows the generator there.
                if name == "litellm" or not _generator_starved(samples, o.max_generator_lag_ms):
                    break
                if attempt < MAX_SLICE_RETRIES:
                    self.slices_rerun += 1
                    self.echo(f"bench: the load generator was starved during a {name} slice; again")
            merged[name].add(samples)
            if used is not None:
                cpu[name] = (cpu[name] or 0.0) + used
            if name == "litellm" and not self._alive("litellm")():
                raise StackError(f"LiteLLM exited; see {self._log('litellm')}")
        result = ScenarioResult(scenario)
        for name in names:
            result.rows[name] = Summary.of(name, merged[name], scenario.mode == "rate", cpu[name])
        return result

    def run_smoke(self, scenario: Scenario) -> ScenarioResult:
        o = self.options
        targets = self.targets()
        result = ScenarioResult(scenario)
        body = smoke_body(stream=scenario.stream)
        for name in ("direct-vllm", "cove-vllm"):
            samples, used = self.run_slice(
                targets[name],
                scenario,
                body,
                duration=0.0,
                warmup=0.0,
                requests=o.vllm_requests,
                warmup_requests=2,
            )
            label = targets[name].name
            result.rows[label] = Summary.of(label, samples, open_loop=False, cpu_s=used)
        return result

    # ---- after the run -------------------------------------------------------------------

    def usage_events(self) -> int:
        # The gateway flushes its buffer every half second.
        time.sleep(1.5)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM usage_events WHERE event_type = 'completion.served'"
            ).fetchone()
        return int(row[0]) if row else 0

    def audit_redactions(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM audit_log WHERE action = 'policy.redact'"
            ).fetchone()
        return int(row[0]) if row else 0

    def redis_limit_keys(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return sum(1 for _ in client.scan_iter(match="cove*", count=1000))
        finally:
            client.close()

    def responder_paths(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.responder_url}/stats", timeout=5) as resp:  # noqa: S310
            data: dict[str, int] = orjson.loads(resp.read())
        return data


def org_policy() -> dict[str, Any]:
    """Every limit on, far above the offered load (a 429 would end the measurement); secrets
    redacted; the usual credential files excluded; model access checked by role."""
    from cove.gateway.policy.engine import DEFAULT_POLICY

    return {
        "limits": {
            "max_prompt_chars": 64_000,
            "max_tokens": 2048,
            "user_requests_per_minute": 10_000_000,
            "bu_requests_per_minute": 10_000_000,
            "user_tokens_per_minute": 10_000_000_000,
            "bu_tokens_per_day": 10_000_000_000_000,
        },
        "content": {
            "default_action": "redact",
            "exclude_paths": list(DEFAULT_POLICY.exclude_paths),
        },
        "model_access": {"rules": {"developer": ["*"], "bu-admin": ["*"]}},
    }


def completion_body(prompt: str, *, stream: bool) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "prompt": prompt,
            "max_tokens": 16,
            "temperature": 0.2,
            "stop": ["\n\n"],
            "stream": stream,
        }
    )


def smoke_body(*, stream: bool) -> bytes:
    return orjson.dumps(
        {
            "model": SMOKE_MODEL,
            "prompt": SMOKE_PROMPT,
            "max_tokens": 16,
            "temperature": 0,
            "stream": stream,
        }
    )


# ---- the report -----------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(result: ScenarioResult) -> list[str]:
    s = result.scenario
    what = "TTFB" if s.stream else "latency"
    lines = [
        f"{s.title} — {what} in ms; +pN = target pN minus direct pN; "
        "lag = generator lateness; cpu/req = proxy CPU ms per request"
    ]
    header = (
        f"{'target':<9}{'sent':>7}{'ok':>7}{'err':>6}{'rps':>8}"
        f"{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'+p50':>9}{'+p95':>9}{'+p99':>9}"
    )
    if s.mode == "rate":
        header += f"{'lag p99':>9}"
    if s.stream:
        header += f"{'done p50':>10}"
    header += f"{'cpu/req':>9}"
    lines.append(header)
    for name, row in result.rows.items():
        lat = row.latency
        line = (
            f"{name:<9}{row.sent:>7}{row.ok:>7}{row.errors:>6}{row.rps:>8.1f}"
            f"{_fmt(lat.p50 if lat else None):>9}{_fmt(lat.p95 if lat else None):>9}"
            f"{_fmt(lat.p99 if lat else None):>9}{_fmt(lat.max if lat else None):>9}"
        )
        for quantile in ("p50", "p95", "p99"):
            added = None if name == "direct" else result.added(name, quantile)
            line += f"{_fmt(added):>9}"
        if s.mode == "rate":
            line += f"{_fmt(row.lag.p99 if row.lag else None):>9}"
        if s.stream:
            line += f"{_fmt(row.total.p50 if row.total else None):>10}"
        line += f"{_fmt(row.cpu_ms_per_request):>9}"
        if row.error_kinds:
            line += "  " + ",".join(f"{k}={v}" for k, v in sorted(row.error_kinds.items()))
        lines.append(line)
    return lines


def summary_json(
    options: BenchOptions,
    results: dict[str, ScenarioResult],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The one-line result: headline figures first, then everything a reader may check."""
    out: dict[str, Any] = {"rps": options.rate}
    plain = results["rate"]
    stream = results["rate_stream"]
    for q in ("p50", "p95", "p99"):
        out[f"{q}_added_ms"] = plain.added("cove", q)
    for q in ("p50", "p95", "p99"):
        out[f"ttfb_{q}_added_ms"] = stream.added("cove", q)
    for q in ("p50", "p95", "p99"):
        out[f"litellm_{q}_added_ms"] = plain.added("litellm", q)
    out["litellm_ttfb_p50_added_ms"] = stream.added("litellm", "p50")
    for key, result in results.items():
        prefix = "" if key == "rate" else f"{key}_"
        for name, row in result.rows.items():
            out[f"{prefix}{name}_rps"] = row.rps
            out[f"{prefix}{name}_errors"] = row.errors
            if row.latency is not None:
                out[f"{prefix}{name}_p50_ms"] = row.latency.p50
                out[f"{prefix}{name}_p99_ms"] = row.latency.p99
            if row.lag is not None:
                out[f"{prefix}{name}_gen_lag_p99_ms"] = row.lag.p99
            if row.cpu_ms_per_request is not None:
                out[f"{prefix}{name}_cpu_ms_per_request"] = row.cpu_ms_per_request
            if name != "direct" and key != "rate":
                out[f"{prefix}{name}_p50_added_ms"] = result.added(name, "p50")
                out[f"{prefix}{name}_p99_added_ms"] = result.added(name, "p99")
    out.update(
        {
            "duration_s": options.duration,
            "rounds": options.rounds,
            "low_rate": options.low_rate,
            "concurrency": options.concurrency,
            "upstream_latency_ms": options.upstream_latency_ms,
            "gateway_workers": options.gateway_workers,
        }
    )
    out.update(extra)
    return out


def run_benchmark(
    options: BenchOptions,
    echo: Callable[[str], None],
    out: Callable[[str], None],
) -> dict[str, Any]:
    """Run everything; print the tables with `out`, progress with `echo`; return the summary."""

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    load_start = _loadavg()
    try:
        with GatewayBench(options, echo) as bench:
            bench.start()
            results = _measure(bench, options, echo)
            extra: dict[str, Any] = {
                "prompt_bytes": len(bench.prompt.encode()),
                "prompt_has_secret": options.secret,
                "cpu_split": bench.cpu_split,
                "usage_events": bench.usage_events(),
                "redis_limit_keys": bench.redis_limit_keys(),
                "responder_paths": bench.responder_paths(),
                "slices_rerun": bench.slices_rerun,
            }
            cove_ok = sum(
                row.ok + row.warm_ok
                for r in results.values()
                for name, row in r.rows.items()
                if name == "cove"
            )
            # The gateway also served the start-up probes (one per started upstream).
            extra["cove_requests_ok"] = cove_ok
            if options.secret:
                extra["audit_redactions"] = bench.audit_redactions()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    extra["host_loadavg_start"] = load_start
    extra["host_loadavg_end"] = _loadavg()
    cpus = len(os.sched_getaffinity(0))
    extra["host_cpus"] = cpus
    for result in results.values():
        for line in render(result):
            out(line)
        out("")
    out(
        f"host: {cpus} CPUs, load average {load_start:.1f} at start and "
        f"{extra['host_loadavg_end']:.1f} at the end; CPU split: {extra['cpu_split']}"
    )
    # The run itself keeps about one CPU busy; more than that on the clock is someone else's,
    # and other work takes CPU from every process here unevenly: tails suffer.
    if max(load_start, extra["host_loadavg_end"]) > cpus:
        out("note: the host was busy with other work during the run; expect noisy tails")
    return summary_json(options, results, extra)


def _measure(
    bench: GatewayBench, options: BenchOptions, echo: Callable[[str], None]
) -> dict[str, ScenarioResult]:
    names = ["direct", "cove"] + (["litellm"] if options.litellm else [])
    latency = f"{options.upstream_latency_ms:g} ms upstream"
    slices = f"{options.duration:g} s per target in {options.rounds} slices"
    scenarios = [
        Scenario(
            "rate",
            f"Open loop {options.rate:g} req/s, plain, {latency}, {slices}",
            "rate",
            False,
            rate=options.rate,
        ),
        Scenario(
            "rate_stream",
            f"Open loop {options.rate:g} req/s, stream, {latency}, {slices}",
            "rate",
            True,
            rate=options.rate,
        ),
    ]
    if options.low_rate > 0:
        scenarios.append(
            Scenario(
                "low",
                f"Open loop {options.low_rate:g} req/s, plain, {latency}, {slices}",
                "rate",
                False,
                rate=options.low_rate,
            )
        )
    if options.concurrency > 0:
        scenarios += [
            Scenario(
                "conc",
                f"Closed loop, concurrency {options.concurrency}, plain, {latency}, {slices}",
                "concurrency",
                False,
                concurrency=options.concurrency,
            ),
            Scenario(
                "conc_stream",
                f"Closed loop, concurrency {options.concurrency}, stream, {latency}, {slices}",
                "concurrency",
                True,
                concurrency=options.concurrency,
            ),
        ]
    results: dict[str, ScenarioResult] = {}
    for scenario in scenarios:
        echo(f"bench: {scenario.title}")
        results[scenario.key] = bench.run_scenario(scenario, names)
    if options.vllm:
        if options.litellm:
            bench.stop("litellm")
        bench.start_vllm()
        for stream in (False, True):
            scenario = Scenario(
                "vllm_stream" if stream else "vllm",
                f"vLLM smoke (tiny model, real engine): {options.vllm_requests} requests at "
                f"concurrency {options.vllm_concurrency}, {'stream' if stream else 'plain'}",
                "concurrency",
                stream,
                concurrency=options.vllm_concurrency,
            )
            echo(f"bench: {scenario.title}")
            results[scenario.key] = bench.run_smoke(scenario)
    return results
