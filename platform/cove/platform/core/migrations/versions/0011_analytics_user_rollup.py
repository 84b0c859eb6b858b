"""Analytics: a daily rollup per user and model version, for the per-user dashboard reads.

`analytics_daily` keeps a row per user *and* language, IDE and feature, so a breakdown by user
summed several rows per user and day (tens of thousands per BU and month at 10 million events).
`analytics_daily_users` keeps one row per (tenant, day, user, model version) with the same
counters, plus the lines added by applied edits per source (the only per-feature numbers the
metrics need), so by-user breakdowns, one user's or group's series and the active/engaged user
counts read a few thousand rows. It is filled from `analytics_daily` by the same rollup run,
and backfilled here from what is already rolled up.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COUNTERS = (
    "served",
    "served_lines",
    "served_chars",
    "shown",
    "shown_lines",
    "shown_chars",
    "accepted",
    "accepted_full",
    "accepted_line",
    "accepted_word",
    "accepted_lines",
    "accepted_chars",
    "rejected",
    "edits_proposed",
    "edits_applied",
    "edits_discarded",
    "edit_lines_added",
    "edit_lines_deleted",
    "retained_30s_chars",
    "retained_2m_chars",
    "retained_10m_chars",
    "ttft_ms_sum",
    "total_ms_sum",
    "applied_chat_lines",
    "applied_edit_lines",
    "applied_agent_lines",
)
HISTOGRAM_SIZE = 24  # cove.platform.analytics.repository.HISTOGRAM_SIZE at this revision


def _histogram_sum(column: str) -> str:
    parts = ", ".join(f"coalesce(sum({column}[{i}]), 0)" for i in range(1, HISTOGRAM_SIZE + 1))
    return f"ARRAY[{parts}]::integer[]"


def upgrade() -> None:
    counters = ",\n".join(f"  {name} bigint NOT NULL DEFAULT 0" for name in COUNTERS)
    op.execute(
        f"""
        CREATE TABLE analytics_daily_users (
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          day date NOT NULL,
          user_id text NOT NULL DEFAULT '',
          model_version text NOT NULL DEFAULT '',
          {counters},
          ttft_hist integer[] NOT NULL DEFAULT '{{}}',
          total_hist integer[] NOT NULL DEFAULT '{{}}',
          PRIMARY KEY (tenant_id, day, user_id, model_version)
        );
        CREATE INDEX analytics_daily_users_user_idx
          ON analytics_daily_users (tenant_id, user_id, day);
        -- Active/engaged users per period come from an index-only scan of this narrow index.
        CREATE INDEX analytics_daily_users_presence_idx ON analytics_daily_users (tenant_id, day)
          INCLUDE (user_id, model_version, served, shown, accepted, edits_applied);

        ALTER TABLE analytics_daily_users ENABLE ROW LEVEL SECURITY;
        ALTER TABLE analytics_daily_users FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_scope ON analytics_daily_users
          USING (cove_platform_scope() OR tenant_id = cove_current_tenant());
        GRANT SELECT, INSERT, UPDATE, DELETE ON analytics_daily_users TO cove_app;
        """
    )
    plain = [c for c in COUNTERS if not c.startswith("applied_")]
    sums = ", ".join(f"coalesce(sum({c}), 0)" for c in plain)
    by_source = ", ".join(
        f"coalesce(sum(edit_lines_added) FILTER (WHERE feature = '{source}'), 0)"
        for source in ("chat", "edit", "agent")
    )
    op.execute(
        # Built from this module's constants only.
        f"""
        INSERT INTO analytics_daily_users (tenant_id, day, user_id, model_version,
          {", ".join(COUNTERS)}, ttft_hist, total_hist)
        SELECT tenant_id, day, user_id, model_version, {sums}, {by_source},
          {_histogram_sum("ttft_hist")}, {_histogram_sum("total_hist")}
        FROM analytics_daily
        GROUP BY tenant_id, day, user_id, model_version
        """  # noqa: S608
    )


def downgrade() -> None:
    op.execute("DROP TABLE analytics_daily_users")
