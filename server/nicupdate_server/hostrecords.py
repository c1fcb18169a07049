"""Which DNS names and records one host stands for.

A host's own records are A and AAAA at its name. Two more names may carry records of it:

* ``*.<fqdn>`` (a host with ``wildcard`` on) carries the same A and AAAA records;
* ``_acme-challenge.<fqdn>`` carries its TXT records (ACME DNS-01 tokens).

The host's record set (``{"A": (...), "AAAA": (...), "TXT": (...)}``) and its wildcard
flag are what the database, the server's memory and the change log keep; every place
that turns them into DNS records (the reconciler, the built-in DNS, its transfers)
does it with :func:`expand`, so that all of them agree on the names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ADDRESS_TYPES = ("A", "AAAA")
RTYPES = ("A", "AAAA", "TXT")  # every type a host's record set may hold
WILDCARD_LABEL = "*"
ACME_LABEL = "_acme-challenge"
# The types each kind of owner name holds.
OWNER_TYPES = {"": ADDRESS_TYPES, WILDCARD_LABEL: ADDRESS_TYPES, ACME_LABEL: ("TXT",)}
# TXT values kept per host (acme-dns keeps two: a wildcard and its apex at once).
MAX_TXT = 2

RecordSet = dict[str, tuple[str, ...]]
# What a TXT value may hold: ACME tokens and the like. No comma, semicolon, quote or
# space: the change log, the history and the backends' stores list values with them.
TXT_VALUE = re.compile(r"[A-Za-z0-9_\-=+/.:@]{1,255}")


def valid_txt(value: str) -> bool:
    return TXT_VALUE.fullmatch(value) is not None


def wildcard_name(fqdn: str) -> str:
    return f"{WILDCARD_LABEL}.{fqdn}"


def acme_name(fqdn: str) -> str:
    return f"{ACME_LABEL}.{fqdn}"


def owners(fqdn: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every name a host may have records at, with the types it may hold there."""
    return (
        (fqdn, ADDRESS_TYPES),
        (wildcard_name(fqdn), ADDRESS_TYPES),
        (acme_name(fqdn), ("TXT",)),
    )


def expand(
    fqdn: str, records: Mapping[str, tuple[str, ...]], wildcard: bool
) -> dict[tuple[str, str], tuple[str, ...]]:
    """``(owner name, type) -> values`` for every name and type of :func:`owners`, an
    empty tuple where the host has none (so that stale records are removed)."""
    return keyed(fqdn, records, records if wildcard else {})


def derived_host(name: str) -> tuple[str, str] | None:
    """``(label, host name)`` when ``name`` is a wildcard or ACME name of a host."""
    label, _, rest = name.partition(".")
    if label in (WILDCARD_LABEL, ACME_LABEL) and rest:
        return label, rest
    return None


def keyed(
    fqdn: str, records: Mapping[str, tuple[str, ...]], star: Mapping[str, tuple[str, ...]]
) -> dict[tuple[str, str], tuple[str, ...]]:
    """:func:`expand` with the wildcard's records given (``star``: A/AAAA at ``*.<fqdn>``),
    as a backend may have them whatever the host wants."""
    wildcard = wildcard_name(fqdn)
    return {
        (fqdn, "A"): tuple(records.get("A", ())),
        (fqdn, "AAAA"): tuple(records.get("AAAA", ())),
        (wildcard, "A"): tuple(star.get("A", ())),
        (wildcard, "AAAA"): tuple(star.get("AAAA", ())),
        (acme_name(fqdn), "TXT"): tuple(records.get("TXT", ())),
    }


def unkeyed(
    fqdn: str, values: Mapping[tuple[str, str], tuple[str, ...]]
) -> tuple[RecordSet, RecordSet]:
    """The inverse of :func:`keyed`: the host's record set, and its wildcard's."""
    wildcard = wildcard_name(fqdn)
    records = {rtype: values.get((fqdn, rtype), ()) for rtype in ADDRESS_TYPES}
    records["TXT"] = values.get((acme_name(fqdn), "TXT"), ())
    star = {rtype: values.get((wildcard, rtype), ()) for rtype in ADDRESS_TYPES}
    return records, star


def host_of(name: str) -> str:
    """The host a DNS name of :func:`owners` belongs to."""
    derived = derived_host(name)
    return derived[1] if derived is not None else name


def describe_key(fqdn: str, owner: str, rtype: str) -> str:
    """``A`` for the host's own records, ``*.A`` or ``_acme-challenge.TXT`` for the others."""
    return rtype if owner == fqdn else f"{owner.partition('.')[0]}.{rtype}"
