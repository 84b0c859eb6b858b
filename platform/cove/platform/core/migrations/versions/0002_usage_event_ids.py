"""Index usage events by id, so a re-sent event is recognised whatever its timestamp.

The primary key must include the partition key (occurred_at), so it alone cannot stop a
client from sending the same event id twice with different timestamps; the writer checks this
index instead.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX usage_events_id_idx ON usage_events (id, occurred_at)")


def downgrade() -> None:
    op.execute("DROP INDEX usage_events_id_idx")
