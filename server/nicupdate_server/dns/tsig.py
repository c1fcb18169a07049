"""TSIG keys for zone transfers and NOTIFY, read from the files BIND's tools write.

``tsig-keygen NAME > NAME.key`` prints a key clause::

    key "xfr-key" {
            algorithm hmac-sha256;
            secret "base64...";
    };

:func:`load_key_file` reads such a file (comments of the three named.conf styles,
any whitespace, several clauses: the first, or the one named); :func:`load_key` takes
the name and algorithm from the configuration and only the secret from a file. Both
raise :class:`KeyFileError` with one line that names the file and what is wrong in it,
and never the secret: the keys they return say ``<TSIG key xfr-key hmac-sha256>`` when
printed, where dnspython's own would print the secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import dns.exception
import dns.name
import dns.tsig

from ..config import TransferSettings

ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-md5.sig-alg.reg.int": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
_SHOWN_ALGORITHMS = "hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224, hmac-sha1, hmac-md5"

# Tokens of named.conf's grammar that a key clause uses: quoted strings, words,
# braces and semicolons; comments (#, //, /* */) and whitespace in between are skipped.
_TOKEN = re.compile(
    r"(?P<skip>\s+|#[^\n]*|//[^\n]*|/\*.*?\*/)"
    r'|"(?P<quoted>[^"]*)"'
    r"|(?P<punct>[{};])"
    r'|(?P<word>(?:[^\s{};"#/]|/(?![/*]))+)',
    re.DOTALL,
)


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and the problem."""


class SecretKey(dns.tsig.Key):
    """A :class:`dns.tsig.Key` whose ``repr`` and ``str`` leave the secret out."""

    def __repr__(self) -> str:
        return f"<TSIG key {self.name.to_text(omit_final_dot=True)} {algorithm_text(self)}>"

    __str__ = __repr__


def algorithm_text(key: dns.tsig.Key) -> str:
    """The key's algorithm as configuration spells it (``hmac-sha256``)."""
    if key.algorithm == dns.tsig.HMAC_MD5:
        return "hmac-md5"
    return str(key.algorithm.to_text(omit_final_dot=True)).lower()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such file") from None
    except PermissionError:
        raise KeyFileError(f"{path}: not readable by this user") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a text file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot be read ({exc.strerror})") from None


def _key_name(text: str, where: str) -> dns.name.Name:
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException:
        raise KeyFileError(f"{where}: {text!r} is not a valid key name") from None
    if len(name.labels) < 2:
        raise KeyFileError(f"{where}: the key name is empty")
    return name


def _algorithm(text: str, where: str) -> dns.name.Name:
    algorithm = ALGORITHMS.get(text.lower().rstrip("."))
    if algorithm is None:
        raise KeyFileError(f"{where}: unknown algorithm {text!r} (use one of {_SHOWN_ALGORITHMS})")
    return algorithm


def _secret(text: str, where: str) -> bytes:
    try:
        secret = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if not secret:
        raise KeyFileError(f"{where}: the secret is not base64 text, as tsig-keygen prints it")
    return secret


