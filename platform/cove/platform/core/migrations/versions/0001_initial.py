"""Initial schema: tenants (BUs), users, memberships, API keys, models, deployments,
usage events partitioned by day, the audit log, and row-level security.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ("memberships", "api_keys", "model_deployments", "usage_events", "audit_log")


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cove_app') THEN
            CREATE ROLE cove_app NOLOGIN;
          END IF;
        END
        $$;
        """
    )
    # The migrating login must be able to SET ROLE cove_app (a superuser already can).
    op.execute(
        """
        DO $$
        BEGIN
          IF NOT pg_has_role(current_user, 'cove_app', 'MEMBER') THEN
            EXECUTE format('GRANT cove_app TO %I', current_user);
          END IF;
        END
        $$;
        """
    )
    op.execute(
        """
        CREATE FUNCTION cove_current_tenant() RETURNS uuid
          LANGUAGE sql STABLE AS
          $$ SELECT nullif(current_setting('cove.tenant_id', true), '')::uuid $$;

        CREATE FUNCTION cove_platform_scope() RETURNS boolean
          LANGUAGE sql STABLE AS
          $$ SELECT coalesce(current_setting('cove.scope', true), '') = 'platform' $$;

        CREATE TABLE tenants (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9-]{1,62}$'),
          name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
          status text NOT NULL DEFAULT 'active'
            CHECK (status IN ('active', 'suspended', 'deleting')),
          gpu_quota integer NOT NULL DEFAULT 0 CHECK (gpu_quota >= 0),
          max_model_instances integer NOT NULL DEFAULT 2 CHECK (max_model_instances >= 0),
          tokens_per_day bigint CHECK (tokens_per_day IS NULL OR tokens_per_day > 0),
          prompt_logging text NOT NULL DEFAULT 'off'
            CHECK (prompt_logging IN ('off', 'metadata', 'full')),
          retention_days integer NOT NULL DEFAULT 90 CHECK (retention_days BETWEEN 1 AND 3650),
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE users (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          subject text NOT NULL UNIQUE,
          username text NOT NULL UNIQUE,
          email text,
          display_name text,
          is_platform_admin boolean NOT NULL DEFAULT false,
          created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE memberships (
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
          role text NOT NULL CHECK (role IN ('bu-admin', 'developer', 'viewer')),
          created_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (tenant_id, user_id)
        );

        CREATE TABLE api_keys (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
          user_id uuid REFERENCES users (id) ON DELETE CASCADE,
          name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
          -- The public, non-secret part of the key; looked up first, then the hash compared.
          key_id text NOT NULL UNIQUE,
          salt bytea NOT NULL,
          hash bytea NOT NULL,
          scopes text[] NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          expires_at timestamptz,
          revoked_at timestamptz,
          last_used_at timestamptz
        );
        CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

        CREATE TABLE models (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          name text NOT NULL UNIQUE,
          kind text NOT NULL CHECK (kind IN ('base', 'adapter')),
          base_model_id uuid REFERENCES models (id),
          -- Adapters belong to one BU; base models (NULL) are shared by the catalog.
          tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
          location text NOT NULL,
          family text,
          fim_tokens jsonb,
          context_length integer CHECK (context_length IS NULL OR context_length > 0),
          licence text,
          created_at timestamptz NOT NULL DEFAULT now(),
          CHECK ((kind = 'adapter') = (base_model_id IS NOT NULL))
        );

        CREATE TABLE model_deployments (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          name text NOT NULL,
          model_id uuid NOT NULL REFERENCES models (id),
          served_model_name text NOT NULL,
          endpoint_url text NOT NULL,
          mode text NOT NULL DEFAULT 'dedicated' CHECK (mode IN ('dedicated', 'shared')),
          status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'ready', 'degraded', 'unavailable')),
          status_detail text,
          last_checked_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (tenant_id, name)
        );

        CREATE TABLE usage_events (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          event_type text NOT NULL,
          occurred_at timestamptz NOT NULL,
          received_at timestamptz NOT NULL DEFAULT now(),
          user_id text,
          completion_id text,
          model_version text,
          feature text,
          language text,
          ide text,
          data jsonb NOT NULL DEFAULT '{}'::jsonb,
          PRIMARY KEY (id, occurred_at)
        ) PARTITION BY RANGE (occurred_at);
        CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
        CREATE INDEX usage_events_tenant_time_idx ON usage_events (tenant_id, occurred_at);

        -- Creates the daily partitions covering [first_day, last_day]; safe to call again.
        CREATE FUNCTION cove_ensure_usage_partitions(first_day date, last_day date)
          RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
          day date := first_day;
          created integer := 0;
          part text;
        BEGIN
          WHILE day <= last_day LOOP
            part := 'usage_events_' || to_char(day, 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
              EXECUTE format(
                'CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                part, day::timestamptz, (day + 1)::timestamptz);
              created := created + 1;
            END IF;
            day := day + 1;
          END LOOP;
          RETURN created;
        END
        $$;
        SELECT cove_ensure_usage_partitions(current_date - 7, current_date + 30);

        CREATE TABLE audit_log (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          tenant_id uuid REFERENCES tenants (id) ON DELETE SET NULL,
          actor text NOT NULL,
          action text NOT NULL,
          target text,
          diff jsonb NOT NULL DEFAULT '{}'::jsonb,
          request_id text,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX audit_log_tenant_time_idx ON audit_log (tenant_id, created_at);
        """
    )
    op.execute(
        """
        ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
        ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_scope ON tenants
          USING (cove_platform_scope() OR id = cove_current_tenant());

        ALTER TABLE users ENABLE ROW LEVEL SECURITY;
        ALTER TABLE users FORCE ROW LEVEL SECURITY;
        CREATE POLICY user_scope ON users
          USING (cove_platform_scope() OR EXISTS (
            SELECT 1 FROM memberships m
            WHERE m.user_id = users.id AND m.tenant_id = cove_current_tenant()));

        ALTER TABLE models ENABLE ROW LEVEL SECURITY;
        ALTER TABLE models FORCE ROW LEVEL SECURITY;
        CREATE POLICY model_scope ON models
          USING (cove_platform_scope() OR tenant_id IS NULL OR tenant_id = cove_current_tenant())
          WITH CHECK (cove_platform_scope() OR tenant_id = cove_current_tenant());
        """
    )
    for table in TENANT_TABLES:
        op.execute(
            f"""
            ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
            ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_scope ON {table}
              USING (cove_platform_scope() OR tenant_id = cove_current_tenant());
            """
        )
    op.execute(
        """
        GRANT USAGE ON SCHEMA public TO cove_app;
        GRANT SELECT, INSERT, UPDATE, DELETE
          ON tenants, users, memberships, api_keys, models, model_deployments, usage_events
          TO cove_app;
        -- The audit log is append-only for the application.
        GRANT SELECT, INSERT ON audit_log TO cove_app;
        GRANT EXECUTE ON FUNCTION cove_ensure_usage_partitions(date, date) TO cove_app;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE audit_log, usage_events, model_deployments, models, api_keys,
          memberships, users, tenants;
        DROP FUNCTION cove_ensure_usage_partitions(date, date);
        DROP FUNCTION cove_platform_scope();
        DROP FUNCTION cove_current_tenant();
        REVOKE USAGE ON SCHEMA public FROM cove_app;
        """
    )
