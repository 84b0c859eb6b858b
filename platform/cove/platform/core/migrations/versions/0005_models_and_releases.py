"""Model catalog details, BU grants, deployment specs, adapters on instances, and releases
(stable and canary model versions per BU).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE models
          ADD COLUMN architecture text,
          ADD COLUMN lora_rank integer CHECK (lora_rank IS NULL OR lora_rank BETWEEN 1 AND 512),
          ADD COLUMN scores jsonb NOT NULL DEFAULT '{}'::jsonb,
          ADD COLUMN lineage jsonb NOT NULL DEFAULT '{}'::jsonb;

        -- Which BUs may deploy which base models.
        CREATE TABLE model_grants (
          model_id uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          created_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (model_id, tenant_id)
        );

        ALTER TABLE model_deployments
          ADD COLUMN runtime text NOT NULL DEFAULT 'external'
            CHECK (runtime IN ('external', 'local', 'kubernetes')),
          ADD COLUMN spec jsonb NOT NULL DEFAULT '{}'::jsonb,
          ADD COLUMN gpus integer NOT NULL DEFAULT 0 CHECK (gpus >= 0),
          ADD COLUMN max_lora_rank integer NOT NULL DEFAULT 8 CHECK (max_lora_rank >= 1),
          ADD COLUMN desired_state text NOT NULL DEFAULT 'running'
            CHECK (desired_state IN ('running', 'deleted')),
          ADD COLUMN generation integer NOT NULL DEFAULT 1,
          ADD COLUMN observed_generation integer NOT NULL DEFAULT 0,
          ADD COLUMN fallback_deployment_id uuid
            REFERENCES model_deployments (id) ON DELETE SET NULL,
          ADD COLUMN capacity jsonb NOT NULL DEFAULT '{}'::jsonb;

        CREATE TABLE deployment_adapters (
          deployment_id uuid NOT NULL REFERENCES model_deployments (id) ON DELETE CASCADE,
          model_id uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          state text NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'loaded', 'failed', 'unloading')),
          detail text,
          updated_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (deployment_id, model_id)
        );

        CREATE TABLE model_releases (
          tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
          stable_model_id uuid NOT NULL REFERENCES models (id),
          canary_model_id uuid REFERENCES models (id),
          canary_percent integer NOT NULL DEFAULT 0 CHECK (canary_percent BETWEEN 0 AND 100),
          canary_groups text[] NOT NULL DEFAULT '{}',
          previous_stable_model_id uuid REFERENCES models (id),
          version integer NOT NULL DEFAULT 1,
          updated_by text,
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    for table in ("model_grants", "deployment_adapters", "model_releases"):
        op.execute(
            f"""
            ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
            ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_scope ON {table}
              USING (cove_platform_scope() OR tenant_id = cove_current_tenant());
            GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO cove_app;
            """
        )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE model_releases, deployment_adapters, model_grants;
        ALTER TABLE model_deployments
          DROP COLUMN runtime, DROP COLUMN spec, DROP COLUMN gpus, DROP COLUMN max_lora_rank,
          DROP COLUMN desired_state, DROP COLUMN generation, DROP COLUMN observed_generation,
          DROP COLUMN fallback_deployment_id, DROP COLUMN capacity;
        ALTER TABLE models
          DROP COLUMN architecture, DROP COLUMN lora_rank, DROP COLUMN scores,
          DROP COLUMN lineage;
        """
    )
