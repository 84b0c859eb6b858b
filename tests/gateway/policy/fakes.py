"""Realistic-format fake credentials and look-alikes, generated at test time.

Nothing here is a live key: every value is drawn from a seeded RNG with each vendor's
alphabet, length and prefix, so the repository holds no real-looking secrets as literals.
Templates mark the value with @@value@@ and the credential's name with @@key@@ (snake case),
@@KEY@@ (upper snake), @@keyCamel@@, @@KeyPascal@@, @@key.dotted@@ and @@key-kebab@@.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = LOWER + UPPER + DIGITS
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
BASE32 = UPPER + "234567"
# Symbols that survive unquoted in .env, YAML, INI and connection strings.
SAFE_SYMBOLS = "!@%^*-_+=.?~"
# Symbols that may appear inside a quoted string literal.
QUOTED_SYMBOLS = SAFE_SYMBOLS + "#$&;,()[]{}|:/ "


@dataclass(frozen=True)
class Secret:
    """A fake secret embedded in a context: `text[start:end]` is the secret."""

    text: str
    start: int
    end: int
    type: str
    context: str


@dataclass(frozen=True)
class LookAlike:
    text: str
    kind: str


def key_forms(words: Sequence[str]) -> dict[str, str]:
    snake = "_".join(words)
    camel = words[0] + "".join(w.capitalize() for w in words[1:])
    return {
        "key": snake,
        "KEY": snake.upper(),
        "keyCamel": camel,
        "KeyPascal": camel[0].upper() + camel[1:],
        "key.dotted": ".".join(words),
        "key-kebab": "-".join(words),
    }


def render(template: str, value: str, words: Sequence[str] = ("secret",)) -> tuple[str, int, int]:
    """The template with its key and value filled in, and the value's span."""
    forms = key_forms(words)
    before, sep, after = template.partition("@@value@@")
    assert sep, f"template without @@value@@: {template!r}"
    for name, form in forms.items():
        before = before.replace(f"@@{name}@@", form)
        after = after.replace(f"@@{name}@@", form)
    return before + value + after, len(before), len(before) + len(value)


