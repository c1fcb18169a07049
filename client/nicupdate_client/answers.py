"""The dyndns2 answer codes as the client acts on them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    ACCEPTED = "accepted"  # good, nochg: remember what was sent
    PERMANENT = "permanent"  # stop updating this host until the configuration changes
    TEMPORARY = "temporary"  # back off and try again


# What to tell the user for each refusal: what went wrong and what to do.
PERMANENT_HINTS = {
    "badauth": "the user name or secret is wrong: check 'username' in the configuration "
    "and store the right secret with 'nicupdate-client set-secret'",
    "nohost": "this account may not update this host name, or the server does not know it: "
    "check 'hostnames' and the host's owner on the server",
    "notfqdn": "the server does not accept this as a fully qualified host name: check 'hostnames'",
    "numhost": "too many host names in one request: list fewer in 'hostnames'",
    "badagent": "the server refused this client (blocked user agent or method): "
    "ask the server's operator",
    "abuse": "the server blocked this host for abuse: ask the server's operator",
    "!donator": "the server says this feature needs a paid account",
}
TEMPORARY_HINTS = {
    "911": "the server has a problem on its side",
    "dnserr": "the server could not update its DNS",
}


@dataclass(frozen=True)
class Answer:
    code: str
    line: str
    kind: Kind
    hint: str

    @classmethod
    def of(cls, line: str) -> Answer:
        code = line.split()[0] if line.split() else ""
        if code in ("good", "nochg"):
            return cls(code, line, Kind.ACCEPTED, "")
        if code in PERMANENT_HINTS:
            return cls(code, line, Kind.PERMANENT, PERMANENT_HINTS[code])
        hint = TEMPORARY_HINTS.get(code, f"unexpected answer {line[:80]!r}")
        return cls(code or "?", line, Kind.TEMPORARY, hint)


def split_answers(status: int, body: str, count: int) -> list[Answer]:
    """One answer per host sent, in order, from an HTTP status and body."""
    if status == 401:
        return [Answer.of("badauth")] * count
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if status != 200 and not (lines and Answer.of(lines[0]).kind is not Kind.TEMPORARY):
        failed = Answer(str(status), f"HTTP {status}", Kind.TEMPORARY, f"HTTP status {status}")
        return [failed] * count
    if len(lines) == count:
        return [Answer.of(line) for line in lines]
    if len(lines) == 1:
        return [Answer.of(lines[0])] * count
    odd = Answer("?", body[:80], Kind.TEMPORARY, f"{len(lines)} answer lines for {count} hosts")
    return [odd] * count
