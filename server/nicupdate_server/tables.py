"""The durable state's tables (SQLAlchemy Core). Alembic migrations (``migrations/``)
build them; a test checks that the migrated schema matches.

The server reads and writes these tables in bulk with Core statements. The CLI's
account and host management (``admin.py``) works on ORM classes mapped onto the same
tables (``models.py``), which the server never imports.

Portable SQL only: the same schema runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

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
    false,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)
TIME = DateTime(timezone=True)


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), unique=True, nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    # Admins manage every account and see the server's status (web UI, REST API).
    Column("is_admin", Boolean, server_default=false(), nullable=False),
    # A disabled account signs in nowhere, and its hosts' tokens and API tokens are
    # refused, until an admin enables it again.
    Column("disabled_at", TIME),
    # TOTP two-factor sign-in to the web UI (RFC 6238): the base32 secret, and the last
    # time step used (a code is taken once).
    Column("totp_secret", String(64)),
    Column("totp_step", BigInteger),
)

hosts = Table(
    "hosts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("fqdn", String(253), unique=True, nullable=False),
    Column(
        "owner_id",
        ForeignKey("users.id", ondelete="CASCADE"),
        index=True,
        nullable=False,
    ),
    # SHA-256 hex digest of the host token; tokens are long random secrets.
    Column("token_digest", String(64)),
    Column("created_at", TIME, nullable=False),
    Column("last_update_at", TIME),
    Column("last_result", String(64)),
    Column("last_seen_at", TIME),
    Column("nochg_count", BigInteger, default=0, nullable=False),
    # Set when the host answered `abuse` (too many needless updates); `host unblock`
    # clears it.
    Column("blocked_at", TIME),
    # `*.<fqdn>` carries the host's A and AAAA records too.
    Column("wildcard", Boolean, server_default=false(), nullable=False),
    # The IPv6 prefix its last update delegated (``2001:db8:1:2::/64``), which the hosts
    # that follow it take for their AAAA record.
    Column("ipv6_prefix", String(43)),
    # A host that follows another's prefix: its AAAA is that prefix + its interface id.
    Column("follows_id", ForeignKey("hosts.id", ondelete="SET NULL"), index=True),
    Column("interface_id", String(39)),
    Column("prefix_length", Integer),
)

# A record a host currently has: one row per (host, type, value). A and AAAA are the
# host's own; TXT lives at ``_acme-challenge.<fqdn>`` (ACME DNS-01).
records = Table(
    "records",
    metadata,
    Column("host_id", ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
    Column("rtype", String(4), primary_key=True),
    Column("address", String(255), primary_key=True),
)

# Credentials of the acme-dns compatible API (``acmedns``): each may set the TXT
# records of one host's ``_acme-challenge`` name, and nothing else.
acme_accounts = Table(
    "acme_accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("host_id", ForeignKey("hosts.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("username", String(64), unique=True, nullable=False),
    # SHA-256 hex digest of the API key (a long random secret, like a host token).
    Column("key_digest", String(64), nullable=False),
    # acme-dns's "subdomain": the name clients send back with each update.
    Column("subdomain", String(64), unique=True, nullable=False),
    Column("created_at", TIME, nullable=False),
)

# TSIG keys for DNS UPDATE messages (RFC 2136) sent to the built-in DNS port: each
# may change the A, AAAA and ``_acme-challenge`` TXT records of its owner's hosts, or
# of one host. The secret must be kept to check signatures: the database file is 0600.
tsig_keys = Table(
    "tsig_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(253), unique=True, nullable=False),  # the key's DNS name
    Column("owner_id", ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("host_id", ForeignKey("hosts.id", ondelete="CASCADE"), index=True),
    Column("algorithm", String(32), nullable=False),  # hmac-sha256, hmac-md5, ...
    Column("secret", String(128), nullable=False),  # base64
    Column("created_at", TIME, nullable=False),
)

# Bearer tokens of the REST API (``/api/v1``): each acts for its user, optionally only
# on some hosts (``hosts``: their names, comma-separated), only reading, or only on the
# hosts' ``_acme-challenge`` TXT records; until it expires or is revoked.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("name", String(64), nullable=False),
    # SHA-256 hex digest of the token (a long random secret, shown once).
    Column("digest", String(64), unique=True, nullable=False),
    Column("hosts", Text),  # None: every host of the user
    Column("read_only", Boolean, server_default=false(), nullable=False),
    Column("acme_only", Boolean, server_default=false(), nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("expires_at", TIME),
    Column("last_used_at", TIME),
)

# Signed-in browsers of the web UI: the cookie carries a random id, kept here as its
# SHA-256 digest, with the session's CSRF token.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("csrf", String(64), nullable=False),
    # Signed in with the password, the TOTP code still to come: nothing but that page.
    Column("pending_totp", Boolean, server_default=false(), nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("seen_at", TIME, nullable=False),
    Column("expires_at", TIME, index=True, nullable=False),
)

# Per-zone state that must survive restarts: the SOA serial.
zones = Table(
    "zones",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("serial", BigInteger, nullable=False),
)

# The update history (``history.py``): one row per answer other than ``nochg``.
update_log = Table(
    "update_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", TIME, index=True, nullable=False),
    Column("fqdn", String(253), nullable=False),
    Column("caller", String(45), nullable=False),
    Column("user_agent", String(255), nullable=False),
    Column("old_value", Text, nullable=False),
    Column("new_value", Text, nullable=False),
    # The answer line as sent (``good 203.0.113.7``, ``911``).
    Column("answer", String(255), nullable=False),
    # Why, when the answer does not say (``not confirmed by DNS within 2 s``).
    Column("detail", Text, server_default="", nullable=False),
    # When every backend of the zone had the host's records of this update.
    Column("confirmed_at", TIME),
    Index("ix_update_log_fqdn_at", "fqdn", "at"),
)

# Small named counters (``write_probe``: the time of the last write check).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# What a backend has confirmed for a name: the addresses of one type, as applied. Keyed
# by name rather than host, so that a removed host's records are still known and can
# be deleted from DNS. The desired state is ``records``; where the two differ, a change
# is pending and the reconciler applies it. Backends that rebuild their data from
# ``records`` at start-up (``builtin``) keep no rows here.
applied = Table(
    "applied",
    metadata,
    Column("backend", String(64), primary_key=True),
    Column("fqdn", String(253), primary_key=True),
    Column("rtype", String(4), primary_key=True),
    Column("addresses", Text, nullable=False),  # comma-separated, sorted
)

# The last error a backend gave for a name, until a later apply succeeds.
sync_errors = Table(
    "sync_errors",
    metadata,
    Column("backend", String(64), primary_key=True),
    Column("fqdn", String(253), primary_key=True),
    Column("at", TIME, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("permanent", Boolean, nullable=False),
    Column("message", Text, nullable=False),
)

# The change log (``changelog.py``): every change, in commit order, for the processes
# and instances that tail it and for the webhooks. ``AUTOINCREMENT``: an id is never
# given twice on SQLite, even after the newest rows were pruned.
changes = Table(
    "changes",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", TIME, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("subject", String(253), nullable=False),
    Column("value", Text, nullable=False),
    Column("origin", String(96), nullable=False),
    sqlite_autoincrement=True,
)

# Where each durable reader of the change log is (a webhook: the last id it delivered).
# Rows every one of them has passed may be pruned.
feed_positions = Table(
    "feed_positions",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", TIME, nullable=False),
)
