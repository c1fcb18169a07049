"""ORM classes over the tables of :mod:`.tables`, for the CLI's account and host
management (``admin.py``). The server itself works on the tables with Core statements
and never imports this module (the ORM mapping costs memory it does not need).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped

from . import tables


class Base(DeclarativeBase):
    metadata = tables.metadata


class User(Base):
    __table__ = tables.users

    id: Mapped[int]
    name: Mapped[str]
    password_hash: Mapped[str]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    is_admin: Mapped[bool]
    disabled_at: Mapped[datetime | None]
    totp_secret: Mapped[str | None]
    totp_step: Mapped[int | None]


class Host(Base):
    __table__ = tables.hosts

    id: Mapped[int]
    fqdn: Mapped[str]
    owner_id: Mapped[int]
    token_digest: Mapped[str | None]
    created_at: Mapped[datetime]
    last_update_at: Mapped[datetime | None]
    last_result: Mapped[str | None]
    last_seen_at: Mapped[datetime | None]
    nochg_count: Mapped[int]
    blocked_at: Mapped[datetime | None]
    wildcard: Mapped[bool]
    ipv6_prefix: Mapped[str | None]
    follows_id: Mapped[int | None]
    interface_id: Mapped[str | None]
    prefix_length: Mapped[int | None]


class Record(Base):
    __table__ = tables.records

    host_id: Mapped[int]
    rtype: Mapped[str]
    address: Mapped[str]


class Zone(Base):
    __table__ = tables.zones

    name: Mapped[str]
    serial: Mapped[int]


class UpdateLog(Base):
    __table__ = tables.update_log

    id: Mapped[int]
    at: Mapped[datetime]
    fqdn: Mapped[str]
    caller: Mapped[str]
    user_agent: Mapped[str]
    old_value: Mapped[str]
    new_value: Mapped[str]
    answer: Mapped[str]
    detail: Mapped[str]
    confirmed_at: Mapped[datetime | None]


class Meta(Base):
    __table__ = tables.meta

    key: Mapped[str]
    value: Mapped[int]


class ApiToken(Base):
    __table__ = tables.api_tokens

    id: Mapped[int]
    user_id: Mapped[int]
    name: Mapped[str]
    digest: Mapped[str]
    hosts: Mapped[str | None]
    read_only: Mapped[bool]
    acme_only: Mapped[bool]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
