"""Fine-tuning jobs and their log: what a BU asked to train, where the job is, and why it
stopped.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE finetune_jobs (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          name text NOT NULL,
          status text NOT NULL DEFAULT 'queued' CHECK (status IN
            ('queued', 'preparing', 'training', 'evaluating', 'succeeded', 'failed',
             'cancelled')),
          -- What was asked: repositories (location, role, credentials secret name), the base
          -- model's catalog name, preset, hyperparameter overrides, gate, adapter name.
          spec jsonb NOT NULL,
          base_model_id uuid NOT NULL REFERENCES models (id),
          runtime text NOT NULL CHECK (runtime IN ('local', 'kubernetes')),
          gpus integer NOT NULL DEFAULT 0 CHECK (gpus >= 0),
          attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
          cancel_requested boolean NOT NULL DEFAULT false,
          progress real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
          step integer,
          total_steps integer,
          loss double precision,
          eta_seconds double precision,
          dataset_hash text,
          reason jsonb,
          evaluation jsonb,
          -- The registered adapter, once the job succeeded; kept when the adapter is deleted.
          adapter_model_id uuid REFERENCES models (id) ON DELETE SET NULL,
          adapter_name text,
          -- Where the job runs: a local process id, or a Kubernetes Job name.
          worker_ref text,
          created_by text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          started_at timestamptz,
          finished_at timestamptz,
          heartbeat_at timestamptz,
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (tenant_id, name)
        );
        CREATE INDEX finetune_jobs_tenant_idx ON finetune_jobs (tenant_id, created_at DESC);
        CREATE INDEX finetune_jobs_active_idx ON finetune_jobs (status)
          WHERE status NOT IN ('succeeded', 'failed', 'cancelled');

        CREATE TABLE finetune_job_logs (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
          job_id uuid NOT NULL REFERENCES finetune_jobs (id) ON DELETE CASCADE,
          attempt integer NOT NULL,
          level text NOT NULL CHECK (level IN ('info', 'warning', 'error')),
          message text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX finetune_job_logs_job_idx ON finetune_job_logs (job_id, id);
        """
    )
    for table in ("finetune_jobs", "finetune_job_logs"):
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
    op.execute("DROP TABLE finetune_job_logs, finetune_jobs;")
