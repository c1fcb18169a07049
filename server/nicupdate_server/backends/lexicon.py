"""Backend ``lexicon``: about 90 more DNS providers through dns-lexicon (optional extra).

Install with ``pip install 'nicupdate[lexicon]'``; ``lexicon --help`` lists the
providers, ``lexicon PROVIDER --help`` a provider's options (``--auth-token`` is the
option ``auth_token``). ::

    [backends.gandi]
    type = "lexicon"
    provider = "gandi"              # a dns-lexicon provider name
    timeout = 30                    # seconds for each step (opening the zone, one record set)

    [backends.gandi.options]        # the provider's plain options (never a secret)
    api_protocol = "rest"

    [backends.gandi.secret_files]   # secret options, each read from a file
    auth_token = "/etc/nicupdate/gandi.token"

    # [backends.gandi.secret_env]   # or from an environment variable
    # auth_token = "GANDI_TOKEN"

Each :class:`RecordChange` is made true on its own: the provider's records of that name
and type are listed; when they hold the wanted values nothing is written; otherwise
the missing values are created first (with the zone's TTL) and the others deleted
after, so the name never goes without an address. Wildcard owners (``*.<fqdn>``) and
TXT values (``_acme-challenge.<fqdn>``) go to lexicon as they are: lexicon's providers
take TXT content unquoted and quote it where their API wants it; a listed TXT value in
quotation marks is compared unquoted. Whether a provider takes wildcard names is up to
it and its API: a refusal is a permanent error with the provider's message.

dns-lexicon is synchronous: every step runs in a worker thread under ``timeout``, and
every HTTP request it makes there gets that timeout too. The zone is always the
configured zone name: nicupdate never lets lexicon guess it, and tldextract uses its
bundled public suffix list, never the network.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ..config import ZoneSettings
from .base import (
    BackendError,
    PermanentBackendError,
    RecordChange,
    TransientBackendError,
    ZoneChange,
)
from .relay import retry_after
from .settings import TableReader
from .values import canonical, unquote_txt

if TYPE_CHECKING:
    import requests
    from lexicon.interfaces import Provider

log = logging.getLogger("nicupdate.backend")

T = TypeVar("T")
KNOWN_KEYS = ("type", "provider", "timeout", "options", "secret_files", "secret_env")
# Option names that hold a secret: these come from secret_files or secret_env only.
SECRET_NAME = re.compile(
    r"token|passw|secret|api_?key|private|credential|service_account|(^|_)key$", re.IGNORECASE
)
INSTALL = "the lexicon backend needs dns-lexicon: pip install 'nicupdate[lexicon]'"
LIST_PROVIDERS = "`lexicon --help` lists them"
MASK = "[secret]"


class LexiconBackend:
    """Applies record changes through one dns-lexicon provider."""

    coalesce_window = 0.05  # gather what arrives within this window into one apply
    max_batch = 50  # record sets per apply: each costs a listing and one call per write

    def __init__(
        self,
        name: str,
        *,
        provider: str,
        provider_class: type[Provider],
        options: Mapping[str, Any],
        secrets: Mapping[str, str],
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.provider = provider
        self.timeout = timeout
        self._provider_class = provider_class
        self._options = dict(options)
        self._secrets = dict(secrets)
        # Values to hide, also as they appear in a URL.
        self._hidden = sorted(
            {form for value in secrets.values() for form in _forms(value)}, key=len, reverse=True
        )
        # One step at a time per zone: a step that timed out must finish (or notice it
        # was abandoned) before the next change of that zone starts.
        self._locks: dict[str, threading.Lock] = {}

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> LexiconBackend:
        """Build the backend from its ``[backends.NAME]`` table; raises BackendUnavailable."""
        return cls(name, **_Settings(name, table).parse())

    @property
    def label(self) -> str:
        return f"{self.name} (lexicon {self.provider})"

    def __repr__(self) -> str:
        return (
            f"LexiconBackend(name={self.name!r}, provider={self.provider!r}, "
            f"options={self._options!r}, secret_options={sorted(self._secrets)!r})"
        )

    # -- Backend protocol --------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to do: each apply opens the zone at the provider."""

    async def close(self) -> None:
        """Nothing to do: lexicon keeps no connection between applies."""

    async def apply(self, change: ZoneChange) -> None:
        if not change.changes:
            return
        zone = change.zone
        step = _Steps(self, self._locks.setdefault(zone.name, threading.Lock()))
        provider = await step.run(
            f"opening zone {zone.name}", lambda: self._open(zone), every_name=True
        )
        try:
            for record in change.changes:
                what = f"setting {record.fqdn} {record.rtype}"
                await step.run(
                    what, functools.partial(self._sync, provider, record, step.abandoned)
                )
        finally:
            if not step.abandoned.is_set():
                try:
                    await step.run("closing the provider session", provider.cleanup)
                except BackendError as exc:
                    log.debug("%s", exc)

    # -- in the worker thread ----------------------------------------------------------

    def _open(self, zone: ZoneSettings) -> Provider:
        """A provider for ``zone``, authenticated (it looks the zone up)."""
        from lexicon.config import ConfigResolver

        config = ConfigResolver().with_dict(  # type: ignore[no-untyped-call]
            {
                "provider_name": self.provider,
                "domain": zone.name,  # the zone, exactly: nothing is guessed
                "ttl": zone.ttl,
                self.provider: {**self._options, **self._secrets},
            }
        )
        provider = self._provider_class(config)
        provider.authenticate()
        return provider

    def _sync(self, provider: Provider, record: RecordChange, abandoned: threading.Event) -> None:
        """Make the provider hold exactly ``record.addresses`` for its name and type."""
        rtype = record.rtype
        wanted = {value for value in (_value(rtype, v) for v in record.addresses) if value}
        present: dict[str | None, list[dict[str, Any]]] = {}
        for found in provider.list_records(rtype, record.fqdn):
            if found.get("type") == rtype and _same_name(found, record.fqdn, provider):
                present.setdefault(_value(rtype, str(found.get("content", ""))), []).append(found)
        if set(present) == wanted:
            return
        for missing in sorted(wanted.difference(present)):
            if abandoned.is_set():
                return
            provider.create_record(record.rtype, record.fqdn, missing)
        for address, listed in present.items():
            if address in wanted:
                continue
            for found in listed:
                if abandoned.is_set():
                    return
                identifier = found.get("id")
                if identifier:
                    provider.delete_record(str(identifier))
                else:
                    provider.delete_record(None, record.rtype, record.fqdn, found.get("content"))

    # -- errors ------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by a mask."""
        for value in self._hidden:
            text = text.replace(value, MASK)
        return text

    def translate(self, exc: Exception, what: str, every_name: bool = False) -> BackendError:
        """A BackendError for what lexicon (or requests under it) raised. Refused
        credentials, and every refusal with ``every_name``, concern all names alike."""
        import requests
        from lexicon.exceptions import AuthenticationError

        text = self.scrub(" ".join(f"{type(exc).__name__}: {exc}".split()))
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            return self._http_error(exc.response, what, every_name)
        if isinstance(exc, requests.Timeout):
            return TransientBackendError(
                f"{self.label}: {what}: the provider did not answer within {self.timeout:g} s"
            )
        if isinstance(exc, requests.ConnectionError):
            return TransientBackendError(
                f"{self.label}: {what}: cannot reach the provider ({text})"
            )
        if isinstance(exc, AuthenticationError):
            return PermanentBackendError(
                f"{self.label}: {what}: the provider refused the credentials or does not "
                f"know the zone ({text}): {self._fix_credentials()}",
                every_name=True,
            )
        return PermanentBackendError(f"{self.label}: {what} failed: {text}", every_name=every_name)

    def _http_error(self, response: requests.Response, what: str, every_name: bool) -> BackendError:
        status = response.status_code
        body = self.scrub(" ".join(response.text.split()))[:300]
        said = f"HTTP {status}: {body}" if body else f"HTTP {status}"
        if status in (401, 403):
            return PermanentBackendError(
                f"{self.label}: {what}: the provider refused the credentials ({said}): "
                f"{self._fix_credentials()}",
                every_name=True,
            )
        if status == 429 or status >= 500:
            wait = retry_after(httpx.Response(status, headers=list(response.headers.items())))
            hint = f"; asked to wait {wait:g} s" if wait is not None else ""
            busy = "throttled" if status == 429 else "the provider failed"
            return TransientBackendError(
                f"{self.label}: {what}: {busy} ({said}{hint})", retry_after=wait
            )
        if status == 404:
            return PermanentBackendError(
                f"{self.label}: {what}: not found ({said}): check that the zone exists at the "
                "provider under exactly this name and that the credentials may see it",
                every_name=every_name,
            )
        return PermanentBackendError(
            f"{self.label}: {what}: the provider refused it ({said})", every_name=every_name
        )

    def _fix_credentials(self) -> str:
        where = f"[backends.{self.name}.secret_files] or [backends.{self.name}.secret_env]"
        if not self._secrets:
            return f"check the provider's credentials: none is configured, give them in {where}"
        names = ", ".join(sorted(self._secrets))
        return f"check the credentials ({names}) in {where} and that they may edit the zone"


class _Steps:
    """Runs one apply's steps in worker threads, one at a time per zone, each under the
    backend's timeout. A step that times out is abandoned: its thread makes no further
    write, and the next apply's steps wait for it to end."""

    def __init__(self, backend: LexiconBackend, lock: threading.Lock) -> None:
        self.backend = backend
        self.lock = lock
        self.abandoned = threading.Event()

    async def run(self, what: str, work: Callable[[], T], *, every_name: bool = False) -> T:
        """``work()`` in a worker thread. ``every_name``: a refusal of this step is not
        about the names of the change (opening the zone)."""
        backend = self.backend
        try:
            async with asyncio.timeout(backend.timeout):
                return await asyncio.to_thread(self._in_thread, what, work, every_name)
        except TimeoutError:
            self.abandoned.set()
            raise TransientBackendError(
                f"{backend.label}: {what}: no answer within {backend.timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            self.abandoned.set()
            raise
        except PermanentBackendError as exc:
            log.warning("%s", exc)
            raise

    def _in_thread(self, what: str, work: Callable[[], T], every_name: bool) -> T:
        backend = self.backend
        if not self.lock.acquire(timeout=backend.timeout):
            raise TransientBackendError(
                f"{backend.label}: {what}: an earlier call for this zone is still running"
            )
        try:
            if self.abandoned.is_set():
                raise TransientBackendError(f"{backend.label}: {what}: abandoned")
            _worker.timeout, _worker.scrub = backend.timeout, backend.scrub
            try:
                return work()
            except BackendError:
                raise
            except Exception as exc:  # lexicon's providers raise anything
                raise backend.translate(exc, what, every_name) from None
            finally:
                _worker.timeout, _worker.scrub = None, None
        finally:
            self.lock.release()


# -- helpers -----------------------------------------------------------------------------


def _value(rtype: str, text: str) -> str | None:
    """The canonical form of an IP address (None for anything else), or a TXT value
    (unquoted, as lexicon's providers list it or as its API spells it)."""
    if rtype == "TXT":
        return unquote_txt(text)
    value = canonical(rtype, text)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


def _same_name(found: Mapping[str, Any], fqdn: str, provider: Provider) -> bool:
    """Whether a listed record is ``fqdn``: lexicon lists full names, but a provider
    may give a relative one (``@`` for the zone itself)."""
    name = str(found.get("name", "")).rstrip(".").lower()
    fqdn = fqdn.rstrip(".").lower()
    zone = provider.domain.rstrip(".").lower()
    relative = "@" if fqdn == zone else fqdn.removesuffix(f".{zone}")
    return name in (fqdn, relative)


def _forms(secret: str) -> set[str]:
    """A secret as it may appear in a message: as is and URL-encoded."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


# -- process-wide hooks, active only in lexicon's worker threads ---------------------------
# Lexicon's providers call requests without a timeout and log at DEBUG what they send and
# receive (URLs, sometimes with a token). In a thread running a lexicon step, requests
# get the backend's timeout and log lines lose the secret values; elsewhere nothing
# changes.

_worker = threading.local()
_worker.timeout, _worker.scrub = None, None
_hooks_lock = threading.Lock()
_hooked = False


def _install_hooks() -> None:
    global _hooked
    with _hooks_lock:
        if _hooked:
            return
        _hooked = True
        import requests

        send = requests.Session.request

        def request(self: requests.Session, method: str, url: str, *args: Any, **kw: Any) -> Any:
            timeout = getattr(_worker, "timeout", None)
            if timeout is not None and len(args) < 7 and kw.get("timeout") is None:
                kw["timeout"] = timeout  # args[6] is Session.request's timeout
            return send(self, method, url, *args, **kw)

        setattr(requests.Session, "request", request)  # noqa: B010

        make_record = logging.getLogRecordFactory()

        def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            scrub: Callable[[str], str] | None = getattr(_worker, "scrub", None)
            if scrub is not None:
                try:
                    message = record.getMessage()
                except Exception:  # a bad format string: logging reports it later
                    return record
                clean = scrub(message)
                if clean != message:
                    record.msg, record.args = clean, None
            return record

        logging.setLogRecordFactory(record_factory)


# -- configuration ---------------------------------------------------------------------


class _Settings(TableReader):
    """Reads a ``[backends.NAME]`` table of type lexicon."""

    def parse(self) -> dict[str, Any]:
        self.keys()
        provider = self.required("provider", f"the dns-lexicon provider name; {LIST_PROVIDERS}")
        provider_class = self.provider_class(provider)
        known = _option_names(provider_class)
        options = self.options(provider, known)
        secrets = self.secrets(provider, known, options)
        _install_hooks()
        return {
            "provider": provider,
            "provider_class": provider_class,
            "options": options,
            "secrets": secrets,
            "timeout": self.number("timeout", 30.0, 1.0, 600.0),
        }

    def keys(self) -> None:
        for key in self.table:
            if key in KNOWN_KEYS:
                continue
            if SECRET_NAME.search(key):
                raise self.error(key, f"{self.secret_hint()}, not in the configuration")
            raise self.error(
                key,
                f"unknown key for a lexicon backend (provider options go in "
                f"[backends.{self.name}.options])",
            )

    def secret_hint(self) -> str:
        return (
            f"give secrets in [backends.{self.name}.secret_files] (option = file path) or "
            f"[backends.{self.name}.secret_env] (option = environment variable)"
        )

    def provider_class(self, provider: str) -> type[Provider]:
        try:
            import tldextract
            from lexicon._private import discovery
        except ImportError:
            raise self.error("type", INSTALL) from None
        # Never download the public suffix list: the copy bundled with tldextract does.
        tldextract.tldextract.TLD_EXTRACTOR.suffix_list_urls = ()
        available = discovery.find_providers()
        if provider == "auto" or provider not in available:
            raise self.error(
                "provider", f"{provider!r} is not a dns-lexicon provider ({LIST_PROVIDERS})"
            )
        if not available[provider]:
            raise self.error(
                "provider",
                f"the {provider} provider needs more packages: "
                f"pip install 'dns-lexicon[{provider}]'",
            )
        found: type[Provider] = discovery.load_provider_module(provider).Provider
        return found

    def table_of(self, key: str) -> Mapping[str, Any]:
        value = self.table.get(key, {})
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a table ([backends.{self.name}.{key}])")
        return value

    def option_name(self, key: str, name: str, provider: str, known: list[str]) -> None:
        if name not in known:
            raise self.error(
                f"{key}.{name}",
                f"not an option of the lexicon {provider} provider (its options: "
                f"{', '.join(known) or 'none'}; `lexicon {provider} --help` describes them)",
            )

    def options(self, provider: str, known: list[str]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for name, value in self.table_of("options").items():
            if SECRET_NAME.search(name):
                raise self.error(
                    f"options.{name}",
                    f"looks like a secret: {self.secret_hint()}, not in the configuration",
                )
            self.option_name("options", name, provider, known)
            if isinstance(value, bool) or (isinstance(value, str) and value):
                options[name] = value
            elif isinstance(value, int | float):
                options[name] = str(value)  # lexicon's options come as text from its CLI
            else:
                raise self.error(
                    f"options.{name}",
                    f"must be a non-empty string, a number or true/false (got {value!r})",
                )
        return options

    def secrets(
        self, provider: str, known: list[str], options: Mapping[str, Any]
    ) -> dict[str, str]:
        secrets: dict[str, str] = {}
        for key in ("secret_files", "secret_env"):
            reader = TableReader(f"{self.name}.{key}", self.table_of(key))
            for name in reader.table:
                self.option_name(key, name, provider, known)
                if name in options or name in secrets:
                    other = "options" if name in options else "secret_files"
                    raise self.error(f"{key}.{name}", f"given twice (also in {other})")
                text = reader.read_file(name) if key == "secret_files" else reader.read_env(name)
                value = text.strip()
                if not value:
                    where = "the file is empty" if key == "secret_files" else "it is empty"
                    raise self.error(f"{key}.{name}", where)
                secrets[name] = value
        return secrets


def _option_names(provider_class: type[Provider]) -> list[str]:
    """The provider's options, as its command line declares them (``--auth-token``:
    ``auth_token``)."""
    parser = argparse.ArgumentParser(add_help=False)
    provider_class.configure_parser(parser)
    return sorted(action.dest for action in parser._actions if action.dest != argparse.SUPPRESS)