class Fakes:
    """Generators of fake credentials in each vendor's real format."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(options)

    # -- cloud -----------------------------------------------------------------------------

    def aws_access_key_id(self) -> str:
        return self.pick(["AKIA", "ASIA"]) + self.s(BASE32, 16)

    def aws_secret_access_key(self) -> str:
        while True:
            value = self.s(B64, 40)
            # Real keys mix cases and digits; a draw without all three is not a realistic key.
            if all(any(c in group for c in value) for group in (UPPER, LOWER, DIGITS)):
                return value

    def gcp_api_key(self) -> str:
        return "AIza" + self.s(B64URL, 35)

    def azure_storage_account_key(self) -> str:
        return self.s(B64, 86) + "=="

    def azure_client_secret(self) -> str:
        tail = ALNUM + "_~.-"
        return self.s(tail, 3) + self.pick(DIGITS) + "Q~" + self.s(tail, 34)

    def private_key_body(self, lines: int = 12) -> list[str]:
        return [self.s(B64, 64) for _ in range(lines)] + [self.s(B64, 24) + "=="]

    def pem(self, label: str | None = None, newline: str = "\n") -> str:
        label = label or self.pick(
            ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY"]
        )
        lines = [f"-----BEGIN {label}-----", *self.private_key_body(), f"-----END {label}-----"]
        return newline.join(lines)

    def pgp_private_key(self) -> str:
        body = self.private_key_body(10)
        return "\n".join(
            [
                "-----BEGIN PGP PRIVATE KEY BLOCK-----",
                "",
                *body,
                "=" + self.s(B64, 4),
                "-----END PGP PRIVATE KEY BLOCK-----",
            ]
        )

    def gcp_service_account(self) -> tuple[str, int, int]:
        project = self.pick(["payments-prod", "risk-ml-42", "platform-ci"])
        key = self.pem("PRIVATE KEY", newline="\\n")
        doc = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": self.s(HEX, 40),
            "private_key": "@@KEY@@",
            "client_email": f"deployer@{project}.iam.gserviceaccount.com",
            "client_id": self.s(DIGITS, 21),
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        text = json.dumps(doc, indent=2)
        # json.dumps would escape the backslashes of the \n sequences; splice the key in raw.
        start = text.index("@@KEY@@")
        text = text.replace("@@KEY@@", key + "\\n")
        return text, start, start + len(key)

    # -- VCS -------------------------------------------------------------------------------

    def github_token(self) -> str:
        if self.rng.random() < 0.2:
            return f"github_pat_{self.s(ALNUM, 22)}_{self.s(ALNUM, 59)}"
        return f"gh{self.pick('pousr')}_{self.s(ALNUM, 36)}"

    def gitlab_token(self) -> str:
        return self.pick(["glpat-", "gldt-", "glrt-", "glptt-"]) + self.s(B64URL, 20)

    def bitbucket_app_password(self) -> str:
        return "ATBB" + self.s(ALNUM, 32)

    def atlassian_api_token(self) -> str:
        return "ATATT3" + self.s(B64URL, 180)

    # -- chat, payment, API ----------------------------------------------------------------

    def slack_token(self) -> str:
        kind = self.pick("bpa")
        if kind == "p":
            ids = "-".join(self.s(DIGITS, n) for n in (12, 12, 13))
            return f"xoxp-{ids}-{self.s(HEX, 32)}"
        return f"xox{kind}-{self.s(DIGITS, 12)}-{self.s(DIGITS, 13)}-{self.s(ALNUM, 24)}"

    def slack_webhook_path(self) -> str:
        return f"T{self.s(UPPER + DIGITS, 10)}/B{self.s(UPPER + DIGITS, 10)}/{self.s(ALNUM, 24)}"

    def stripe_secret_key(self) -> str:
        return self.pick(["sk_live_", "sk_test_"]) + self.s(ALNUM, self.pick([24, 99]))

    def stripe_restricted_key(self) -> str:
        return "rk_live_" + self.s(ALNUM, 24)

    def twilio_api_key(self) -> str:
        return "SK" + self.s(HEX, 32)

    def sendgrid_api_key(self) -> str:
        return f"SG.{self.s(B64URL, 22)}.{self.s(B64URL, 43)}"

    def openai_api_key(self) -> str:
        if self.rng.random() < 0.5:
            return f"sk-{self.s(ALNUM, 20)}T3BlbkFJ{self.s(ALNUM, 20)}"
        return f"sk-proj-{self.s(B64URL, 74)}T3BlbkFJ{self.s(B64URL, 74)}"

    def anthropic_api_key(self) -> str:
        return f"sk-ant-api03-{self.s(B64URL, 93)}AA"

    def npm_token(self) -> str:
        return "npm_" + self.s(ALNUM, 36)

    def pypi_token(self) -> str:
        return "pypi-AgEIcHlwaS5vcmc" + self.s(B64URL, self.rng.randint(60, 160))

    def huggingface_token(self) -> str:
        return "hf_" + self.s(LOWER + UPPER, 34)

    def jwt(self) -> str:
        def part(obj: dict[str, object]) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        header = {"alg": self.pick(["HS256", "RS256", "ES256"]), "typ": "JWT"}
        payload = {
            "sub": self.s(DIGITS, 8),
            "name": self.pick(["ana", "bo", "chen"]),
            "iat": self.rng.randint(1_600_000_000, 1_800_000_000),
            "exp": self.rng.randint(1_800_000_000, 1_900_000_000),
        }
        sig_len = self.pick([43, 86, 342])
        return f"{part(header)}.{part(payload)}.{self.s(B64URL, sig_len)}"

    # -- passwords and generic secrets -----------------------------------------------------

    def password(self, symbols: str = SAFE_SYMBOLS) -> str:
        """A human-chosen or generated password: mixed classes, 8-24 characters."""
        while True:
            style = self.rng.random()
            if style < 0.3:
                word = self.pick(["Summer", "harbor", "Falcon", "quartz", "Maple", "orbit"])
                value = word + self.s(DIGITS, self.rng.randint(2, 4)) + self.pick(symbols)
            else:
                n = self.rng.randint(10, 24)
                value = self.s(ALNUM + symbols, n)
            classes = sum(
                any(c in group for c in value) for group in (LOWER, UPPER, DIGITS, symbols)
            )
            if classes >= 3 and value.strip() == value and "  " not in value:
                return value

    def generic_secret(self) -> str:
        kind = self.rng.random()
        if kind < 0.25:
            return self.s(HEX, self.pick([32, 40, 64]))
        if kind < 0.5:
            return base64.b64encode(self.rng.randbytes(self.pick([24, 32, 48]))).decode()
        if kind < 0.75:
            return self.s(ALNUM, self.rng.randint(20, 48))
        return base64.urlsafe_b64encode(self.rng.randbytes(32)).rstrip(b"=").decode()

    # -- look-alike values -----------------------------------------------------------------

    def uuid(self) -> str:
        h = self.s(HEX, 32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self.pick('89ab')}{h[17:20]}-{h[20:]}"

    def sha(self, n: int = 40) -> str:
        return self.s(HEX, n)


# ---- contexts -------------------------------------------------------------------------------

FILLER: dict[str, list[str]] = {
    "python": [
        "import os",
        "import logging",
        "logger = logging.getLogger(__name__)",
        "def connect(timeout: float = 5.0) -> None:",
        "    retries = 3",
        "# TODO: move to settings",
        "TIMEOUT_SECONDS = 30",
    ],
    "js": [
        "import axios from 'axios';",
        "const retries = 3;",
        "// loaded once at startup",
        "export const baseUrl = '/api/v1';",
        "module.exports = { retries };",
    ],
    "yaml": ["version: '3.8'", "services:", "  replicas: 2", "# staging values", "debug: false"],
    "env": ["NODE_ENV=production", "PORT=8080", "# database", "LOG_LEVEL=info"],
    "shell": ["#!/usr/bin/env bash", "set -euo pipefail", 'cd "$(dirname "$0")"', "echo done"],
    "json": [],
    "java": [
        "package com.acme.payments;",
        "import java.util.Properties;",
        "public class Config {",
        "    private int retries = 3;",
        "}",
    ],
    "go": ["package config", 'import "os"', "var Retries = 3"],
    "xml": ['<?xml version="1.0" encoding="UTF-8"?>', "<settings>", "</settings>"],
    "properties": ["server.port=8080", "spring.application.name=payments"],
}

# Contexts for a value assigned to a credential-like name.
ASSIGNMENT_TEMPLATES: dict[str, list[str]] = {
    "python": [
        '@@key@@ = "@@value@@"',
        "@@KEY@@ = '@@value@@'",
        'settings = {\n    "@@key@@": "@@value@@",\n    "timeout": 30,\n}',
        'client = Client(host="db.internal", @@key@@="@@value@@")',
        'class Settings(BaseSettings):\n    @@key@@: str = "@@value@@"',
        'os.environ["@@KEY@@"] = "@@value@@"',
        'self.@@key@@ = "@@value@@"',
    ],
    "js": [
        "const @@keyCamel@@ = '@@value@@';",
        'export default { @@keyCamel@@: "@@value@@", retries: 3 };',
        'config.@@keyCamel@@ = "@@value@@";',
        'let @@keyCamel@@: string = "@@value@@";',
        "process.env.@@KEY@@ = `@@value@@`;",
    ],
    "yaml": [
        "@@key@@: @@value@@",
        '@@key@@: "@@value@@"',
        "database:\n  @@key@@: '@@value@@'\n  port: 5432",
        "environment:\n  - @@KEY@@=@@value@@",
        "env:\n  @@KEY@@: @@value@@",
    ],
    "env": ["@@KEY@@=@@value@@", 'export @@KEY@@="@@value@@"', "@@KEY@@='@@value@@'"],
    "shell": [
        "export @@KEY@@=@@value@@",
        "docker run -e @@KEY@@=@@value@@ acme/app:latest",
        "@@KEY@@='@@value@@' ./deploy.sh",
    ],
    "json": [
        '{\n  "@@keyCamel@@": "@@value@@",\n  "region": "eu-west-1"\n}',
        '{"@@key@@":"@@value@@"}',
    ],
    "java": [
        'private static final String @@KEY@@ = "@@value@@";',
        'props.setProperty("@@key.dotted@@", "@@value@@");',
        'String @@keyCamel@@ = "@@value@@";',
    ],
    "go": ['@@KeyPascal@@: "@@value@@",', '@@keyCamel@@ := "@@value@@"'],
    "xml": ["<@@keyCamel@@>@@value@@</@@keyCamel@@>"],
    "properties": ["@@key.dotted@@=@@value@@", "@@key.dotted@@ = @@value@@"],
}


# Templates whose value is unquoted: the value must survive there verbatim.
def is_bare(template: str) -> bool:
    i = template.index("@@value@@")
    return template[i - 1] not in "\"'`" and template[i - 1] != ">"


PASSWORD_NAMES: list[tuple[str, ...]] = [
    ("password",),
    ("db", "password"),
    ("postgres", "password"),
    ("mysql", "root", "password"),
    ("smtp", "password"),
    ("redis", "password"),
    ("admin", "pass"),
    ("passwd",),
    ("keystore", "passphrase"),
    ("ldap", "bind", "password"),
]
SECRET_NAMES: list[tuple[str, ...]] = [
    ("api", "key"),
    ("secret", "key"),
    ("client", "secret"),
    ("auth", "token"),
    ("access", "token"),
    ("jwt", "secret"),
    ("webhook", "secret"),
    ("encryption", "key"),
    ("app", "secret"),
    ("refresh", "token"),
    ("session", "secret"),
    ("bot", "token"),
    ("signing", "key"),
    ("private", "api", "key"),
]

# Prefix tokens: names they are usually assigned to.
TOKEN_NAMES: dict[str, list[tuple[str, ...]]] = {
    "aws_access_key_id": [("aws", "access", "key", "id")],
    "gcp_api_key": [("google", "api", "key"), ("firebase", "api", "key"), ("maps", "key")],
    "azure_client_secret": [("azure", "client", "secret")],
    "github_token": [("github", "token"), ("gh", "token"), ("git", "token")],
    "gitlab_token": [("gitlab", "token"), ("ci", "job", "token")],
    "bitbucket_app_password": [("bitbucket", "app", "password")],
    "atlassian_api_token": [("jira", "api", "token"), ("atlassian", "token")],
    "slack_token": [("slack", "bot", "token"), ("slack", "token")],
    "stripe_secret_key": [("stripe", "secret", "key"), ("stripe", "key")],
    "stripe_restricted_key": [("stripe", "restricted", "key")],
    "twilio_api_key": [("twilio", "api", "key")],
    "sendgrid_api_key": [("sendgrid", "api", "key")],
    "openai_api_key": [("openai", "api", "key")],
    "anthropic_api_key": [("anthropic", "api", "key")],
    "npm_token": [("npm", "token")],
    "pypi_token": [("pypi", "token"), ("twine", "password")],
    "huggingface_token": [("hf", "token"), ("huggingface", "token")],
    "jwt": [("id", "token"), ("access", "token"), ("jwt",)],
}

# Contexts where a prefixed token sits without a telling name.
FREE_TEMPLATES: dict[str, list[str]] = {
    "github_token": [
        "git clone https://@@value@@@github.com/acme/payments.git",
        'curl -H "Authorization: token @@value@@" https://api.github.com/user',
        "# rotated 2024-05: @@value@@",
    ],
    "gitlab_token": [
        'curl --header "PRIVATE-TOKEN: @@value@@" "https://gitlab.acme.io/api/v4/projects"',
    ],
    "slack_token": ["client = WebClient(token='@@value@@')", "// bot: @@value@@"],
    "stripe_secret_key": ["stripe.api_key = '@@value@@'", 'Stripe.apiKey = "@@value@@";'],
    "openai_api_key": ["client = OpenAI(api_key='@@value@@')", "openai.api_key = '@@value@@'"],
    "anthropic_api_key": ["client = anthropic.Anthropic(api_key='@@value@@')"],
    "npm_token": ["//registry.npmjs.org/:_authToken=@@value@@"],
    "pypi_token": ["[pypi]\nusername = __token__\npassword = @@value@@"],
    "jwt": [
        'curl -H "Authorization: Bearer @@value@@" https://api.acme.io/v1/me',
        'localStorage.setItem("session", "@@value@@");',
        'headers = {"Authorization": f"Bearer @@value@@"}',
    ],
    "aws_access_key_id": ["[default]\naws_access_key_id = @@value@@\nregion = eu-west-1"],
    "gcp_api_key": ['<script src="https://maps.googleapis.com/maps/api/js?key=@@value@@">'],
    "sendgrid_api_key": ["sg = SendGridAPIClient('@@value@@')"],
    "twilio_api_key": ["client = Client('@@value@@', api_secret, account_sid)"],
    "huggingface_token": ["huggingface-cli login --token @@value@@"],
}


class Corpus:
    """Secrets in realistic contexts and look-alikes that must not be flagged."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fakes = Fakes(self.rng)

    def _wrap(self, language: str, text: str, start: int, end: int) -> tuple[str, int, int]:
        """Surround a snippet with a few lines of ordinary code of the same language."""
        pool = FILLER.get(language, [])
        before = [self.rng.choice(pool) for _ in range(self.rng.randint(0, 2))] if pool else []
        after = [self.rng.choice(pool) for _ in range(self.rng.randint(0, 2))] if pool else []
        head = "".join(line + "\n" for line in before)
        tail = "".join("\n" + line for line in after)
        return head + text + tail, start + len(head), end + len(head)

    def _assignment(
        self, value_of: Callable[[bool], str], names: Sequence[tuple[str, ...]], type_: str
    ) -> Secret:
        language = self.rng.choice(list(ASSIGNMENT_TEMPLATES))
        template = self.rng.choice(ASSIGNMENT_TEMPLATES[language])
        words = self.rng.choice(list(names))
        value = value_of(is_bare(template))
        text, start, end = render(template, value, words)
        text, start, end = self._wrap(language, text, start, end)
        return Secret(text, start, end, type_, f"{language}:assignment")

    def secrets(self, per_type: int) -> list[Secret]:
        f = self.fakes
        out: list[Secret] = []
        tokens: dict[str, Callable[[], str]] = {
            "aws_access_key_id": f.aws_access_key_id,
            "gcp_api_key": f.gcp_api_key,
            "azure_client_secret": f.azure_client_secret,
            "github_token": f.github_token,
            "gitlab_token": f.gitlab_token,
            "bitbucket_app_password": f.bitbucket_app_password,
            "atlassian_api_token": f.atlassian_api_token,
            "slack_token": f.slack_token,
            "stripe_secret_key": f.stripe_secret_key,
            "stripe_restricted_key": f.stripe_restricted_key,
            "twilio_api_key": f.twilio_api_key,
            "sendgrid_api_key": f.sendgrid_api_key,
            "openai_api_key": f.openai_api_key,
            "anthropic_api_key": f.anthropic_api_key,
            "npm_token": f.npm_token,
            "pypi_token": f.pypi_token,
            "huggingface_token": f.huggingface_token,
            "jwt": f.jwt,
        }
        for type_, make in tokens.items():
            for i in range(per_type):
                free = FREE_TEMPLATES.get(type_)
                if free and i % 3 == 0:
                    template = self.rng.choice(free)
                    text, start, end = render(template, make())
                    out.append(Secret(text, start, end, type_, "free"))
                else:
                    out.append(
                        self._assignment(lambda _bare, m=make: m(), TOKEN_NAMES[type_], type_)
                    )
        for _ in range(per_type):
            out.append(self._aws_secret())
            out.append(self._azure_connection_string())
            out.append(self._slack_webhook())
            out.append(self._private_key())
            out.append(self._gcp_service_account())
            out.append(self._url_password())
            out.append(self._connection_string())
            out.append(self._bearer())
            out.append(self._twilio_auth_token())
        for _ in range(per_type * 3):
            out.append(self._assignment(self._password_value, PASSWORD_NAMES, "password"))
            out.append(
                self._assignment(lambda _bare: f.generic_secret(), SECRET_NAMES, "generic_secret")
            )
        return out

    def _password_value(self, bare: bool) -> str:
        return self.fakes.password(SAFE_SYMBOLS if bare else QUOTED_SYMBOLS.replace(" ", ""))

    def _aws_secret(self) -> Secret:
        f = self.fakes
        key_id, secret = f.aws_access_key_id(), f.aws_secret_access_key()
        choice = self.rng.randrange(4)
        if choice == 0:
            text = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        elif choice == 1:
            text = f"export AWS_ACCESS_KEY_ID={key_id}\nexport AWS_SECRET_ACCESS_KEY={secret}\n"
        elif choice == 2:
            text = (
                "s3 = boto3.client(\n    's3',\n"
                f"    aws_access_key_id='{key_id}',\n    aws_secret_access_key='{secret}',\n)"
            )
        else:
            text = f"Access key ID,Secret access key\n{key_id},{secret}\n"
        start = text.index(secret)
        return Secret(text, start, start + len(secret), "aws_secret_access_key", "aws")

    def _azure_connection_string(self) -> Secret:
        key = self.fakes.azure_storage_account_key()
        account = "acme" + self.fakes.s(LOWER + DIGITS, 8)
        conn = (
            f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key};"
            "EndpointSuffix=core.windows.net"
        )
        template = self.rng.choice(
            [
                '{\n  "ConnectionStrings": {\n    "Storage": "@@value@@"\n  }\n}',
                "AZURE_STORAGE_CONNECTION_STRING=@@value@@",
                'var client = new BlobServiceClient("@@value@@");',
            ]
        )
        text, start, _ = render(template, conn)
        start += conn.index(key)
        return Secret(text, start, start + len(key), "azure_storage_account_key", "azure")

    def _slack_webhook(self) -> Secret:
        path = self.fakes.slack_webhook_path()
        url = f"https://hooks.slack.com/services/{path}"
        template = self.rng.choice(
            [
                'SLACK_WEBHOOK_URL="@@value@@"',
                "requests.post('@@value@@', json={'text': msg})",
                "slack:\n  webhook: @@value@@",
            ]
        )
        text, start, _ = render(template, url)
        start += url.index(path)
        return Secret(text, start, start + len(path), "slack_webhook_url", "slack")

    def _private_key(self) -> Secret:
        f = self.fakes
        choice = self.rng.randrange(5)
        if choice == 4:
            key = f.pgp_private_key()
            text, start, end = render("@@value@@\n", key)
            return Secret(text, start, end, "private_key", "pgp")
        key = f.pem()
        if choice == 0:
            text, start, end = render("@@value@@\n", key)
        elif choice == 1:
            text, start, end = render('PRIVATE_KEY = """@@value@@\n"""', key)
        elif choice == 2:
            indented = key.replace("\n", "\n    ")
            text, start, end = render("tls:\n  key: |\n    @@value@@\n  port: 443", indented)
        else:
            escaped = key.replace("\n", "\\n")
            text, start, end = render('{"key": "@@value@@\\n"}', escaped)
        return Secret(text, start, end, "private_key", "pem")

    def _gcp_service_account(self) -> Secret:
        text, start, end = self.fakes.gcp_service_account()
        return Secret(text, start, end, "gcp_service_account_key", "gcp")

    def _url_password(self) -> Secret:
        f = self.fakes
        password = f.password(SAFE_SYMBOLS.replace("@", "").replace("%", ""))
        user = self.rng.choice(["deploy", "ci-bot", "svc_payments", "alice"])
        host = self.rng.choice(["git.acme.io", "nexus.internal:8081", "ftp.acme.io"])
        scheme = self.rng.choice(["https", "http", "ftp", "smtp"])
        url = f"{scheme}://{user}:{password}@{host}/repo"
        template = self.rng.choice(
            [
                'REGISTRY_URL="@@value@@"',
                "url: @@value@@",
                "fetch('@@value@@')",
                "git clone @@value@@",
            ]
        )
        text, start, _ = render(template, url)
        start += len(f"{scheme}://{user}:")
        return Secret(text, start, start + len(password), "url_password", "url")

    def _connection_string(self) -> Secret:
        f = self.fakes
        password = f.password(SAFE_SYMBOLS.replace("@", "").replace("%", "").replace("?", ""))
        choice = self.rng.randrange(6)
        if choice == 0:
            scheme = self.rng.choice(
                [
                    "postgres",
                    "postgresql",
                    "mysql",
                    "mongodb+srv",
                    "redis",
                    "amqp",
                    "postgresql+psycopg",
                ]
            )
            value = f"{scheme}://app_user:{password}@db.acme.internal:5432/payments"
            template = self.rng.choice(
                [
                    'DATABASE_URL="@@value@@"',
                    "url: @@value@@",
                    'engine = create_engine("@@value@@")',
                ]
            )
        elif choice == 1:
            value = (
                f"Server=tcp:acme.database.windows.net,1433;Initial Catalog=payments;"
                f"User ID=app;Password={password};Encrypt=True;"
            )
            template = '"ConnectionStrings": { "Default": "@@value@@" }'
        elif choice == 2:
            value = f"jdbc:mysql://db.acme.internal:3306/payments?user=app&password={password}&useSSL=true"
            template = 'String url = "@@value@@";'
        elif choice == 3:
            value = f"host=db.acme.internal port=5432 dbname=payments user=app password={password}"
            template = 'conn = psycopg.connect("@@value@@")'
        elif choice == 4:
            value = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=db;UID=sa;PWD={password};"
            template = 'cnxn = pyodbc.connect("@@value@@")'
        else:
            value = f"jdbc:postgresql://app:{password}@db.acme.internal:5432/payments"
            template = "spring.datasource.url=@@value@@"
        text, start, _ = render(template, value)
        start += value.index(password)
        return Secret(text, start, start + len(password), "connection_string_password", "connstr")

    def _bearer(self) -> Secret:
        token = self.fakes.s(ALNUM + "-_.", self.rng.randint(32, 64))
        template = self.rng.choice(
            [
                "Authorization: Bearer @@value@@",
                'curl -H "Authorization: Bearer @@value@@" https://api.acme.io/v1/charges',
                'headers = {"Authorization": "Bearer @@value@@"}',
                'req.setHeader("Authorization", "Bearer @@value@@");',
            ]
        )
        text, start, end = render(template, token)
        return Secret(text, start, end, "bearer_token", "http")

    def _twilio_auth_token(self) -> Secret:
        token = self.fakes.s(HEX, 32)
        template = self.rng.choice(
            [
                "TWILIO_AUTH_TOKEN=@@value@@",
                'twilio_auth_token = "@@value@@"',
                "twilio:\n  auth_token: '@@value@@'",
            ]
        )
        text, start, end = render(template, token)
        return Secret(text, start, end, "twilio_auth_token", "twilio")

    # -- look-alikes ---------------------------------------------------------------------

    def look_alikes(self, per_kind: int) -> list[LookAlike]:
        makers: dict[str, Callable[[], str]] = {
            "git_sha": self._git_sha,
            "sha256": self._sha256,
            "uuid": self._uuid,
            "env_lookup": self._env_lookup,
            "placeholder": self._placeholder,
            "variable_reference": self._variable_reference,
            "type_annotation": self._type_annotation,
            "docs_fixture": self._docs_fixture,
            "benign_keyword": self._benign_keyword,
            "url_without_password": self._url_without_password,
            "public_material": self._public_material,
            "encoded_data": self._encoded_data,
            "password_hash": self._password_hash,
            "label": self._label,
        }
        return [LookAlike(make(), kind) for kind, make in makers.items() for _ in range(per_kind)]

    def _git_sha(self) -> str:
        sha = self.fakes.sha(40)
        return self.rng.choice(
            [
                f'commit = "{sha}"',
                f"git checkout {sha}",
                f'"sha": "{sha}",',
                f"  rev: {sha}",
                f"# Fixes regression introduced in {sha[:12]}",
                f"revision: {sha}",
                f'const head = "{sha}";',
                f"GIT_COMMIT={sha}",
                f'commit_token = "{sha[:7]}"',
            ]
        )

    def _sha256(self) -> str:
        digest = self.fakes.sha(64)
        b64 = base64.b64encode(self.rng.randbytes(64)).decode()
        return self.rng.choice(
            [
                f'sha256 = "{digest}"',
                f'"integrity": "sha512-{b64}"',
                f"checksum: sha256:{digest}",
                f"FROM python:3.12-slim@sha256:{digest}",
                f'etag = "{self.fakes.sha(32)}"',
                f'file_hash = "{digest}"',
                f"{digest}  dist/cove-0.1.0.tar.gz",
                f'"content_digest": "{digest}"',
                f'cache_key = "{digest}"',
                f'"key": "{self.fakes.sha(32)}"',
            ]
        )

    def _uuid(self) -> str:
        u = self.fakes.uuid()
        return self.rng.choice(
            [
                f'id = "{u}"',
                f'"request_id": "{u}"',
                f"tenant_id: {u}",
                f'UUID.fromString("{u}")',
                f"TRACE_ID={u}",
                f'idempotency_key = "{u}"',
                f'"correlationId": "{u}"',
                f'public_key_id = "{u}"',
            ]
        )

    def _env_lookup(self) -> str:
        name = self.rng.choice(["DB_PASSWORD", "API_KEY", "GITHUB_TOKEN", "SECRET_KEY", "PASSWORD"])
        lower = name.lower()
        camel = key_forms(lower.split("_"))["keyCamel"]
        return self.rng.choice(
            [
                f'{lower} = os.environ["{name}"]',
                f'{lower} = os.getenv("{name}")',
                f'{lower} = os.environ.get("{name}", "")',
                f"{lower}: ${{{name}}}",
                f'{lower}: "${{{name}}}"',
                f"const {camel} = process.env.{name};",
                f"{camel}: process.env.{name},",
                f'String {camel} = System.getenv("{name}");',
                f"{name}=${{{name}:-}}",
                f'{lower}: "{{{{ .Values.{camel} }}}}"',
                f"{lower}: ${{{{ secrets.{name} }}}}",
                f'{lower} = ENV["{name}"]',
                f"$env:{name}",
                f"{name}=$(vault kv get -field={lower} secret/app)",
                f"{lower} = settings.{name}",
                f'{lower}: "%{name}%"',
            ]
        )

    def _placeholder(self) -> str:
        name = self.rng.choice(
            ["password", "api_key", "token", "secret", "client_secret", "DB_PASSWORD"]
        )
        value = self.rng.choice(
            [
                "changeme",
                "<password>",
                "xxx",
                "your-api-key-here",
                "***",
                "",
                "YOUR_API_KEY",
                "<YOUR_TOKEN>",
                "xxxxxxxxxxxxxxxxxxxx",
                "REPLACE_ME",
                "********",
                "[REDACTED]",
                "dummy",
                "placeholder",
                "example-secret",
                "TODO",
                "secret",
                "password",
                "<redacted:password>",
                "{password}",
                "%s",
                "insert-token-here",
                "test",
                "null",
                "None",
                "...",
            ]
        )
        return self.rng.choice(
            [
                f'{name} = "{value}"',
                f'"{name}": "{value}"',
                f"{name}: {value}" if value else f"{name}:",
                f"{name.upper()}={value}",
                f"postgres://user:{value or 'password'}@localhost:5432/app",
                f"Authorization: Bearer {value or '<token>'}",
            ]
        )

    def _variable_reference(self) -> str:
        return self.rng.choice(
            [
                "password = get_password()",
                "conn = connect(host=host, password=password)",
                "token = self.token",
                'api_key = config["api_key"]',
                "secret = args.secret",
                "password = request.form['password']",
                "const token = await getToken();",
                "apiKey: apiKey,",
                "this.password = password;",
                "password := cfg.Password",
                "auth_token = response.json()['access_token']",
                "password=password_from_vault,",
                "client_secret = credentials.client_secret",
                "token = jwt.encode(payload, key, algorithm='HS256')",
                "api_key = api_key or DEFAULT_API_KEY",
                "secret_key = secrets.token_urlsafe(32)",
                'headers["Authorization"] = f"Bearer {token}"',
                "Authorization: Bearer $TOKEN",
                'auth = ("user", password)',
                "password = input('Password: ')",
            ]
        )

    def _type_annotation(self) -> str:
        return self.rng.choice(
            [
                "password: str",
                "password: Optional[str] = None",
                "api_key: SecretStr",
                "token: string;",
                "password?: string;",
                "private String password;",
                "def login(user: str, password: str) -> bool:",
                "secret_key: bytes = b''",
                "    token: str | None = None",
                "func Auth(token string) error {",
                "val password: String? = null",
                "access_token: Mapped[str] = mapped_column(String(64))",
                "password = models.CharField(max_length=128)",
                "api_key = Column(String(64), nullable=False)",
            ]
        )

    def _docs_fixture(self) -> str:
        f = self.fakes
        return self.rng.choice(
            [
                "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                "token: ghp_" + "X" * 36,
                "OPENAI_API_KEY=sk-...",
                "api_key = 'sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'",
                "SLACK_WEBHOOK=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
                f"key = 'AKIA{f.s(UPPER, 9)}EXAMPLE'",
                "stripe.api_key = 'sk_test_...'",
                "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
                'if line.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):',
                "npm_token: npm_0000000000000000000000000000000000",
            ]
        )

    def _benign_keyword(self) -> str:
        return self.rng.choice(
            [
                'token_type = "bearer"',
                "max_tokens = 256",
                'tokenizer = AutoTokenizer.from_pretrained("bigcode/starcoder2-3b")',
                'eos_token = "</s>"',
                'pad_token = "[PAD]"',
                "id = Column(Integer, primary_key=True)",
                'cache_key = f"user:{user_id}:profile"',
                'sort_key = "created_at"',
                'api_key_header = APIKeyHeader(name="X-API-Key")',
                'password_field = "password"',
                "PASSWORD_MIN_LENGTH = 12",
                'token_url = "https://oauth2.googleapis.com/token"',
                'secret_name = "prod/payments/db"',
                'DB_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-Ab12Cd"',
                'credentials_path = "/var/run/secrets/gcp/key.json"',
                "password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt())",
                'next_page_token = "' + self.fakes.s(B64URL, 40) + '"',
                'csrf_token = "' + self.fakes.s(HEX, 32) + '"',
                'auth_method = "oauth2"',
                'ssh_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI'
                + self.fakes.s(B64, 43)
                + ' ops@acme"',
                "secretsmanager = boto3.client('secretsmanager')",
                'KEY_PREFIX = "cove:ratelimit:"',
                'private_key_path = "~/.ssh/id_ed25519"',
                "from sklearn.linear_model import LogisticRegression  # sk-learn",
                'DEFAULT_AUTH = "basic"',
                "tokens = text.split()",
                '"key": "Escape"',
                'keyboard_layout = "en-US"',
                'pk = "pk_live_' + self.fakes.s(ALNUM, 24) + '"',
                'STRIPE_PUBLISHABLE_KEY="pk_test_' + self.fakes.s(ALNUM, 24) + '"',
            ]
        )

    def _url_without_password(self) -> str:
        return self.rng.choice(
            [
                "https://example.com:8443/api/v1/items",
                "git@github.com:acme/payments.git",
                "ssh://git@gitlab.acme.io:2222/platform/cove.git",
                "postgresql://localhost:5432/payments",
                "redis://redis:6379/0",
                "mailto:ops@acme.io",
                "https://ops@acme.io@jira.acme.io/browse/OPS-1",
                "amqp://guest:guest@localhost:5672//",
                "postgres://postgres:postgres@localhost:5432/test",
                "DATABASE_URL=postgres://${DB_USER}:${DB_PASSWORD}@db:5432/app",
                "http://user:pass@localhost:8080",
                "mongodb://root:<password>@mongo:27017",
                "https://user:@example.org/",
                f"url = 'https://{self.fakes.s(LOWER, 6)}.acme.io/{self.fakes.uuid()}'",
                "http://[::1]:8080/health",
                "docker run -u 1000:1000 acme/app",
                'curl -u "$USER:$TOKEN" https://api.acme.io',
            ]
        )

    def _public_material(self) -> str:
        f = self.fakes
        body = "\n".join(f.private_key_body(6))
        return self.rng.choice(
            [
                f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----",
                f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----",
                f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{f.s(B64, 300)} deploy@ci",
                f'public_key = "{f.s(B64, 44)}"',
                f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----",
            ]
        )

    def _encoded_data(self) -> str:
        f = self.fakes
        data_json = base64.urlsafe_b64encode(b'{"theme":"dark","lang":"en"}').decode()
        return self.rng.choice(
            [
                f'img = "data:image/png;base64,{f.s(B64, 120)}"',
                f'"data": "{base64.b64encode(self.rng.randbytes(48)).decode()}"',
                f"state={data_json}",
                f"color: #{f.s(HEX, 6)};",
                "version = " + ".".join(str(self.rng.randint(0, 30)) for _ in range(3)),
                f"timestamp = {self.rng.randint(1_600_000_000_000, 1_800_000_000_000)}",
                f'"nonce": "{f.s(DIGITS, 12)}"',
                f"a.b.c = {f.s(DIGITS, 4)}",
                f'message_id = "<{f.s(HEX, 16)}@mail.acme.io>"',
                f'object_key = "uploads/{f.uuid()}/{f.s(LOWER, 8)}.png"',
            ]
        )

    def _password_hash(self) -> str:
        f = self.fakes
        bcrypt = "$2b$12$" + f.s(ALNUM + "./", 53)
        django = f"pbkdf2_sha256$600000${f.s(ALNUM, 22)}${f.s(B64, 43)}="
        return self.rng.choice(
            [
                f'"password": "{django}"',
                f"password: '{bcrypt}'",
                f'hashed_password = "{bcrypt}"',
                f'"password": "{f.sha(64)}"',
                f"admin:{bcrypt}",
                f'password = "{{SSHA}}{f.s(B64, 32)}"',
            ]
        )

    def _label(self) -> str:
        return self.rng.choice(
            [
                '"password": "Password"',
                '"password": "Mot de passe"',
                '"apiKey": "API Key"',
                '"token": "Token"',
                'password_label = "Enter your password"',
                '<label for="password">Password</label>',
                '"secret": "Secret value shown once"',
                '"passwordHint": "At least 12 characters"',
                '"password": "Passwort"',
                "{ key: 'password', label: 'Password', type: 'password' }",
            ]
        )
