"""The platform API: composition root of the control plane's admin endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, SecretStr, model_validator

from cove.platform.analytics.endpoints import router as analytics_router
from cove.platform.api.console import ConsoleConfig, ConsoleOidc, install_console
from cove.platform.audit.endpoints import router as audit_router
from cove.platform.core.celery_app import create_celery
from cove.platform.core.db import Database
from cove.platform.core.errors import UpstreamUnavailable
from cove.platform.core.http import (
    RequestIdMiddleware,
    TelemetryMiddleware,
    install_error_handlers,
)
from cove.platform.core.logging import configure_logging
from cove.platform.core.settings import CoveSettings, InsecureSettingsError
from cove.platform.core.telemetry import Telemetry, setup_telemetry
from cove.platform.deployments.endpoints import platform_router as shared_router
from cove.platform.deployments.endpoints import router as deployments_router
from cove.platform.finetuning.endpoints import router as finetune_router
from cove.platform.finetuning.settings import FinetuneSettings
from cove.platform.lifecycle.endpoints import router as lifecycle_router
from cove.platform.lifecycle.settings import LifecycleSettings
from cove.platform.models.endpoints import router as models_router
from cove.platform.policies.endpoints import router as policies_router
from cove.platform.promptlogs.endpoints import router as prompt_logs_router
from cove.platform.releases.endpoints import router as releases_router
from cove.tenants.bus.endpoints import router as bus_router
from cove.tenants.identity.keycloak import KeycloakDirectoryLike, directory_client
from cove.tenants.identity.oidc import TokenVerifier
from cove.tenants.keys.endpoints import router as keys_router
from cove.tenants.members.endpoints import router as members_router


class PlatformSettings(CoveSettings):
    service_name: str = "cove-platform"
    # Built console (web/dist); a placeholder page is served when it is absent.
    console_dir: Path | None = None
    # The console's OIDC client (Authorization Code + PKCE) at COVE_OIDC_ISSUER.
    console_oidc_client_id: str | None = None
    console_oidc_scope: str = "openid profile email"
    # The dev login (paste an API key); on by default outside production.
    console_dev_login: bool | None = None
    # Keycloak Admin API, read-only, for the members list: a confidential client of the realm
    # with a service account (roles query-groups, view-users). Unset: Cove's memberships only.
    keycloak_url: str | None = None
    keycloak_realm: str = "cove"
    keycloak_client_id: str = "cove-platform"
    keycloak_client_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _no_dev_login_in_production(self) -> PlatformSettings:
        if self.is_production and self.console_dev_login:
            raise InsecureSettingsError(
                "COVE_CONSOLE_DEV_LOGIN cannot be turned on when COVE_ENV=production: the dev "
                "login is for the local stack"
            )
        return self


class Health(BaseModel):
    status: str


class VersionInfo(BaseModel):
    name: str
    version: str
    api: str


def cove_version() -> str:
    try:
        return version("cove")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0+unknown"


PLACEHOLDER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Cove console</title></head><body>
<main><h1>Cove</h1><p>The platform API is running. The admin console arrives with the console
work; until then use the <a href="/docs">API documentation</a>.</p></main></body></html>"""


def create_app(
    settings: PlatformSettings | None = None, telemetry: Telemetry | None = None
) -> FastAPI:
    settings = settings or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings)
        await db.open(wait=False)
        app.state.db = db
        app.state.pepper = settings.secret_key.get_secret_value().encode()
        # Reconcile tasks are sent to the workers after their transaction commits.
        app.state.celery = create_celery(settings)
        app.state.finetune = FinetuneSettings()
        app.state.lifecycle = LifecycleSettings()
        verifier: TokenVerifier | None = None
        if settings.oidc_issuer:
            verifier = TokenVerifier(
                settings.oidc_issuer, settings.oidc_audience, jwks_uri=settings.oidc_jwks_uri
            )
            await verifier.start()
        app.state.verifier = verifier
        directory: KeycloakDirectoryLike | None = None
        if settings.keycloak_url and settings.keycloak_client_secret is not None:
            directory = directory_client(
                settings.keycloak_url,
                settings.keycloak_realm,
                settings.keycloak_client_id,
                settings.keycloak_client_secret.get_secret_value(),
            )
        app.state.directory = directory
        try:
            yield
        finally:
            if verifier is not None:
                await verifier.close()
            app.state.celery.close()
            await db.close()

    app = FastAPI(
        title="Cove platform API",
        version=cove_version(),
        description="Admin API of Cove: business units, API keys, model deployments.",
        lifespan=lifespan,
    )
    if telemetry is not None:
        app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Health:
        """Readiness: Postgres answers."""
        db: Database = app.state.db
        try:
            async with db.unscoped() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:
            raise UpstreamUnavailable(
                "Postgres does not answer", code="database_unavailable"
            ) from exc
        return Health(status="ok")

    @app.get("/api/v1/version", tags=["health"])
    async def get_version() -> VersionInfo:
        """The running Cove version."""
        return VersionInfo(name="cove", version=cove_version(), api="v1")

    app.include_router(bus_router)
    app.include_router(lifecycle_router)
    app.include_router(keys_router)
    app.include_router(members_router)
    app.include_router(deployments_router)
    app.include_router(shared_router)
    app.include_router(policies_router)
    app.include_router(prompt_logs_router)
    app.include_router(audit_router)
    app.include_router(analytics_router)
    app.include_router(models_router)
    app.include_router(releases_router)
    app.include_router(finetune_router)

    @app.get("/api/v1/console-config", tags=["console"])
    async def console_config() -> ConsoleConfig:
        """How the admin console signs in (public): the OIDC client when one is configured,
        and whether the dev login (an API key) is offered."""
        oidc = None
        if settings.oidc_issuer and settings.console_oidc_client_id:
            oidc = ConsoleOidc(
                issuer=settings.oidc_issuer,
                client_id=settings.console_oidc_client_id,
                scope=settings.console_oidc_scope,
            )
        dev = (
            settings.console_dev_login
            if settings.console_dev_login is not None
            else not settings.is_production
        )
        return ConsoleConfig(oidc=oidc, dev_login=dev or oidc is None)

    console = settings.console_dir
    index = console / "index.html" if console else None
    if console is not None:
        install_console(app, console)

    @app.get("/", include_in_schema=False)
    async def console_index() -> Response:
        if index is not None and index.is_file():
            return FileResponse(index)
        return HTMLResponse(PLACEHOLDER_PAGE)

    return app


def main_app() -> FastAPI:
    """Factory for `uvicorn --factory cove.platform.api.app:main_app`."""
    settings = PlatformSettings()
    configure_logging(settings.log_level, json=settings.log_json)
    telemetry = setup_telemetry(settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    return create_app(settings, telemetry)
