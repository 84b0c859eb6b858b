"""Base instances shared across BUs (multi-LoRA run by the platform), and the Kubernetes
events the reconciler records in a deployment's status.

A shared instance is a `model_deployments` row without a tenant: the platform runs it and its
GPUs count against no BU's quota. BUs granted its base model may read it (to put their
adapters on it); each adapter on it stays a row of its own BU in `deployment_adapters`.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE model_deployments
          ALTER COLUMN tenant_id DROP NOT NULL,
          ADD COLUMN events jsonb NOT NULL DEFAULT '[]'::jsonb,
          ADD CONSTRAINT model_deployments_platform_shared
            CHECK (tenant_id IS NOT NULL OR (mode = 'shared' AND fallback_deployment_id IS NULL));
        CREATE UNIQUE INDEX model_deployments_platform_name
          ON model_deployments (name) WHERE tenant_id IS NULL;

        -- A BU sees the platform's shared instances of the base models granted to it.
        CREATE POLICY shared_instance_read ON model_deployments FOR SELECT
          USING (tenant_id IS NULL AND EXISTS (
            SELECT 1 FROM model_grants g
            WHERE g.model_id = model_deployments.model_id
              AND g.tenant_id = cove_current_tenant()));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP POLICY shared_instance_read ON model_deployments;
        DROP INDEX model_deployments_platform_name;
        DELETE FROM model_deployments WHERE tenant_id IS NULL;
        ALTER TABLE model_deployments
          DROP CONSTRAINT model_deployments_platform_shared,
          DROP COLUMN events,
          ALTER COLUMN tenant_id SET NOT NULL;
        """
    )
