"""How business units are deleted (`COVE_BU_*`)."""

from __future__ import annotations

from pydantic import Field

from cove.platform.core.settings import CoveSettings


class LifecycleSettings(CoveSettings):
    # Days between a deletion request and the purge (a platform admin may restore meanwhile);
    # a request may ask for another number, 0 for at once.
    bu_deletion_grace_days: int = Field(default=7, ge=0, le=365)
    # A deletion request needs an export of the BU at most this old.
    bu_export_max_age_hours: float = Field(default=24.0, gt=0)
    # How often the worker looks for BUs whose grace period is over.
    bu_purge_check_seconds: float = Field(default=300.0, gt=0)
    # While the BU's instances and jobs are being stopped, look again after this long.
    bu_purge_retry_seconds: float = Field(default=10.0, gt=0)
