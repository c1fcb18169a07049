"""Host and zone names: validation and the one normal form used everywhere.

The normal form is lower case, ASCII (IDNA-encoded), without the trailing dot.
"""

from __future__ import annotations

import functools
import re

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class InvalidName(ValueError):
    """Not a fully qualified domain name."""


@functools.lru_cache(maxsize=4096)
def normalize_fqdn(text: str) -> str:
    """Return the normal form of ``text`` or raise :class:`InvalidName`."""
    name = text.strip()
    name = name[:-1] if name.endswith(".") else name
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidName(f"{text!r} is not a valid internationalized name") from None
    name = name.lower()
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253:
        raise InvalidName(f"{text!r} is not a fully qualified domain name")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidName(f"{text!r} is not a fully qualified domain name")
    if labels[-1].isdigit():
        raise InvalidName(f"{text!r} is an address, not a name")
    return name


def in_zone(fqdn: str, zone: str) -> bool:
    return fqdn == zone or fqdn.endswith("." + zone)
