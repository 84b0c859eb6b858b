"""Analytics: hourly and daily rollups of usage events, the rollup watermark, per-BU retention.

Three rollup tables share one set of counters:

- `analytics_hourly` (per tenant, hour, user, model version, language, IDE, feature) is what
  the rollup task recomputes from raw events (delete + insert per bucket, one transaction);
- `analytics_daily` has the same dimensions per UTC day, summed from the hourly rows;
- `analytics_daily_segments` drops the user dimension, so a BU-wide dashboard reads a few
  thousand rows instead of one per user.

Dimensions that an event did not report are stored as '' (so they can be part of the key).
Latency is a histogram of fixed, log-spaced buckets (`int[]`, one count per bucket, edges in
`cove.platform.analytics.repository.LATENCY_BOUNDS_MS`) plus exact sums for the mean.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COUNTERS = """
  served bigint NOT NULL DEFAULT 0,
  served_lines bigint NOT NULL DEFAULT 0,
  served_chars bigint NOT NULL DEFAULT 0,
  shown bigint NOT NULL DEFAULT 0,
  shown_lines bigint NOT NULL DEFAULT 0,
  shown_chars bigint NOT NULL DEFAULT 0,
  accepted bigint NOT NULL DEFAULT 0,
  accepted_full bigint NOT NULL DEFAULT 0,
  accepted_line bigint NOT NULL DEFAULT 0,
  accepted_word bigint NOT NULL DEFAULT 0,
  accepted_lines bigint NOT NULL DEFAULT 0,
  accepted_chars bigint NOT NULL DEFAULT 0,
  rejected bigint NOT NULL DEFAULT 0,
  edits_proposed bigint NOT NULL DEFAULT 0,
  edits_applied bigint NOT NULL DEFAULT 0,
  edits_discarded bigint NOT NULL DEFAULT 0,
  edit_lines_added bigint NOT NULL DEFAULT 0,
  edit_lines_deleted bigint NOT NULL DEFAULT 0,
  retained_30s_chars bigint NOT NULL DEFAULT 0,
  retained_2m_chars bigint NOT NULL DEFAULT 0,
  retained_10m_chars bigint NOT NULL DEFAULT 0,
  ttft_ms_sum bigint NOT NULL DEFAULT 0,
  total_ms_sum bigint NOT NULL DEFAULT 0,
  ttft_hist integer[] NOT NULL DEFAULT '{}',
  total_hist integer[] NOT NULL DEFAULT '{}'
"""

DIMENSIONS = """
  user_id text NOT NULL DEFAULT '',
  model_version text NOT NULL DEFAULT '',
  language text NOT NULL DEFAULT '',
  ide text NOT NULL DEFAULT '',
  feature text NOT NULL DEFAULT '',
"""

SEGMENT_DIMENSIONS = """
  model_version text NOT NULL DEFAULT '',
  language text NOT NULL DEFAULT '',
  ide text NOT NULL DEFAULT '',
  feature text NOT NULL DEFAULT '',
"""

TENANT_TABLES = ("analytics_hourly", "analytics_daily", "analytics_daily_segments")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE analytics_hourly (
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          hour timestamptz NOT NULL,
          {DIMENSIONS}
          {COUNTERS},
          PRIMARY KEY (tenant_id, hour, user_id, model_version, language, ide, feature)
        );

        CREATE TABLE analytics_daily (
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          day date NOT NULL,
          {DIMENSIONS}
          {COUNTERS},
          PRIMARY KEY (tenant_id, day, user_id, model_version, language, ide, feature)
        );
        CREATE INDEX analytics_daily_user_idx ON analytics_daily (tenant_id, user_id, day);
        -- Active/engaged users per period come from an index-only scan of this narrow index.
        CREATE INDEX analytics_daily_presence_idx ON analytics_daily (tenant_id, day)
          INCLUDE (user_id, model_version, language, ide, feature, served, shown, accepted,
                   edits_applied);

        CREATE TABLE analytics_daily_segments (
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          day date NOT NULL,
          {SEGMENT_DIMENSIONS}
          {COUNTERS},
          PRIMARY KEY (tenant_id, day, model_version, language, ide, feature)
        );

        -- Where the incremental rollup left off (events received after it are re-rolled).
        CREATE TABLE analytics_rollup_state (
          singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
          received_before timestamptz NOT NULL,
          updated_at timestamptz NOT NULL DEFAULT now()
        );

        -- Finds the hours touched by events received since the last rollup; BRIN because
        -- received_at grows with the table, so the index costs the writer almost nothing.
        CREATE INDEX usage_events_received_idx ON usage_events USING brin (received_at);
        """
    )
    op.execute(
        """
        -- Drops whole daily partitions of usage events older than `before` (the oldest day
        -- any BU still keeps); per-BU retention deletes the rest row by row.
        CREATE FUNCTION cove_drop_usage_partitions(before date)
          RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
          part record;
          dropped integer := 0;
        BEGIN
          FOR part IN
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = 'usage_events' AND c.relname ~ '^usage_events_[0-9]{8}$'
              AND to_date(substr(c.relname, 14), 'YYYYMMDD') < before
          LOOP
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
          END LOOP;
          RETURN dropped;
        END
        $$;
        """
    )
    for table in TENANT_TABLES:
        op.execute(
            f"""
            ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
            ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_scope ON {table}
              USING (cove_platform_scope() OR tenant_id = cove_current_tenant());
            GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO cove_app;
            """
        )
    op.execute(
        """
        ALTER TABLE analytics_rollup_state ENABLE ROW LEVEL SECURITY;
        ALTER TABLE analytics_rollup_state FORCE ROW LEVEL SECURITY;
        CREATE POLICY platform_scope ON analytics_rollup_state USING (cove_platform_scope());
        GRANT SELECT, INSERT, UPDATE, DELETE ON analytics_rollup_state TO cove_app;
        REVOKE EXECUTE ON FUNCTION cove_drop_usage_partitions(date) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION cove_drop_usage_partitions(date) TO cove_app;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION cove_drop_usage_partitions(date);
        DROP INDEX usage_events_received_idx;
        DROP TABLE analytics_rollup_state, analytics_daily_segments, analytics_daily,
          analytics_hourly;
        """
    )