class _Tokens:
    """The tokens of a key file, each with its line number (for the error messages)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.items: list[tuple[str, str, int]] = []  # (kind, text, line)
        position, line = 0, 1
        while position < len(text):
            found = _TOKEN.match(text, position)
            if found is None:
                raise KeyFileError(f"{path}: line {line}: unexpected {text[position]!r}")
            kind = found.lastgroup or "skip"
            if kind != "skip":
                self.items.append((kind, found.group(kind), line))
            line += found.group(0).count("\n")
            position = found.end()
        self.index = 0

    def where(self) -> str:
        line = self.items[min(self.index, len(self.items) - 1)][2] if self.items else 1
        return f"{self.path}: line {line}"

    def next(self, what: str) -> tuple[str, str]:
        if self.index >= len(self.items):
            raise KeyFileError(f"{self.path}: ends where {what} was expected")
        kind, text, _ = self.items[self.index]
        self.index += 1
        return kind, text

    def expect(self, punct: str) -> None:
        kind, text = self.next(f"{punct!r}")
        if kind != "punct" or text != punct:
            self.index -= 1
            raise KeyFileError(f"{self.where()}: expected {punct!r}, found {text!r}")

    def skip_statement(self) -> None:
        """Skip the rest of a statement we do not read, braces included."""
        depth = 0
        while True:
            kind, text = self.next("';'")
            if kind == "punct" and text == "{":
                depth += 1
            elif kind == "punct" and text == "}":
                depth -= 1
            elif kind == "punct" and text == ";" and depth <= 0:
                return


def _clauses(path: Path, text: str) -> list[tuple[str, dns.name.Name, str, str | None, str | None]]:
    """Every key clause: (name as written, name, where, algorithm, secret)."""
    tokens = _Tokens(path, text)
    found: list[tuple[str, dns.name.Name, str, str | None, str | None]] = []
    while tokens.index < len(tokens.items):
        kind, word = tokens.next("a statement")
        if kind != "word" or word.lower() != "key":
            tokens.index -= 1
            tokens.skip_statement()  # e.g. an options or server block beside the keys
            continue
        where = tokens.where()
        kind, written = tokens.next("the key's name")
        if kind not in ("quoted", "word"):
            raise KeyFileError(f"{where}: expected the key's name after 'key', found {written!r}")
        name = _key_name(written, where)
        tokens.expect("{")
        algorithm: str | None = None
        secret: str | None = None
        while True:
            kind, field = tokens.next("'}'")
            if kind == "punct" and field == "}":
                break
            if kind != "word":
                tokens.index -= 1
                raise KeyFileError(f"{tokens.where()}: unexpected {field!r} in key {written}")
            value_kind, value = tokens.next(f"the value of {field}")
            if value_kind not in ("quoted", "word"):
                raise KeyFileError(f"{tokens.where()}: {field} has no value in key {written}")
            if field.lower() == "algorithm":
                algorithm = value
            elif field.lower() == "secret":
                secret = value
            else:
                raise KeyFileError(f"{tokens.where()}: unknown setting {field!r} in key {written}")
            tokens.expect(";")
        tokens.expect(";")
        found.append((written.rstrip("."), name, where, algorithm, secret))
    return found


def load_key_file(path: str | Path, name: str | None = None) -> dns.tsig.Key:
    """The key named ``name`` (default: the first) from a file of ``key`` clauses."""
    path = Path(path)
    clauses = _clauses(path, _read(path))
    if not clauses:
        raise KeyFileError(
            f'{path}: holds no key clause (tsig-keygen prints: key "NAME" '
            '{ algorithm hmac-sha256; secret "..."; };)'
        )
    if name is None:
        written, key_name, where, algorithm, secret = clauses[0]
    else:
        wanted = _key_name(name, f"{path}: the key name asked for")
        matching = [clause for clause in clauses if clause[1] == wanted]
        if not matching:
            names = ", ".join(clause[0] for clause in clauses)
            raise KeyFileError(f"{path}: holds no key named {name!r} (it holds {names})")
        written, key_name, where, algorithm, secret = matching[0]
    if algorithm is None:
        raise KeyFileError(f"{where}: key {written} has no algorithm")
    if secret is None:
        raise KeyFileError(f"{where}: key {written} has no secret")
    return SecretKey(
        key_name, _secret(secret, f"{where}: key {written}"), _algorithm(algorithm, where)
    )


def load_key(name: str, algorithm: str, secret_file: str | Path) -> dns.tsig.Key:
    """The key ``name`` with ``algorithm`` and the base64 secret held in ``secret_file``."""
    path = Path(secret_file)
    text = _read(path)
    if re.search(r"\bkey\b[^;]*\{", text):
        raise KeyFileError(
            f"{path}: holds a key clause, not just the secret (give it as a key file instead)"
        )
    return SecretKey(
        _key_name(name, f"{path}: the key name"),
        _secret(text, str(path)),
        _algorithm(algorithm, f"{path}: the key {name}"),
    )


def transfer_key(settings: TransferSettings) -> dns.tsig.Key:
    """The key of ``[dns.transfer]`` (raises :class:`KeyFileError`, naming the file)."""
    if settings.tsig_key_file:
        return load_key_file(settings.tsig_key_file, settings.key_name or None)
    return load_key(settings.key_name, settings.algorithm, settings.tsig_secret_file)
