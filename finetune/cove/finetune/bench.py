"""`cove bench finetune`: the dataset builder's throughput on a large local code tree.

The tree is made on the spot from what every machine has: the Python standard library's
sources, plus generated Python, Java, TypeScript, JavaScript and Go files that call a synthetic
SDK, plus a sprinkling of files the builder must drop (vendored, minified, generated, binary,
duplicates). The builder runs once in one process and once with a process per CPU, so the
printed ratio is measured in a single run; the last line is JSON for scripts.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from cove.finetune.dataset import DatasetConfig, DatasetResult, build_dataset, default_workers
from cove.finetune.sources import RepoSpec

_SDK_FUNCTIONS: Final = (
    "charge_card",
    "refund_charge",
    "capture_hold",
    "open_wallet",
    "close_wallet",
    "fetch_statement",
    "create_payee",
    "verify_iban",
    "quote_fx_rate",
    "settle_batch",
    "issue_voucher",
    "redeem_voucher",
    "flag_fraud",
    "score_risk",
    "export_ledger",
    "tokenize_card",
)
_SDK_METHODS: Final = ("submit_payment", "cancel_payment", "poll_status", "list_disputes")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _write_sdk(root: Path) -> None:
    package = root / "acmepay"
    package.mkdir(parents=True)
    body = ['"""acmepay: the payments SDK."""', ""]
    for name in _SDK_FUNCTIONS:
        body += [
            "",
            f"def {name}(request, *, timeout=30):",
            f"    return _call('{name}', request)",
            "",
        ]
    body += ["", "def _call(name, request):", "    return (name, request)", ""]
    body += [
        "",
        "class PaymentsClient:",
        "    def __init__(self, endpoint):",
        "        self.endpoint = endpoint",
    ]
    for name in _SDK_METHODS:
        body += [
            "",
            f"    def {name}(self, payment_id):",
            f"        return _call('{name}', payment_id)",
        ]
    (package / "__init__.py").write_text("\n".join(body) + "\n")


def _python_consumer(rng: random.Random, index: int) -> str:
    lines = ['"""Payment flows."""', "", "import acmepay", "from acmepay import PaymentsClient", ""]
    for function in range(rng.randint(3, 8)):
        lines += ["", f"def flow_{index}_{function}(request, payment_id):"]
        lines.append(f"    client = PaymentsClient('svc-{rng.randint(1, 999)}')")
        for _ in range(rng.randint(2, 6)):
            if rng.random() < 0.6:
                lines.append(f"    result = acmepay.{rng.choice(_SDK_FUNCTIONS)}(request)")
            else:
                lines.append(f"    status = client.{rng.choice(_SDK_METHODS)}(payment_id)")
            lines.append(f"    total = {rng.randint(0, 10_000)} + len(str(request))")
        lines.append("    return total")
    return "\n".join(lines) + "\n"


def _java_consumer(rng: random.Random, index: int) -> str:
    calls = "\n".join(
        f"        var r{i} = client.{_camel(rng.choice(_SDK_METHODS))}"
        f'("p-{rng.randint(1, 99999)}");'
        for i in range(rng.randint(3, 12))
    )
    return (
        f"package com.acme.flows.f{index % 50};\n\nimport com.acme.pay.PaymentsClient;\n\n"
        f"public class Flow{index} {{\n    private final PaymentsClient client = "
        f'new PaymentsClient("svc-{index}");\n\n    public int run{index}() {{\n{calls}\n'
        f"        return {rng.randint(0, 1000)};\n    }}\n}}\n"
    )


def _typescript_consumer(rng: random.Random, index: int) -> str:
    imports = ", ".join(_camel(name) for name in _SDK_FUNCTIONS[:6])
    body = "\n".join(
        f"  const v{i} = await {_camel(rng.choice(_SDK_FUNCTIONS[:6]))}"
        f"({{ id: {rng.randint(1, 9999)} }});"
        for i in range(rng.randint(3, 10))
    )
    return (
        f"import {{ {imports} }} from '@acme/pay';\n\nexport async function flow{index}(): "
        f"Promise<number> {{\n{body}\n  return {rng.randint(0, 100)};\n}}\n"
    )


def _javascript_consumer(rng: random.Random, index: int) -> str:
    body = "\n".join(
        f"  results.push(pay.{_camel(rng.choice(_SDK_FUNCTIONS))}(req, {rng.randint(1, 500)}));"
        for _ in range(rng.randint(3, 10))
    )
    return (
        "const pay = require('@acme/pay');\n\n"
        f"function handler{index}(req) {{\n  const results = [];\n{body}\n  return results;\n}}\n\n"
        f"module.exports = {{ handler{index} }};\n"
    )


def _go_consumer(rng: random.Random, index: int) -> str:
    body = "\n".join(
        f"\tif _, err := acmepay.{_pascal(rng.choice(_SDK_FUNCTIONS))}"
        f"(ctx, {rng.randint(1, 999)}); "
        "err != nil {\n\t\treturn err\n\t}"
        for _ in range(rng.randint(3, 8))
    )
    return (
        f'package flows\n\nimport (\n\t"context"\n\n\t"example.com/acme/acmepay"\n)\n\n'
        f"func Flow{index}(ctx context.Context) error {{\n{body}\n\treturn nil\n}}\n"
    )


_GENERATORS: Final[tuple[tuple[str, Callable[[random.Random, int], str]], ...]] = (
    ("py", _python_consumer),
    ("java", _java_consumer),
    ("ts", _typescript_consumer),
    ("js", _javascript_consumer),
    ("go", _go_consumer),
)


def build_tree(root: Path, *, files: int, seed: int = 0) -> tuple[Path, Path]:
    """Write an SDK repository and a consumer repository of about `files` files under `root`."""
    rng = random.Random(seed)
    sdk = root / "acmepay-sdk"
    consumers = root / "monorepo"
    _write_sdk(sdk)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    copies = sorted(path for path in stdlib.rglob("*.py") if "site-packages" not in path.parts)[
        : files // 2
    ]
    for source in copies:
        target = consumers / "stdlib" / source.relative_to(stdlib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    # Files the builder has to recognise and drop: vendored, minified, generated, binary.
    odd = consumers / "web" / "node_modules" / "left-pad"
    odd.mkdir(parents=True)
    (odd / "index.js").write_text("module.exports = function leftPad() {};\n")
    (consumers / "web" / "app.min.js").write_text("var a=1;" * 2000 + "\n")
    (consumers / "api_pb2.py").write_text("# Generated by the protocol buffer compiler.\nX = 1\n")
    (consumers / "logo.py").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" * 64)
    written = len(copies) + 4
    index = 0
    while written < files:
        extension, generate = _GENERATORS[index % len(_GENERATORS)]
        target = consumers / "services" / f"svc{index % 40}" / f"flow_{index}.{extension}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(generate(rng, index))
        index += 1
        written += 1
    return sdk, consumers


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(
    sdk: Path, consumers: Path, out: Path, workers: int
) -> tuple[DatasetResult, float, float]:
    config = DatasetConfig(
        workers=workers, min_train_examples=1, min_eval_examples=1, max_prefix_chars=4000
    )
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    result = build_dataset(
        [RepoSpec(str(sdk), "sdk"), RepoSpec(str(consumers), "consumer")], out, config
    )
    # CPU time beside wall time shows when other load on the machine slowed a run down.
    return result, time.perf_counter() - started, _cpu_seconds() - cpu_started


def run_bench(
    *,
    files: int = 6000,
    workers: int | None = None,
    keep: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the tree, time the builder, print a table and a final JSON line."""
    root = Path(tempfile.mkdtemp(prefix="cove-bench-finetune-")) if keep is None else keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        sdk, consumers = build_tree(root / "tree", files=files)
        tree_seconds = time.perf_counter() - started
        parallel = workers or default_workers()
        runs: list[tuple[int, DatasetResult, float, float]] = []
        for count in dict.fromkeys([1, parallel] if workers is None else [parallel]):
            result, seconds, cpu = _measure(sdk, consumers, root / f"dataset-{count}", count)
            runs.append((count, result, seconds, cpu))
        rows = []
        for count, result, seconds, cpu in runs:
            seen = result.card["files"]["seen"]
            rows.append(
                {
                    "workers": count,
                    "files": seen,
                    "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu, 3),
                    "files_per_s": round(seen / seconds, 1),
                    "kept": result.card["files"]["kept"],
                    "examples": result.card["examples"]["train"] + result.card["examples"]["eval"],
                    "timings": result.timings,
                }
            )
        echo(f"tree: {files} files written in {tree_seconds:.1f} s under {root}")
        echo(
            f"{'workers':>7} {'files':>7} {'seconds':>8} {'files/s':>9} {'kept':>6} {'examples':>9}"
        )
        for row in rows:
            echo(
                f"{row['workers']:>7} {row['files']:>7} {row['seconds']:>8.2f} "
                f"{row['files_per_s']:>9.1f} {row['kept']:>6} {row['examples']:>9}"
            )
        best = rows[-1]
        echo("stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in best["timings"].items()))
        dropped = runs[-1][1].card["files"]["dropped"]
        echo("dropped: " + ", ".join(f"{reason} {count}" for reason, count in dropped.items()))
        summary = {
            "files": best["files"],
            "files_per_s": best["files_per_s"],
            "seconds": best["seconds"],
            "cpu_seconds": best["cpu_seconds"],
            "cpu_ms_per_file": round(1000 * best["cpu_seconds"] / best["files"], 3),
            "workers": best["workers"],
            "single_process_files_per_s": rows[0]["files_per_s"],
            "speedup": round(best["files_per_s"] / rows[0]["files_per_s"], 2),
            "kept": best["kept"],
            "examples": best["examples"],
            "target_files_per_s": 500,
        }
        echo(json.dumps(summary))
        return summary
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
