"""What the reconciler observes of a deployment (ready replicas, conditions, when it last
looked), and the history of each BU's release (every set, promote, rollback and clear).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE model_deployments
          ADD COLUMN replicas_ready integer NOT NULL DEFAULT 0 CHECK (replicas_ready >= 0),
          ADD COLUMN conditions jsonb NOT NULL DEFAULT '[]'::jsonb,
          ADD COLUMN reconciled_at timestamptz;

        -- Model names, not ids: the history must outlive the models it mentions.
        CREATE TABLE model_release_history (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          version integer NOT NULL,
          action text NOT NULL CHECK (action IN ('set', 'promote', 'rollback', 'clear')),
          stable text,
          canary text,
          canary_percent integer NOT NULL DEFAULT 0,
          canary_groups text[] NOT NULL DEFAULT '{}',
          previous_stable text,
          actor text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX model_release_history_tenant_idx ON model_release_history (tenant_id, id);

        ALTER TABLE model_release_history ENABLE ROW LEVEL SECURITY;
        ALTER TABLE model_release_history FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_scope ON model_release_history
          USING (cove_platform_scope() OR tenant_id = cove_current_tenant());
        -- Append-only for the application, like the audit log.
        GRANT SELECT, INSERT ON model_release_history TO cove_app;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE model_release_history;
        ALTER TABLE model_deployments
          DROP COLUMN replicas_ready, DROP COLUMN conditions, DROP COLUMN reconciled_at;
        """
    )
