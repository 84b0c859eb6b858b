"""Typed settings shared by every Cove service.

Each service subclasses `CoveSettings` with its own fields; tests construct them directly.
Values come from `COVE_*` environment variables.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "cove-dev-secret-change-me"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class InsecureSettingsError(ValueError):
    """A production process was started with a development default for a secret."""


class CoveSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COVE_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    log_json: bool = False
    database_url: str = "postgresql://postgres@127.0.0.1:5432/cove"
    # Optional separate login for the application role; by default the app connects with
    # `database_url` and switches to `db_app_role` so that row-level security applies.
    app_database_url: str | None = None
    db_app_role: str = "cove_app"
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Pepper mixed into every API-key hash; rotating it invalidates every key.
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    otlp_endpoint: str | None = None
    # OIDC (Keycloak): the realm's issuer URL, e.g. https://sso.example.com/realms/cove.
    # Unset: only Cove API keys authenticate.
    oidc_issuer: str | None = None
    oidc_audience: str = "cove-gateway"
    oidc_jwks_uri: str | None = None
    service_name: str = "cove"

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> CoveSettings:
        if self.env is Environment.PRODUCTION:
            for name, value in self._secret_fields().items():
                if value == DEV_SECRET or len(value) < 32:
                    raise InsecureSettingsError(
                        f"COVE_{name.upper()} must be set to a random value of at least 32 "
                        "characters when COVE_ENV=production"
                    )
        return self

    def _secret_fields(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name in type(self).model_fields:
            value: Any = getattr(self, name)
            if isinstance(value, SecretStr):
                found[name] = value.get_secret_value()
        return found

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION
