"""The dyndns2 answer codes as the client acts on them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    ACCEPTED = "accepted"  # good, nochg: remember what was sent
    PERMANENT = "permanent"  # stop this host until the configuration changes or `resume`
    TEMPORARY = "temporary"  # back off (at least as long as the server asked) and try again


# What to tell the user for each refusal: what went wrong and what to do.
# "{host}" stands for the host name the answer was about.
PERMANENT_HINTS = {
    "badauth": "the user name or secret is wrong: check 'username' in the configuration "
    "and store the right secret with 'nicupdate-client set-secret'",
    "nohost": "this account may not update this host name, or the server does not know it: "
    "check 'hostnames' and the host's owner on the server",
    "notfqdn": "the server does not accept this as a fully qualified host name: check 'hostnames'",
    "numhost": "too many host names in one request: list fewer in 'hostnames'",
    "badagent": "the server refused this client (blocked user agent or method): "
    "ask the server's operator",
    "abuse": "the server blocked this host for repeated needless updates: ask the server's "
    "operator to run 'nicupdate-server host unblock {host}', then run 'nicupdate-client resume'",
    "!donator": "the server says this feature needs a paid account",
}
TEMPORARY_HINTS = {
    "911": "the server has a problem on its side",
    "dnserr": "the server could not update its DNS",
}
# HTTP statuses that are always temporary, whatever the body says; their Retry-After
# is honoured. The server answers 429 (body 911) when a host's update rate is exceeded,
# when this address is locked out after too many wrong passwords, or when it is busy.
THROTTLED_HINTS = {
    429: "the server is limiting requests: too many updates, too many wrong passwords "
    "from this address, or too busy",
    503: "the server is unavailable for now",
}


@dataclass(frozen=True)
class Answer:
    code: str
    line: str
    kind: Kind
    hint: str
    wait: float | None = None  # seconds the server asked us to wait (its Retry-After)

    def hint_for(self, host: str) -> str:
        return self.hint.replace("{host}", host)

    @classmethod
    def of(cls, line: str) -> Answer:
        code = line.split()[0] if line.split() else ""
        if code in ("good", "nochg"):
            return cls(code, line, Kind.ACCEPTED, "")
        if code in PERMANENT_HINTS:
            return cls(code, line, Kind.PERMANENT, PERMANENT_HINTS[code])
        hint = TEMPORARY_HINTS.get(code, f"unexpected answer {line[:80]!r}")
        return cls(code or "?", line, Kind.TEMPORARY, hint)


def split_answers(status: int, body: str, count: int, *, wait: float | None = None) -> list[Answer]:
    """One answer per host sent, in order, from an HTTP status and body.

    ``wait``: the seconds of the response's ``Retry-After``, kept on a 429 or 503 answer.
    """
    if status == 401:
        return [Answer.of("badauth")] * count
    if status in THROTTLED_HINTS:
        hint = THROTTLED_HINTS[status]
        return [Answer(str(status), f"HTTP {status}", Kind.TEMPORARY, hint, wait)] * count
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
