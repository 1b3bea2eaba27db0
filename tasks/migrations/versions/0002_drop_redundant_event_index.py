"""Drop the index on command_events.command_id: the (command_id, seq) key already serves it.

Every transition the recorder copies inserted into three B-trees (the table, the unique key,
this index); the unique key leads with command_id, so lookups by command use it, and one
tree fewer to write shortens each batch the recorder commits under SQLite's single writer
lock (bench/README.md).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the index that duplicates the leading column of uq_command_events_seq."""
    op.drop_index("ix_command_events_command_id", table_name="command_events")


def downgrade() -> None:
    """Put it back."""
    op.create_index("ix_command_events_command_id", "command_events", ["command_id"])
