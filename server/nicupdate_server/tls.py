"""HTTPS on the server's own listener: ``server.tls_certificate`` and ``server.tls_key``.

One :class:`ssl.SSLContext` serves every connection. A reload (SIGHUP) loads the files
again into that same context, so new connections get the new certificate while open
ones keep theirs; files that do not load (missing, not PEM, a key that does not match)
leave the running certificate in place and are reported as one line naming the key.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

from .config import ConfigError, ServerSettings

log = logging.getLogger(__name__)


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def _load(context: ssl.SSLContext, certificate: Path, key: Path) -> None:
    """Load the pair into ``context``, or raise :class:`ConfigError` naming the key."""
    for name, path in (("server.tls_certificate", certificate), ("server.tls_key", key)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    try:
        context.load_cert_chain(certificate, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ConfigError(
                f"server.tls_key: {key} is not the key of the certificate {certificate}"
            ) from None
        raise ConfigError(
            f"server.tls_certificate: {certificate} and {key} are not a PEM certificate "
            f"chain and its private key ({exc.reason or exc})"
        ) from None


def _warn_if_readable(key: Path) -> None:
    try:
        mode = stat.S_IMODE(os.stat(key).st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning("server.tls_key: %s is readable by others (mode %o): chmod 600 it", key, mode)


class Tls:
    """The listener's TLS context, or None when the server speaks plain HTTP."""

    def __init__(self, settings: ServerSettings) -> None:
        self.context: ssl.SSLContext | None = None
        if settings.tls_certificate is not None and settings.tls_key is not None:
            self.context = _context()
            _load(self.context, settings.tls_certificate, settings.tls_key)
            _warn_if_readable(settings.tls_key)

    def reload(self, settings: ServerSettings) -> None:
        """Load the files again (they may have been renewed); raise :class:`ConfigError`
        and keep the running certificate when they do not load. Turning TLS on or off
        needs a restart: the listener is already bound."""
        if self.context is None or settings.tls_certificate is None or settings.tls_key is None:
            if (self.context is None) != (settings.tls_certificate is None):
                log.warning(
                    "server.tls_certificate: turning TLS on or off takes effect after a restart"
                )
            return
        _load(_context(), settings.tls_certificate, settings.tls_key)  # first on a spare
        _load(self.context, settings.tls_certificate, settings.tls_key)
        _warn_if_readable(settings.tls_key)
        log.info("TLS certificate reloaded from %s", settings.tls_certificate)
