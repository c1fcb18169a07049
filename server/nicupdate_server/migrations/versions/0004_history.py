"""the update history keeps the answer as sent, why, and when DNS confirmed it

Revision ID: 0004
Revises: 0003

``answer`` was ``good``, ``dnserr: REASON`` or ``911: not stored: REASON``; it becomes
the answer line a client got (``dnserr``, ``911``) and the reason moves to ``detail``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_log = sa.table(
    "update_log",
    sa.column("answer", sa.String),
    sa.column("detail", sa.Text),
)
# (what the answer started with before, the answer line it was)
_SPLIT = (("dnserr: ", "dnserr"), ("911: ", "911"))


def upgrade() -> None:
    with op.batch_alter_table("update_log") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    for prefix, line in _SPLIT:
        op.execute(
            _log.update()
            .where(_log.c.answer.like(f"{prefix}%"))
            .values(detail=sa.func.substr(_log.c.answer, len(prefix) + 1), answer=line)
        )


def downgrade() -> None:
    for prefix, line in _SPLIT:
        op.execute(
            _log.update()
            .where(_log.c.answer == line, _log.c.detail != "")
            .values(answer=sa.func.substr(sa.literal(prefix, sa.Text) + _log.c.detail, 1, 255))
        )
    with op.batch_alter_table("update_log") as batch:
        batch.drop_column("confirmed_at")
        batch.drop_column("detail")
