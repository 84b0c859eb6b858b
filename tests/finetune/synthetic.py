"""A synthetic private SDK (`ledgerlink`) and consumer code that calls it, written on the fly.

The SDK's names are distinctive (nothing in the tiny model's tokenizer corpus calls
`fetch_balance` or `reconcile_batch`), so a completion naming them can only come from the
training. Each SDK function is used the way a real code base uses its helpers: under a
conventional variable name, with conventional argument names and usually a comment, so the
call is predictable from its surroundings, which is what fine-tuning must pick up.
Everything is generated from a seed: the same seed writes the same files.
"""

from __future__ import annotations

import random
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Call:
    name: str
    result: str
    args: tuple[str, ...]
    comment: str


FUNCTIONS = (
    Call("post_entry", "entry", ("account", "amount"), "post the entry to the ledger"),
    Call("void_entry", "voided", ("entry_id",), "void the entry"),
    Call("fetch_balance", "balance", ("account",), "fetch the current balance"),
    Call("open_period", "period", ("year", "month"), "open the accounting period"),
    Call("close_period", "closing", ("period",), "close the period"),
    Call("export_journal", "journal", ("period", "fmt"), "export the journal"),
    Call("import_statement", "statement", ("path",), "import the bank statement"),
    Call("match_payment", "matched", ("payment", "invoice"), "match the payment to its invoice"),
    Call("schedule_payout", "payout", ("account", "amount"), "schedule the payout"),
    Call("compute_accruals", "accruals", ("period",), "compute the accruals"),
    Call("register_vendor", "vendor", ("vendor_name",), "register the vendor"),
    Call("archive_ledger", "archived", ("ledger_id",), "archive the ledger"),
)
METHODS = (
    Call("reconcile_batch", "report", ("batch",), "reconcile the batch"),
    Call("freeze_account", "frozen", ("account",), "freeze the account"),
    Call("list_postings", "postings", ("account",), "list the postings"),
    Call("transfer_funds", "transfer", ("source", "target", "amount"), "transfer the funds"),
    Call("rollback_posting", "reverted", ("posting_id",), "roll back the posting"),
    Call("summarize_period", "summary", ("period",), "summarize the period"),
)
CLASSES = ("LedgerClient", "Money", "PostingRule", "JournalExporter")

_VERBS = (
    "handle",
    "process",
    "run",
    "sync",
    "settle",
    "review",
    "prepare",
    "apply",
    "finalize",
    "check",
    "refresh",
    "update",
)
_NOUNS = (
    "invoice",
    "customer",
    "month_end",
    "refund",
    "chargeback",
    "deposit",
    "payroll",
    "subscription",
    "vendor_bill",
    "fee",
    "settlement",
    "ledger_day",
    "tax",
    "rebate",
)


def write_sdk(root: Path) -> Path:
    """The `ledgerlink` SDK repository: a package of functions, a client class and models."""
    package = root / "src" / "ledgerlink"
    package.mkdir(parents=True)
    functions = "\n\n".join(
        textwrap.dedent(
            f'''
            def {call.name}({", ".join(call.args)}):
                """{call.comment.capitalize()}."""
                return _transport().request("{call.name}", {", ".join(call.args)})
            '''
        ).strip()
        for call in FUNCTIONS
    )
    (package / "__init__.py").write_text(
        '"""ledgerlink: the internal general-ledger SDK."""\n\n'
        "from ledgerlink.client import LedgerClient\n"
        "from ledgerlink.models import JournalExporter, Money, PostingRule\n\n\n"
        "def _transport():\n    return LedgerClient.default()\n\n\n" + functions + "\n"
    )
    methods = "\n\n".join(
        textwrap.indent(
            textwrap.dedent(
                f'''
                def {call.name}(self, {", ".join(call.args)}):
                    """{call.comment.capitalize()}."""
                    return self._post("{call.name}", {", ".join(call.args)})
                '''
            ).strip(),
            "    ",
        )
        for call in METHODS
    )
    (package / "client.py").write_text(
        '"""The ledger service client."""\n\n\n'
        "class LedgerClient:\n"
        "    def __init__(self, endpoint):\n        self.endpoint = endpoint\n\n"
        "    @classmethod\n    def default(cls):\n        return cls('ledger.internal')\n\n"
        "    def request(self, name, *args):\n        return self._post(name, *args)\n\n"
        "    def _post(self, name, *args):\n        return (self.endpoint, name, args)\n\n"
        + methods
        + "\n"
    )
    (package / "errors.py").write_text(
        '"""Errors of the ledger."""\n\n\nclass LedgerError(Exception):\n    pass\n'
    )
    (package / "models.py").write_text(
        '"""Value types of the ledger."""\n\n\n'
        "class Money:\n    def __init__(self, amount, currency):\n"
        "        self.amount = amount\n        self.currency = currency\n\n\n"
        "class PostingRule:\n    def __init__(self, account, ratio):\n"
        "        self.account = account\n        self.ratio = ratio\n\n\n"
        "class JournalExporter:\n    def __init__(self, fmt):\n        self.fmt = fmt\n\n"
        "    def write_journal(self, journal, path):\n        return (self.fmt, journal, path)\n"
    )
    return root


