"""wildcards, IPv6 prefix followers, TXT records, acme-dns accounts, TSIG keys

Revision ID: 0006
Revises: 0005

``records.address`` holds a TXT value too (up to 255 characters).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(
            sa.Column("wildcard", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("ipv6_prefix", sa.String(43), nullable=True))
        batch.add_column(sa.Column("follows_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("interface_id", sa.String(39), nullable=True))
        batch.add_column(sa.Column("prefix_length", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_hosts_follows_id"), ["follows_id"])
        batch.create_foreign_key(
            batch.f("fk_hosts_follows_id_hosts"),
            "hosts",
            ["follows_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("records") as batch:
        batch.alter_column("address", type_=sa.String(255), existing_type=sa.String(45))
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("subdomain", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_acme_accounts_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_acme_accounts_username")),
        sa.UniqueConstraint("subdomain", name=op.f("uq_acme_accounts_subdomain")),
    )
    op.create_index(op.f("ix_acme_accounts_host_id"), "acme_accounts", ["host_id"])
    op.create_table(
        "tsig_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_tsig_keys_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_tsig_keys_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tsig_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_tsig_keys_name")),
    )
    op.create_index(op.f("ix_tsig_keys_owner_id"), "tsig_keys", ["owner_id"])
    op.create_index(op.f("ix_tsig_keys_host_id"), "tsig_keys", ["host_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tsig_keys_host_id"), table_name="tsig_keys")
    op.drop_index(op.f("ix_tsig_keys_owner_id"), table_name="tsig_keys")
    op.drop_table("tsig_keys")
    op.drop_index(op.f("ix_acme_accounts_host_id"), table_name="acme_accounts")
    op.drop_table("acme_accounts")
    op.execute(sa.text("DELETE FROM records WHERE rtype = 'TXT'"))
    with op.batch_alter_table("records") as batch:
        batch.alter_column("address", type_=sa.String(45), existing_type=sa.String(255))
    with op.batch_alter_table("hosts") as batch:
        batch.drop_constraint(batch.f("fk_hosts_follows_id_hosts"), type_="foreignkey")
        batch.drop_index(batch.f("ix_hosts_follows_id"))
        for column in ("prefix_length", "interface_id", "follows_id", "ipv6_prefix", "wildcard"):
            batch.drop_column(column)
