"""Idempotency keys of submissions: the client's key and a digest of its request, unique per user.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the key and digest columns, and the key's uniqueness per user."""
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("request_digest", sa.String(64), nullable=True))
    # Rows without a key hold NULL, which a unique index never counts as a repeat.
    op.create_index(
        "uq_commands_user_idempotency_key",
        "commands",
        ["user", "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("uq_commands_user_idempotency_key", table_name="commands")
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("request_digest")
        batch.drop_column("idempotency_key")
