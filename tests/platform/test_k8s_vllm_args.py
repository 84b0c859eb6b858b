"""The rendered vLLM command line, parsed by the real vLLM's own argument parser.

The GPU image cannot run here, but the CPU build of the same vLLM release has the same command
line: every flag Cove renders, and every allow-listed extra flag, must parse there into the
engine arguments we meant.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cove.platform.deployments.k8s.render import render
from cove.platform.deployments.k8s.spec import ALLOWED_EXTRA_ARGS, DeploymentSpec
from cove.platform.local.stack import VLLM_VERSION, default_cache_dir
from tests.platform.test_k8s_render import ALL_SPECS, spec_of

pytestmark = pytest.mark.vllm

PARSE = """
import json, sys
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser

parser = make_arg_parser(FlexibleArgumentParser())
parsed = {}
for name, args in json.load(sys.stdin).items():
    namespace = parser.parse_args(args)
    validate_parsed_serve_args(namespace)
    engine = AsyncEngineArgs.from_cli_args(namespace)
    parsed[name] = {
        "host": namespace.host,
        "port": namespace.port,
        "lora_modules": namespace.lora_modules,
        **{
            field: getattr(engine, field)
            for field in (
                "model", "served_model_name", "max_model_len", "tensor_parallel_size",
                "enable_prefix_caching", "enable_lora", "max_loras", "max_lora_rank",
                "speculative_config", "dtype", "enforce_eager", "gpu_memory_utilization",
                "max_cpu_loras", "seed", "block_size", "kv_cache_dtype", "quantization",
                "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
            )
        },
    }
json.dump(parsed, sys.stdout, default=str)
"""

EVERY_EXTRA_ARG: dict[str, Any] = {
    "block-size": 32,
    "dtype": "bfloat16",
    "enable-chunked-prefill": True,
    "enforce-eager": True,
    "gpu-memory-utilization": 0.85,
    "kv-cache-dtype": "fp8",
    "max-cpu-loras": 8,
    "max-num-batched-tokens": 8192,
    "max-num-seqs": 128,
    "quantization": "awq",
    "seed": 42,
}


def _vllm_python() -> Path:
    python = Path(
        os.environ.get(
            "COVE_VLLM_PYTHON",
            str(default_cache_dir() / f"venv-vllm-{VLLM_VERSION}" / "bin" / "python"),
        )
    )
    if not python.exists():
        pytest.fail(f"vLLM environment missing at {python}; run scripts/ensure-vllm.sh")
    return python


def _vllm_args(spec: DeploymentSpec) -> list[str]:
    (deployment,) = [o for o in render(spec) if o["kind"] == "Deployment"]
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_vllm_parses_every_rendered_command_line_as_intended() -> None:
    specs = {name: DeploymentSpec.model_validate(data) for name, data in ALL_SPECS}
    specs["every-extra-arg"] = spec_of(
        mode="shared", vllm={"max_loras": 4, "extra_args": EVERY_EXTRA_ARG}
    )
    assert set(EVERY_EXTRA_ARG) == set(ALLOWED_EXTRA_ARGS)

    completed = subprocess.run(
        [str(_vllm_python()), "-c", PARSE],
        input=json.dumps({name: _vllm_args(spec) for name, spec in specs.items()}),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    parsed: dict[str, dict[str, Any]] = json.loads(completed.stdout)

    for name, spec in specs.items():
        engine = parsed[name]
        assert (engine["host"], engine["port"]) == ("0.0.0.0", 8000), name
        assert engine["served_model_name"] == [spec.model.name], name
        assert engine["max_model_len"] == spec.max_model_len, name
        assert engine["tensor_parallel_size"] == spec.tensor_parallel_size, name
        assert engine["enable_prefix_caching"] is spec.vllm.enable_prefix_caching, name
        assert engine["lora_modules"] is None, name
        if spec.mode == "shared":
            assert engine["enable_lora"] is True, name
            assert (engine["max_loras"], engine["max_lora_rank"]) == (
                spec.max_loras,
                spec.max_lora_rank,
            ), name
        else:
            assert not engine["enable_lora"], name
        draft = spec.vllm.speculative_decoding
        if draft is None:
            assert engine["speculative_config"] is None, name
        else:
            assert engine["speculative_config"]["num_speculative_tokens"] == (
                draft.num_speculative_tokens
            ), name
            assert engine["speculative_config"]["model"].startswith("/models/"), name

    every = parsed["every-extra-arg"]
    assert every["block_size"] == 32
    assert every["dtype"] == "bfloat16"
    assert every["enable_chunked_prefill"] is True
    assert every["enforce_eager"] is True
    assert every["gpu_memory_utilization"] == 0.85
    assert every["kv_cache_dtype"] == "fp8"
    assert every["max_cpu_loras"] == 8
    assert every["max_num_batched_tokens"] == 8192
    assert every["max_num_seqs"] == 128
    assert every["quantization"] == "awq"
    assert every["seed"] == 42
    assert parsed["speculative"]["speculative_config"]["model"] == (
        "/models/pvc/drafts/qwen2.5-coder-0.5b"
    )
    assert parsed["cpu-only"]["dtype"] == "float32"
