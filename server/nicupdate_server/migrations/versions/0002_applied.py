"""applied state per backend, and the last backend error per name

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied",
        sa.Column("backend", sa.String(length=64), nullable=False),
        sa.Column("fqdn", sa.String(length=253), nullable=False),
        sa.Column("rtype", sa.String(length=4), nullable=False),
        sa.Column("addresses", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("backend", "fqdn", "rtype", name=op.f("pk_applied")),
    )
    op.create_table(
        "sync_errors",
        sa.Column("backend", sa.String(length=64), nullable=False),
        sa.Column("fqdn", sa.String(length=253), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("backend", "fqdn", name=op.f("pk_sync_errors")),
    )


def downgrade() -> None:
    op.drop_table("sync_errors")
    op.drop_table("applied")