def _statement(rng: random.Random, call: Call, through_client: bool) -> list[str]:
    receiver = "client" if through_client else "ledgerlink"
    lines = []
    if rng.random() < 0.8:
        lines.append(f"# {call.comment}")
    lines.append(f"{call.result} = {receiver}.{call.name}({', '.join(call.args)})")
    follow = rng.choice(
        (
            f"log.info('{call.name} done: %s', {call.result})",
            f"results.append({call.result})",
            f"if not {call.result}:\n    raise LedgerError('{call.name} failed')",
            f"audit.record('{call.name}', {call.result})",
            "",
        )
    )
    if follow:
        lines.extend(follow.split("\n"))
    return lines


def _filler(rng: random.Random) -> list[str]:
    name = rng.choice(("retries", "threshold", "limit", "window", "batch_size", "cutoff"))
    value = rng.randint(2, 9999)
    return rng.choice(
        (
            [f"{name} = {value}"],
            [f"{name} = max({value}, len(results))"],
            [f"for item in results[:{value % 17 + 1}]:", "    log.debug('item %s', item)"],
            [f"log.debug('{rng.choice(_NOUNS)} step {value}')"],
        )
    )


def _function(rng: random.Random, used: set[str]) -> list[str]:
    while True:
        name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
        if name not in used:
            used.add(name)
            break
    calls = [
        (call, call in METHODS) for call in rng.sample(FUNCTIONS + METHODS, k=rng.randint(2, 4))
    ]
    params = sorted({arg for call, _ in calls for arg in call.args})
    body: list[str] = [f'"""{name.replace("_", " ").capitalize()} for the ledger."""']
    body.append("results = []")
    if any(through_client for _, through_client in calls):
        body.append("client = LedgerClient(endpoint)")
        params.append("endpoint")
    for call, through_client in calls:
        if rng.random() < 0.3:
            body.extend(_filler(rng))
        body.extend(_statement(rng, call, through_client))
    body.append(f"return {calls[-1][0].result}")
    return [f"def {name}({', '.join(params)}):", *(f"    {line}" for line in body)]


def write_consumers(root: Path, *, files: int, seed: int = 7) -> Path:
    """A repository of `files` modules that use `ledgerlink`, each different."""
    rng = random.Random(seed)
    for index in range(files):
        package = root / "services" / f"team_{index % 6}"
        package.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        lines = [
            f'"""{rng.choice(_NOUNS).replace("_", " ").capitalize()} workflows, part {index}."""',
            "",
            "import logging",
            "",
            "import ledgerlink",
            "from ledgerlink import LedgerClient",
            "from ledgerlink.errors import LedgerError",
            "",
            "from services import audit",
            "",
            f"log = logging.getLogger('{rng.choice(_NOUNS)}.{index}')",
        ]
        for _ in range(rng.randint(2, 4)):
            lines += ["", "", *_function(rng, used)]
        (package / f"{rng.choice(_NOUNS)}_{index}.py").write_text("\n".join(lines) + "\n")
    return root


def git_init(root: Path) -> None:
    """Make `root` a one-commit git repository (to clone it through a file:// URL)."""

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
            cwd=root,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "initial")
