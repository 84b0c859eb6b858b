"""Business-unit lifecycle: staged deletion (export, grace period, purge).

A BU being deleted has status `deleting` and a `purge_after` time; until then a platform
admin may restore it to the status it had. Its last export is recorded, since deletion needs
a recent one. The audit log outlives the BUs it speaks of: its `tenant_id` no longer
references `tenants`, so the entries of a purged BU (including the purge itself) keep the
BU's id, and their `target` keeps its slug.

The purge deletes a BU's rows through `cove_purge_tenant_rows`, which runs as the tables'
owner: the application role keeps no DELETE on append-only tables (release history), and the
function refuses any BU that is not being deleted with its grace period over, and the audit
log.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE tenants
          ADD COLUMN deletion_requested_at timestamptz,
          ADD COLUMN deletion_requested_by text,
          ADD COLUMN purge_after timestamptz,
          ADD COLUMN status_before_deletion text
            CHECK (status_before_deletion IN ('active', 'suspended')),
          ADD COLUMN last_exported_at timestamptz,
          ADD CONSTRAINT tenants_deletion_scheduled CHECK (
            (status = 'deleting') = (purge_after IS NOT NULL)
            AND (status = 'deleting') = (status_before_deletion IS NOT NULL));
        CREATE INDEX tenants_purge_due_idx ON tenants (purge_after) WHERE status = 'deleting';

        ALTER TABLE audit_log DROP CONSTRAINT audit_log_tenant_id_fkey;

        CREATE FUNCTION cove_purge_tenant_rows(target regclass, bu uuid) RETURNS bigint
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
          deleted bigint;
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM tenants
                         WHERE id = bu AND status = 'deleting' AND purge_after <= now()) THEN
            RAISE EXCEPTION 'business unit % is not due for purge', bu
              USING ERRCODE = 'insufficient_privilege';
          END IF;
          IF target = 'audit_log'::regclass THEN
            RAISE EXCEPTION 'the audit log is kept' USING ERRCODE = 'insufficient_privilege';
          END IF;
          EXECUTE format('DELETE FROM %s WHERE tenant_id = $1', target) USING bu;
          GET DIAGNOSTICS deleted = ROW_COUNT;
          RETURN deleted;
        END
        $$;
        REVOKE ALL ON FUNCTION cove_purge_tenant_rows(regclass, uuid) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION cove_purge_tenant_rows(regclass, uuid) TO cove_app;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION cove_purge_tenant_rows(regclass, uuid);
        UPDATE audit_log SET tenant_id = NULL
          WHERE tenant_id IS NOT NULL AND tenant_id NOT IN (SELECT id FROM tenants);
        ALTER TABLE audit_log ADD CONSTRAINT audit_log_tenant_id_fkey
          FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE SET NULL;
        UPDATE tenants SET status = status_before_deletion WHERE status = 'deleting';
        DROP INDEX tenants_purge_due_idx;
        ALTER TABLE tenants
          DROP CONSTRAINT tenants_deletion_scheduled,
          DROP COLUMN deletion_requested_at,
          DROP COLUMN deletion_requested_by,
          DROP COLUMN purge_after,
          DROP COLUMN status_before_deletion,
          DROP COLUMN last_exported_at;
        """
    )
