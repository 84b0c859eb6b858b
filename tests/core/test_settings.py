from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from cove.platform.core.settings import DEV_SECRET, CoveSettings, Environment


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ValidationError, match="COVE_SECRET_KEY must be set"):
        CoveSettings(env=Environment.PRODUCTION)


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        CoveSettings(env=Environment.PRODUCTION, secret_key=SecretStr("short"))


def test_production_accepts_a_real_secret_and_hides_it() -> None:
    settings = CoveSettings(env=Environment.PRODUCTION, secret_key=SecretStr("x" * 40))
    assert settings.is_production
    assert "x" * 40 not in repr(settings)


def test_development_allows_the_default_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COVE_REDIS_URL", "redis://example:6380/2")
    settings = CoveSettings()
    assert settings.secret_key.get_secret_value() == DEV_SECRET
    assert settings.redis_url == "redis://example:6380/2"
