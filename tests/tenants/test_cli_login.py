"""`cove login` / `cove token` / `cove logout` against a real OpenID Provider.

The CLI runs as a subprocess, exactly as a developer runs it; the person approving in a
browser is `SignInPages` filling in oidc-provider's real device-flow pages over HTTP
(tests/oidc/server.mjs: oidc-provider with Keycloak's issuer layout, token claims, refresh
tokens and `slow_down`). See docs/identity.md for what this proves about Keycloak.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson
import pytest

from cove.platform.login.device import DeviceFlow, Endpoints, LoginError
from cove.tenants.identity.claims import principal_for_bu
from cove.tenants.identity.oidc import TokenVerifier
from cove.tenants.principal import Role
from tests.tenants.conftest import OidcProvider
from tests.tenants.oidc_pages import SignInPages

ALICE_SUB = "6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d01"


class Cli:
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.env = {**os.environ, "COVE_CONFIG_DIR": str(config_dir), "NO_COLOR": "1"}
        self.env.pop("COVE_OIDC_ISSUER", None)

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"

    def start_login(self, issuer: str, *args: str) -> tuple[subprocess.Popen[str], str, str]:
        """`cove login` running; returns it with the verification URL and code it printed."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "cove.platform.cli", "login", "--issuer", issuer, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        shown = ""
        while "Waiting for you to approve" not in shown:
            line = proc.stderr.readline()
            if not line:
                out, err = proc.communicate(timeout=10)
                pytest.fail(f"cove login stopped early:\n{shown}{err}{out}")
            shown += line
        uri = re.search(r"open (\S+) in a browser", shown)
        code = re.search(r"enter the code: (\S+)", shown)
        assert uri is not None, shown
        assert code is not None, shown
        return proc, uri.group(1), code.group(1)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cove.platform.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "config" / "cove")


@pytest.fixture
def browser() -> Iterator[SignInPages]:
    with SignInPages() as pages:
        yield pages


async def verified(provider: OidcProvider, token: str) -> dict[str, object]:
    async with TokenVerifier(provider.issuer(), "cove-gateway", leeway=0) as verifier:
        return await verifier.verify(token)


async def test_login_with_the_device_flow_saves_tokens_only_the_user_can_read(
    oidc_provider: OidcProvider, cli: Cli, browser: SignInPages
) -> None:
    proc, uri, code = cli.start_login(oidc_provider.issuer())
    assert uri == f"{oidc_provider.issuer()}/device"
    assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", code)

    page = browser.approve_device(uri, code, "alice")
    assert page.title == "Sign-in Success"

    status, out, err = finish(proc)
    assert status == 0, err
    assert out == ""  # nothing secret on stdout
    assert "Signed in as alice; payments (developer), risk (bu-admin)." in err
    assert f"Saved to {cli.credentials} (readable by you only)." in err
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_dir.stat().st_mode) == 0o700
    saved = orjson.loads(cli.credentials.read_bytes())
    assert saved["issuer"] == oidc_provider.issuer()
    assert saved["client_id"] == "cove-cli"
    assert saved["username"] == "alice"
    assert saved["refresh_token"]
    assert saved["expires_at"] > time.time() + 200

    # The saved token is what the gateway and the platform API accept for alice.
    claims = await verified(oidc_provider, saved["access_token"])
    assert claims["sub"] == ALICE_SUB
    assert claims["azp"] == "cove-cli"
    principal = principal_for_bu(claims, "payments", uuid4())
    assert principal.roles == frozenset({Role.DEVELOPER})

    # A valid token is printed as saved, without asking the provider.
    before = oidc_provider.token_requests()
    printed = cli.run("token")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == saved["access_token"]
    assert oidc_provider.token_requests() == before

    logout = cli.run("logout")
    assert logout.returncode == 0
    assert not cli.credentials.exists()
    again = cli.run("token")
    assert again.returncode == 1
    assert "You are not signed in; run 'cove login' (not_signed_in)" in again.stderr


async def test_token_refreshes_an_expiring_access_token(
    oidc_provider: OidcProvider, cli: Cli, browser: SignInPages
) -> None:
    # cove-cli-short's access tokens live 2 s, less than the CLI's refresh margin.
    proc, uri, code = cli.start_login(oidc_provider.issuer(), "--client-id", "cove-cli-short")
    browser.approve_device(uri, code, "alice")
    status, _, err = finish(proc)
    assert status == 0, err
    first = orjson.loads(cli.credentials.read_bytes())

    before = oidc_provider.token_requests()
    printed = cli.run("token")
    assert printed.returncode == 0, printed.stderr
    fresh = printed.stdout.strip()
    assert fresh != first["access_token"]
    assert oidc_provider.token_requests() == before + 1
    assert (await verified(oidc_provider, fresh))["sub"] == ALICE_SUB

    second = orjson.loads(cli.credentials.read_bytes())
    assert second["access_token"] == fresh
    # oidc-provider rotates refresh tokens of public clients, as Keycloak can.
    assert second["refresh_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600

    # The old refresh token was spent: a copy of it is refused with a clear message.
    cli.credentials.write_bytes(orjson.dumps({**second, "refresh_token": first["refresh_token"]}))
    refused = cli.run("token")
    assert refused.returncode == 1
    assert "session with the identity provider has ended" in refused.stderr
    assert "(session_expired)" in refused.stderr


async def test_denied_in_the_browser_saves_nothing(
    oidc_provider: OidcProvider, cli: Cli, browser: SignInPages
) -> None:
    proc, uri, code = cli.start_login(oidc_provider.issuer())
    browser.deny_device(uri, code)
    status, out, err = finish(proc)
    assert status == 1
    assert "Sign-in was denied in the browser; nothing was saved" in err
    assert err.strip().endswith("(access_denied)")
    assert out == ""
    assert not cli.credentials.exists()


async def test_a_code_nobody_approves_expires_with_a_clear_message(
    oidc_provider: OidcProvider, cli: Cli
) -> None:
    # cove-cli-expiring's device codes live 2 s; the provider answers expired_token.
    proc, _, _ = cli.start_login(oidc_provider.issuer(), "--client-id", "cove-cli-expiring")
    status, _, err = finish(proc)
    assert status == 1
    assert "The sign-in code expired before it was approved; nothing was saved" in err
    assert err.strip().endswith("(expired_token)")
    assert not cli.credentials.exists()


def test_polling_too_fast_is_slowed_down_by_five_seconds_each_time(
    oidc_provider: OidcProvider, browser: SignInPages
) -> None:
    """RFC 8628 §3.5 with the provider's real `slow_down` answers: a client that polls sooner
    than asked (here a sleep that returns early) adds 5 s to its interval each time."""
    asked: list[float] = []
    errors: list[str] = []

    def hasty_sleep(seconds: float) -> None:
        asked.append(seconds)
        time.sleep(0.05)

    with httpx.Client(timeout=10) as http:
        endpoints = Endpoints.discover(http, oidc_provider.issuer())
        flow = DeviceFlow(http, endpoints, "cove-cli", sleep=hasty_sleep)
        code = flow.start("openid")
        assert code.interval == 1

        def on_poll(error: str) -> None:
            errors.append(error)
            if len(errors) == 3:
                browser.approve_device(code.verification_uri, code.user_code, "alice")

        tokens = flow.wait(code, on_poll=on_poll)
    assert errors == ["authorization_pending", "slow_down", "slow_down"]
    assert asked == [1, 1, 6, 11]
    assert tokens.refresh_token


def test_the_local_clock_ends_polling_when_the_provider_never_says_expired(
    oidc_provider: OidcProvider,
) -> None:
    with httpx.Client(timeout=10) as http:
        flow = DeviceFlow(http, Endpoints.discover(http, oidc_provider.issuer()), "cove-cli")
        code = flow.start("openid")
        # As if the code had been issued long ago: no poll is made at all.
        stale = dataclasses.replace(code, issued_at=code.issued_at - code.expires_in - 60)
        before = oidc_provider.token_requests()
        with pytest.raises(LoginError) as caught:
            flow.wait(stale)
    assert caught.value.code == "expired_token"
    assert oidc_provider.token_requests() == before


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--issuer", "http://sso.example.com/realms/cove"],
            "issuer_insecure",
            "Refusing to send sign-in traffic to http://sso.example.com/realms/cove over "
            "plain HTTP",
        ),
        (["--issuer", "sso.example.com"], "issuer_invalid", "is not an http(s) URL"),
    ],
)
def test_bad_issuers_are_refused_before_any_request(
    cli: Cli, args: list[str], code: str, message: str
) -> None:
    result = cli.run("login", *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert f"({code})" in result.stderr


def test_provider_errors_are_named(oidc_provider: OidcProvider, cli: Cli) -> None:
    wrong_realm = cli.run("login", "--issuer", f"{oidc_provider.url}/realms/nope")
    assert wrong_realm.returncode == 1
    assert "No OpenID discovery document at" in wrong_realm.stderr
    assert "(discovery_failed)" in wrong_realm.stderr

    # `alice` is a confidential client without the device grant, like a misconfigured realm.
    wrong_client = cli.run("login", "--issuer", oidc_provider.issuer(), "--client-id", "alice")
    assert wrong_client.returncode == 1
    assert "The identity provider refused client 'alice' (invalid_client)" in wrong_client.stderr

    down = cli.run("login", "--issuer", "http://127.0.0.1:9/realms/cove")
    assert down.returncode == 1
    assert "Cannot reach the identity provider at http://127.0.0.1:9/realms/cove" in down.stderr
    assert "(provider_unreachable)" in down.stderr


def test_a_credentials_file_others_can_read_is_refused(cli: Cli) -> None:
    cli.config_dir.mkdir(parents=True)
    cli.credentials.write_text("{}")
    cli.credentials.chmod(0o644)
    result = cli.run("token")
    assert result.returncode == 1
    assert "is readable by other users (mode 644)" in result.stderr
    assert "(credentials_insecure)" in result.stderr


async def test_the_token_cove_login_saved_works_at_the_platform_api(
    oidc_provider: OidcProvider, cli: Cli, browser: SignInPages, settings: Any, db: Any
) -> None:
    """Sign in as a developer would, then call the platform API with `cove token`'s output."""
    from cove.platform.api.app import PlatformSettings, create_app
    from cove.tenants.bus import repository as bu_repository

    async with db.platform() as conn:
        risk = await bu_repository.insert(conn, {"slug": "risk", "name": "Risk"})
        payments = await bu_repository.insert(conn, {"slug": "payments", "name": "Payments"})
        other = await bu_repository.insert(conn, {"slug": "other", "name": "Other"})
    proc, uri, code = cli.start_login(oidc_provider.issuer())
    browser.approve_device(uri, code, "alice")
    status, _, err = finish(proc)
    assert status == 0, err
    token = cli.run("token").stdout.strip()

    app = create_app(
        PlatformSettings(**{**settings.model_dump(), "oidc_issuer": oidc_provider.issuer()})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as api:
            headers = {"Authorization": f"Bearer {token}"}
            # alice administers risk (group /cove/risk/admins).
            own = await api.get(f"/api/v1/bus/{risk.id}", headers=headers)
            assert own.status_code == 200, own.text
            assert own.json()["slug"] == "risk"
            members = await api.get(f"/api/v1/bus/{risk.id}/members", headers=headers)
            assert members.status_code == 200, members.text
            assert members.json()["directory"] == "not_configured"
            # In payments she is a developer: completions, not the admin API.
            developer = await api.get(f"/api/v1/bus/{payments.id}", headers=headers)
            assert developer.status_code == 403
            assert developer.json()["error"]["code"] == "insufficient_scope"
            # Another BU's id looks like one that does not exist.
            foreign = await api.get(f"/api/v1/bus/{other.id}", headers=headers)
            assert foreign.status_code == 404
            assert foreign.json()["error"]["code"] == "bu_not_found"
