"""Data-plane policies: one organisation default (tenant_id NULL) and one override per BU.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE policies (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          tenant_id uuid UNIQUE REFERENCES tenants (id) ON DELETE CASCADE,
          document jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(document) = 'object'),
          version integer NOT NULL DEFAULT 1,
          updated_by text,
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        -- At most one organisation default.
        CREATE UNIQUE INDEX policies_org_default_idx ON policies ((tenant_id IS NULL))
          WHERE tenant_id IS NULL;
        INSERT INTO policies (tenant_id, document, updated_by) VALUES (NULL, '{}', 'migration');

        ALTER TABLE policies ENABLE ROW LEVEL SECURITY;
        ALTER TABLE policies FORCE ROW LEVEL SECURITY;
        -- Every BU reads the organisation default it inherits; only its own override besides.
        CREATE POLICY tenant_scope ON policies
          USING (cove_platform_scope() OR tenant_id IS NULL OR tenant_id = cove_current_tenant())
          WITH CHECK (cove_platform_scope() OR tenant_id = cove_current_tenant());
        GRANT SELECT, INSERT, UPDATE, DELETE ON policies TO cove_app;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE policies")
