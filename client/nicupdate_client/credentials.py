"""Where the secret (password or host token) lives: never in the configuration file.

Looked up in this order: the credential a systemd unit hands over (``LoadCredential=``),
the ``secret_file`` the configuration names, the machine-wide secret file (``--system``),
``$NICUPDATE_PASSWORD``, and the OS credential store through ``keyring`` (Windows
Credential Manager, macOS Keychain, the Secret Service on Linux desktops).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors

from .config import ClientConfig
from .paths import Paths, systemd_credential

SERVICE = "nicupdate"
ENV_SECRET = "NICUPDATE_PASSWORD"


class SecretError(Exception):
    """No secret can be read or stored; the message says what to do."""


@dataclass(frozen=True)
class Secret:
    value: str
    where: str  # for messages: "Windows Credential Manager", "/etc/nicupdate/client.secret"

    def __repr__(self) -> str:
        return f"Secret(<hidden>, where={self.where!r})"

    __str__ = __repr__


def account(config: ClientConfig) -> str:
    """The credential store's user name for this server and account."""
    return f"{config.username}@{config.server.rstrip('/')}"


def _store() -> keyring.backend.KeyringBackend | None:
    """The OS credential store, or None where there is none (a headless Linux box)."""
    if getattr(sys, "frozen", False) and sys.platform == "win32":
        # keyring finds backends through entry points, which a frozen executable lacks.
        from keyring.backends import Windows

        keyring.set_keyring(Windows.WinVaultKeyring())
    backend = keyring.get_keyring()
    if backend.priority <= 0:  # keyring's "fail" backend, or a chainer with nothing in it
        return None
    return backend


# keyring's backends by module, as users know them.
FRIENDLY_NAMES = {
    "keyring.backends.Windows": "Windows Credential Manager",
    "keyring.backends.macOS": "macOS Keychain",
    "keyring.backends.SecretService": "Secret Service",
    "keyring.backends.kwallet": "KWallet",
}


def store_name() -> str | None:
    backend = _store()
    if backend is None:
        return None
    module = type(backend).__module__
    return FRIENDLY_NAMES.get(module, str(getattr(backend, "name", type(backend).__name__)))


def load_secret(config: ClientConfig, paths: Paths, *, system: bool) -> Secret:
    handed = systemd_credential()
    if handed is not None:
        return Secret(read_secret_file(handed), "systemd credential")
    if config.secret_file is not None:
        return Secret(read_secret_file(config.secret_file), str(config.secret_file))
    if system:
        if paths.secret_file.exists():
            return Secret(read_secret_file(paths.secret_file), str(paths.secret_file))
        raise SecretError(
            f"no secret in {paths.secret_file}: run 'nicupdate-client set-secret --system'"
        )
    if os.environ.get(ENV_SECRET):
        return Secret(os.environ[ENV_SECRET], f"${ENV_SECRET}")
    backend = _store()
    if backend is not None:
        try:
            value = backend.get_password(SERVICE, account(config))
        except keyring.errors.KeyringError as exc:
            raise SecretError(f"cannot read the credential store: {exc}") from None
        if value:
            return Secret(value, store_name() or "credential store")
    raise SecretError(f"no secret stored for {account(config)}: run 'nicupdate-client set-secret'")


def save_secret(config: ClientConfig, value: str, *, file: Path | None = None) -> str:
    """Store ``value`` in ``file`` or the credential store; returns where, for the user."""
    if not value or "\n" in value or "\r" in value:
        raise SecretError("the secret must be one non-empty line")
    if file is not None:
        write_secret_file(file, value)
        return str(file)
    backend = _store()
    if backend is None:
        raise SecretError(
            "this system has no credential store: keep the secret in a file "
            "(set-secret --file PATH, or init --secret-file PATH)"
        )
    try:
        backend.set_password(SERVICE, account(config), value)
    except keyring.errors.KeyringError as exc:
        raise SecretError(f"cannot write to the credential store: {exc}") from None
    return store_name() or "credential store"


def delete_secret(config: ClientConfig) -> bool:
    backend = _store()
    if backend is None:
        return False
    try:
        backend.delete_password(SERVICE, account(config))
    except keyring.errors.PasswordDeleteError:
        return False
    return True


def read_secret_file(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if not value:
        raise SecretError(f"the secret file {path} is empty")
    return value


def write_secret_file(path: Path, value: str) -> None:
    """Write the secret readable by its owner only (the ACL on Windows is set by the caller)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.replace(temporary, path)
