"""How the backends compare and spell record values, whatever the type.

A :class:`~.base.RecordChange` carries A and AAAA addresses, or TXT values as plain text
(an ACME DNS-01 token, unquoted). Providers differ in how they hold them: an address may
come back as ``2001:DB8:0::7``; a TXT value may be wanted and returned in zone-file
quoting (``"token"``, Route 53 and Huawei Cloud) or bare (Alidns, DNSPod). These helpers
turn each into one comparable form, and back.

A backend that can be read back answers, for each owner name it is asked about, the
types that name holds (:func:`owner_types`): A and AAAA at a host's name and at its
wildcard ``*.<fqdn>``, TXT at ``_acme-challenge.<fqdn>``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..hostrecords import OWNER_TYPES, derived_host

ADDRESS_TYPES = frozenset({"A", "AAAA"})


def owner_types(name: str) -> tuple[str, ...]:
    """The types an owner name holds: A and AAAA, or TXT for ``_acme-challenge.<fqdn>``."""
    derived = derived_host(name.rstrip(".").lower())
    return OWNER_TYPES[derived[0] if derived is not None else ""]


def canonical(rtype: str, value: str) -> str:
    """An address in its canonical text (``2001:DB8:0::7`` -> ``2001:db8::7``); a TXT
    value as it is (TXT values are case-sensitive text)."""
    if rtype not in ADDRESS_TYPES:
        return value
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value.strip()


def canonical_set(rtype: str, values: Iterable[str]) -> tuple[str, ...]:
    """The distinct canonical values, sorted: two sets are equal when these are."""
    return tuple(sorted({canonical(rtype, value) for value in values}))


def quote_txt(value: str, *, octal: bool = False) -> str:
    """A TXT value as one zone-file character-string: ``"..."`` with ``"`` and ``\\``
    escaped. ``octal``: bytes outside printable ASCII as ``\\ooo`` of their UTF-8, as
    Route 53 wants them; otherwise the text as it is."""
    if not octal:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    spelt = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            spelt.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            spelt.append(char)
        else:
            spelt.append(f"\\{byte:03o}")
    return '"' + "".join(spelt) + '"'


def unquote_txt(text: str, *, octal: bool = False) -> str:
    """The TXT value a provider shows as ``text``: quoted character-strings (``"a" "b"``)
    joined into one value, their escapes undone (``\\"``, ``\\\\``, and a byte as
    ``\\DDD``, decimal as in zone files or, with ``octal``, octal as Route 53 writes it);
    bare text as it is."""
    text = text.strip()
    if not text.startswith('"'):
        return text
    base = 8 if octal else 10
    data = bytearray()
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        if text[position] != '"':  # bare text after the quoted strings: keep it as it is
            data += text[position:].encode("utf-8")
            break
        position += 1
        while position < len(text) and text[position] != '"':
            char = text[position]
            if char == "\\" and position + 1 < len(text):
                byte = _numeric_escape(text[position + 1 : position + 4], base)
                if byte is not None:
                    data.append(byte)
                    position += 4
                    continue
                position += 1
                char = text[position]
            data += char.encode("utf-8")
            position += 1
        position += 1  # the closing quote
    return data.decode("utf-8", "replace")


def _numeric_escape(code: str, base: int) -> int | None:
    """The byte a ``\\DDD`` escape stands for (three digits in ``base``), or None."""
    if len(code) != 3 or not code.isdigit():
        return None
    try:
        value = int(code, base)
    except ValueError:
        return None
    return value if value < 256 else None
