"""Devices: whether each one's connection is open (activated) or closed (deactivated).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add devices.active; every device registered before it stays active."""
    op.add_column(
        "devices",
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("active")
