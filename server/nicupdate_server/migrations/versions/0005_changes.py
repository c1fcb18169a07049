"""the change log, and the positions of its durable readers

Revision ID: 0005
Revises: 0004

``meta.admin_revision`` (the CLI's reload trigger) is no longer used: the change log
says what changed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(253), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(96), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "feed_positions",
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_feed_positions")),
    )
    op.execute(sa.text("DELETE FROM meta WHERE key = 'admin_revision'"))


def downgrade() -> None:
    op.drop_table("feed_positions")
    op.drop_table("changes")
