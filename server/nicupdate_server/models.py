"""SQLAlchemy models: the durable state. Alembic migrations (``migrations/``) build it.

Portable SQL only: the same schema runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fqdn: Mapped[str] = mapped_column(String(253), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 hex digest of the host token; tokens are long random secrets.
    token_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_update_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_result: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    nochg_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set when the host answered `abuse` (too many needless updates); `host unblock` clears it.
    blocked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Record(Base):
    """An address a host currently has: one row per (host, type, address)."""

    __tablename__ = "records"

    host_id: Mapped[int] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    rtype: Mapped[str] = mapped_column(String(4), primary_key=True)
    address: Mapped[str] = mapped_column(String(45), primary_key=True)


class Zone(Base):
    """Per-zone state that must survive restarts: the SOA serial."""

    __tablename__ = "zones"

    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    serial: Mapped[int] = mapped_column(BigInteger)


class UpdateLog(Base):
    """The update history (``history.py``): one row per answer other than ``nochg``."""

    __tablename__ = "update_log"
    __table_args__ = (Index("ix_update_log_fqdn_at", "fqdn", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    fqdn: Mapped[str] = mapped_column(String(253))
    caller: Mapped[str] = mapped_column(String(45))
    user_agent: Mapped[str] = mapped_column(String(255))
    old_value: Mapped[str] = mapped_column(Text)
    new_value: Mapped[str] = mapped_column(Text)
    # The answer line as sent (``good 203.0.113.7``, ``911``).
    answer: Mapped[str] = mapped_column(String(255))
    # Why, when the answer does not say (``not confirmed by DNS within 2 s``).
    detail: Mapped[str] = mapped_column(Text, server_default="")
    # When every backend of the zone had the host's records of this update.
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Meta(Base):
    """Small named counters; ``admin_revision`` rises on every CLI change."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


# Two plain tables (no ORM classes: the server only reads and writes them in bulk).

# What a backend has confirmed for a name: the addresses of one type, as applied. Keyed
# by name rather than host, so that a removed host's records are still known and can
# be deleted from DNS. The desired state is ``records``; where the two differ, a change
# is pending and the reconciler applies it. Backends that rebuild their data from
# ``records`` at start-up (``builtin``) keep no rows here.
applied = Table(
    "applied",
    Base.metadata,
    Column("backend", String(64), primary_key=True),
    Column("fqdn", String(253), primary_key=True),
    Column("rtype", String(4), primary_key=True),
    Column("addresses", Text, nullable=False),  # comma-separated, sorted
)

# The last error a backend gave for a name, until a later apply succeeds.
sync_errors = Table(
    "sync_errors",
    Base.metadata,
    Column("backend", String(64), primary_key=True),
    Column("fqdn", String(253), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("permanent", Boolean, nullable=False),
    Column("message", Text, nullable=False),
)
