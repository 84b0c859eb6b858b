"""Prompt logging: what the gateway keeps of prompts per BU (metadata or full), with retention.

One row per request the gateway forwarded while the BU's policy said `metadata` or `full`.
`prompt`, `suffix` and `completion` are filled only in `full` mode, and hold the text as the
model saw it and the IDE got it (after redaction and suggestion filtering). Retention deletes
row by row per BU (each BU has its own retention), so the table is indexed by
(tenant_id, logged_at) rather than partitioned by day.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE prompt_logs (
          id uuid PRIMARY KEY,
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          logged_at timestamptz NOT NULL,
          mode text NOT NULL CHECK (mode IN ('metadata', 'full')),
          user_id text NOT NULL,
          username text NOT NULL,
          request_id text,
          completion_id text,
          feature text NOT NULL,
          model_version text NOT NULL,
          path text,
          language text,
          prompt_chars integer NOT NULL CHECK (prompt_chars >= 0),
          suffix_chars integer NOT NULL CHECK (suffix_chars >= 0),
          completion_chars integer NOT NULL CHECK (completion_chars >= 0),
          prompt_tokens integer,
          completion_tokens integer,
          -- Policy rules that fired on the request: [{"action", "type", "rule"}], no text.
          rules jsonb NOT NULL DEFAULT '[]'::jsonb,
          cancelled boolean NOT NULL DEFAULT false,
          prompt text,
          suffix text,
          completion text,
          CHECK (mode = 'full' OR (prompt IS NULL AND suffix IS NULL AND completion IS NULL))
        );
        CREATE INDEX prompt_logs_tenant_time_idx ON prompt_logs (tenant_id, logged_at DESC, id);
        CREATE INDEX prompt_logs_tenant_user_time_idx
          ON prompt_logs (tenant_id, user_id, logged_at DESC);

        ALTER TABLE prompt_logs ENABLE ROW LEVEL SECURITY;
        ALTER TABLE prompt_logs FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_scope ON prompt_logs
          USING (cove_platform_scope() OR tenant_id = cove_current_tenant());
        -- Written by the gateway, read by BU admins, deleted by retention; never updated.
        GRANT SELECT, INSERT, DELETE ON prompt_logs TO cove_app;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE prompt_logs")
