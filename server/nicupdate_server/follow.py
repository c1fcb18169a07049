"""Applying the change log's rows to this process: accounts, hosts and records.

Rows this process wrote itself are in memory already (skipped by their ``origin``). A
host remembers the id of the newest row applied to it (``revision``) and older rows are
skipped, so the copy converges on what the database holds whatever order this
process's own commits and its reads of others' came in.
Applying is idempotent: at start the process reads the log's newest id, loads the
tables, and applies the rows after that id again.

Each row costs what its change costs: a dictionary update, and for the records of a
host the reconciler is told the name (the built-in DNS serves it; the backends get it
if this process reconciles them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .changelog import Entry, Kind, records_of
from .reconciler import Reconciler
from .state import HostEntry, State, UserEntry, parse_digest

log = logging.getLogger("nicupdate.feed")


def _nothing(host_id: int) -> None:
    pass


class Follower:
    def __init__(self, state: State, reconciler: Reconciler, origin: str) -> None:
        self.state = state
        self.reconciler = reconciler
        self.origin = origin  # this process's rows: in memory already
        # Told the id of a host that may update again (`host unblock`): count afresh.
        self.on_unblocked: Callable[[int], None] = _nothing
        # Workers of a machine (served.py): the group's name, and who is told the
        # position its DNS worker serves.
        self.group = ""
        self.on_served: Callable[[int], None] = _nothing
        self._handlers: dict[str, Callable[[Entry], str | None]] = {
            Kind.USER_ADDED: self._user_added,
            Kind.USER_REMOVED: self._user_removed,
            Kind.HOST_ADDED: self._host_added,
            Kind.HOST_TOKEN: self._host_token,
            Kind.HOST_REMOVED: self._host_removed,
            Kind.HOST_BLOCKED: self._host_blocked,
            Kind.HOST_UNBLOCKED: self._host_unblocked,
            Kind.HOST_SETTINGS: self._host_settings,
            Kind.RECORDS: self._records,
            Kind.APPLIED: self._applied,
            Kind.BACKEND_ERROR: self._backend_error,
            Kind.SERVED: self._served,
        }

    def apply(self, entries: list[Entry]) -> None:
        """Apply ``entries`` (in log order); the changed names go to the reconciler."""
        changed: list[str] = []
        for entry in entries:
            handler = self._handlers.get(entry.kind)
            if handler is None or entry.origin == self.origin:
                continue
            name = handler(entry)
            if name is not None:
                changed.append(name)
        if changed:
            self.reconciler.mark(dict.fromkeys(changed))

    def _host(self, entry: Entry) -> HostEntry | None:
        """The host a row is about, unless the row is not newer than what it has."""
        host = self.state.hosts.get(entry.subject)
        if host is None or entry.id <= host.revision:
            return None
        host.revision = entry.id
        return host

    def _user_added(self, entry: Entry) -> None:
        value = entry.value
        known = entry.subject in self.state.users
        user = UserEntry(int(value["id"]), entry.subject, str(value["password_hash"]))
        self.state.set_user(user, disabled=bool(value.get("disabled", False)))
        _changed("account %s %s", entry.subject, "changed" if known else "added")
        return None

    def _user_removed(self, entry: Entry) -> None:
        user = self.state.users.get(entry.subject)
        if user is not None and user.id == entry.value["id"]:
            del self.state.users[entry.subject]
            self.state.disabled.discard(user.id)
            _changed("account %s removed", entry.subject)
        return None

    def _host_added(self, entry: Entry) -> str | None:
        value = entry.value
        host = self.state.hosts.get(entry.subject)
        if host is not None and host.id == value["id"]:
            host.revision = max(host.revision, entry.id)
            return None  # loaded at start already
        self.state.blocked.discard(entry.subject)
        if host is not None:
            self.state.forget_host(host)
        added = self.state.hosts[entry.subject] = HostEntry(
            int(value["id"]),
            entry.subject,
            int(value["owner_id"]),
            parse_digest(value.get("token_digest")),
            revision=entry.id,
        )
        self._settings(added, value)
        _changed("host %s added (owner %s)", entry.subject, value.get("owner", "?"))
        return entry.subject if host is not None else None  # another host of that name went

    def _host_token(self, entry: Entry) -> None:
        host = self._host(entry)
        if host is not None:
            host.token_digest = parse_digest(entry.value.get("token_digest"))
            _changed("host %s: new token", entry.subject)
        return None

    def _host_removed(self, entry: Entry) -> str | None:
        host = self.state.hosts.get(entry.subject)
        self._serial(entry)
        if host is None or host.id != entry.value["id"]:
            return None
        del self.state.hosts[entry.subject]
        self.state.forget_host(host)
        _changed("host %s removed", entry.subject)
        return entry.subject  # its records leave DNS

    def _host_blocked(self, entry: Entry) -> None:
        host = self._host(entry)
        if host is not None:
            self.state.set_blocked(host, True)
            host.last_result = "abuse"
        return None

    def _host_unblocked(self, entry: Entry) -> None:
        host = self._host(entry)
        if host is not None and host.blocked:
            self.state.set_blocked(host, False)
            host.last_result = "unblocked"
            self.on_unblocked(host.id)
            _changed("host %s unblocked: it may update again", entry.subject)
        return None

    def _records(self, entry: Entry) -> str | None:
        self._serial(entry)
        host = self._host(entry)
        if host is None:
            return None
        records = records_of(entry.value)
        wildcard = bool(entry.value.get("wildcard"))
        prefix = entry.value.get("prefix")
        if prefix:
            host.change_extra(prefix=str(prefix))
        if records == host.records() and wildcard == host.wildcard:
            return None
        host.set_records(records)
        if wildcard != host.wildcard:
            host.change_extra(wildcard=wildcard)
        host.last_result = "good"
        return entry.subject

    def _host_settings(self, entry: Entry) -> None:
        host = self._host(entry)
        if host is not None:
            self._settings(host, entry.value)
            _changed("host %s: settings changed", entry.subject)
        return None

    def _settings(self, host: HostEntry, value: Mapping[str, Any]) -> None:
        """A host's wildcard flag and whose prefix it follows, as a row gives them."""
        if "wildcard" in value:
            host.change_extra(wildcard=bool(value["wildcard"]))
        if "follows" in value:
            follows = value["follows"]
            self.state.set_follows(
                host,
                None if follows is None else int(follows),
                interface_id=value.get("interface_id"),
                prefix_length=value.get("prefix_length"),
            )

    def _applied(self, entry: Entry) -> None:
        value = entry.value
        self.reconciler.remote_applied(
            str(value["backend"]),
            entry.subject,
            records_of(value),
            records_of({"records": value.get("wildcard_records")}),
        )
        return None

    def _backend_error(self, entry: Entry) -> None:
        value = entry.value
        self.reconciler.remote_problem(
            str(value["backend"]),
            entry.subject,
            str(value["message"]),
            permanent=bool(value["permanent"]),
        )
        return None

    def _served(self, entry: Entry) -> None:
        if self.group and entry.subject == self.group:
            self.on_served(int(entry.value["position"]))
        return None

    def _serial(self, entry: Entry) -> None:
        zone, serial = entry.value.get("zone"), entry.value.get("serial")
        if zone is not None and serial is not None:
            self.state.set_serial(str(zone), int(serial))


def _changed(message: str, *args: object) -> None:
    """One line per account or host change made elsewhere (the CLI, another instance)."""
    log.info(message, *args)
