"""A real, certified OpenID Provider (`oidc-provider` on Node) issuing Keycloak-shaped tokens.

`tests/oidc/server.mjs` serves realms `cove` and `other` at `/realms/<realm>` on one port.
`oidc_provider` is one instance for the session (tests that only read from it);
`fresh_oidc_provider` starts a private instance for tests that rotate its keys or stop it.
On a fresh clone the first use runs `npm ci` in tests/oidc (the lock file is committed).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.platform.local.procs import (
    StackError,
    free_port,
    http_ok,
    spawn,
    stop_process_group,
    wait_until,
)

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"


class OidcProvider:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.admin_token = secrets.token_urlsafe(16)
        self.log_file = log_dir / f"oidc-provider-{self.port}.log"
        self.proc = spawn(
            ["node", "server.mjs", "--port", str(self.port), "--realms", "cove,other"],
            env={**os.environ, "OIDC_TEST_ADMIN_TOKEN": self.admin_token},
            log_file=self.log_file,
            cwd=OIDC_DIR,
        )
        try:
            wait_until(
                lambda: http_ok(f"{self.issuer()}/.well-known/openid-configuration"),
                timeout=20,
                what="oidc-provider",
                alive=lambda: self.proc.poll() is None,
                log_file=self.log_file,
            )
        except BaseException:
            self.stop()
            raise
        self.http = httpx.Client(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def issuer(self, realm: str = "cove") -> str:
        return f"{self.url}/realms/{realm}"

    def token(self, client: str, *, realm: str = "cove", resource: str | None = None) -> str:
        """An access token for the test user `client` (client_credentials, its own secret)."""
        data = {"grant_type": "client_credentials"}
        if resource is not None:
            data["resource"] = resource
        resp = self.http.post(
            f"{self.issuer(realm)}/token", data=data, auth=(client, f"{client}-secret")
        )
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["access_token"]
        return token

    def jwks(self, realm: str = "cove") -> dict[str, Any]:
        document: dict[str, Any] = self.http.get(f"{self.issuer(realm)}/jwks").json()
        return document

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        resp = self.http.request(
            method, f"{self.url}/__test{path}", headers={"x-test-admin-token": self.admin_token}
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def rotate(self, realm: str = "cove", *, retire: bool = False) -> str:
        """Sign with a new RSA key from now on; `retire` stops publishing the older ones."""
        suffix = "?retire=1" if retire else ""
        kid: str = self._admin("POST", f"/realms/{realm}/rotate{suffix}")["kid"]
        return kid

    def jwks_requests(self, realm: str = "cove") -> int:
        count: int = self._admin("GET", f"/realms/{realm}/stats")["jwks"]
        return count

    def token_requests(self, realm: str = "cove") -> int:
        count: int = self._admin("GET", f"/realms/{realm}/stats")["token"]
        return count

    def stop(self) -> None:
        if hasattr(self, "http"):
            self.http.close()
        stop_process_group(self.proc.pid, grace=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _ensure_node_modules() -> None:
    if (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("node and npm are needed to run the test OIDC provider (tests/oidc)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=OIDC_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {OIDC_DIR} failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def oidc_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _ensure_node_modules()
    return tmp_path_factory.mktemp("oidc")


def start_provider(log_dir: Path) -> OidcProvider:
    try:
        return OidcProvider(log_dir)
    except StackError as first:
        # Seen once in many runs: a start that stalled (no ready line) on a busy machine.
        # One more try on a new port; a second failure is real and reported with both logs.
        try:
            return OidcProvider(log_dir)
        except StackError as second:
            raise StackError(f"{first}\n--- retry ---\n{second}") from second


@pytest.fixture(scope="session")
def oidc_provider(oidc_log_dir: Path) -> Iterator[OidcProvider]:
    provider = start_provider(oidc_log_dir)
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def fresh_oidc_provider(oidc_log_dir: Path) -> Iterator[OidcProvider]:
    provider = start_provider(oidc_log_dir)
    try:
        yield provider
    finally:
        provider.stop()


# ---- hand-made tokens -------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(header, payload, signature segment) of a compact JWS, unverified."""
    header, payload, signature = token.split(".")

    def load(segment: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
        return value

    return load(header), load(payload), signature


def reassemble(
    token: str,
    *,
    header: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    payload: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> str:
    """The token with its header and/or payload changed and its signature kept."""
    head, body, signature = token_parts(token)
    if header is not None:
        head = header(head)
    if payload is not None:
        body = payload(body)
    return f"{b64url_json(head)}.{b64url_json(body)}.{signature}"
