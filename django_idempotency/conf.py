"""The ``IDEMPOTENCY`` setting, read at call time so ``override_settings`` works.

The parsed value is cached and the cache dropped on ``setting_changed``; a
generation counter lets per-view option caches notice the change too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .encryption import Keyring, decode_keys
from .options import OptionError, Options, combine, validate_options
from .shards import parse_databases, parse_listen, parse_route, rendezvous

#: Settings that only exist globally, with their defaults.
GLOBAL_DEFAULTS: Mapping[str, Any] = {
    # An alias, or a list of aliases that records are sharded across by scope.
    "DATABASE": "default",
    # With several DATABASE aliases: None (a stable hash of the scope), or a
    # callable (or its dotted path) scope -> one of them.
    "DATABASE_ROUTE": None,
    "LOCK": "database",
    "CACHE_ALIAS": "default",
    "LOOKUP_BODY": False,
    "ENCRYPTION_KEYS": (),
    # Where waiting duplicates LISTEN (PostgreSQL): None is the records' own
    # alias, False backs off; an alias, or {records alias: alias} with shards.
    "LISTEN_DATABASE": None,
}
LOCK_CHOICES = ("database", "cache")


@dataclass(frozen=True)
class AppSettings:
    #: Every alias that holds records, in the setting's order; usually one.
    databases: tuple[str, ...]
    lock: str
    cache_alias: str
    view_defaults: Mapping[str, Any]  # validated view options from the setting
    lookup_body: bool = False  # the outcome look-up shows stored bodies
    #: Seals stored responses; None unless ENCRYPTION_KEYS lists keys.
    keyring: Keyring | None = None
    #: Records alias -> the alias its waiting duplicates LISTEN on; a records
    #: alias missing here is not listened on (they back off).
    listen_databases: Mapping[str, str] | None = None
    #: DATABASE_ROUTE: the project's choice of alias for a scope.
    route: Callable[[str], str] | None = None

    @property
    def database(self) -> str:
        """The records alias when there is one; the first of the shards otherwise."""
        return self.databases[0]

    @property
    def sharded(self) -> bool:
        return len(self.databases) > 1

    def database_for(self, scope: str) -> str:
        """The alias that holds ``scope``'s records: always the same one for
        the same scope, in every process, as long as the setting is unchanged."""
        if len(self.databases) == 1:
            return self.databases[0]
        if self.route is None:
            return rendezvous(scope, self.databases)
        alias = self.route(scope)
        if alias not in self.databases:
            raise ImproperlyConfigured(
                f"IDEMPOTENCY['DATABASE_ROUTE'] returned {alias!r} for a scope; "
                f"it must return one of {list(self.databases)}"
            )
        return alias

    def listen_database(self, records_alias: str) -> str | None:
        """Where duplicates of a request on ``records_alias`` LISTEN; None: nowhere."""
        if self.listen_databases is None:
            return None
        return self.listen_databases.get(records_alias)


def parse_setting(raw: Any) -> AppSettings:
    """Parse the raw ``IDEMPOTENCY`` value; raise ``OptionError`` if unusable."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise OptionError(f"IDEMPOTENCY must be a dict, not {type(raw).__name__}")
    globals_ = {name: raw.get(name, default) for name, default in GLOBAL_DEFAULTS.items()}
    databases = parse_databases(globals_["DATABASE"])
    route = parse_route(globals_["DATABASE_ROUTE"], databases)
    if not isinstance(globals_["CACHE_ALIAS"], str) or not globals_["CACHE_ALIAS"]:
        raise OptionError("'CACHE_ALIAS' must be a cache alias string")
    if globals_["LOCK"] not in LOCK_CHOICES:
        raise OptionError(f"'LOCK' must be one of {LOCK_CHOICES}, not {globals_['LOCK']!r}")
    if not isinstance(globals_["LOOKUP_BODY"], bool):
        raise OptionError(f"'LOOKUP_BODY' must be True or False, not {globals_['LOOKUP_BODY']!r}")
    listen = parse_listen(globals_["LISTEN_DATABASE"], databases)
    keys = decode_keys(globals_["ENCRYPTION_KEYS"])
    view_raw = {k: v for k, v in raw.items() if k not in GLOBAL_DEFAULTS}
    view_defaults = validate_options(view_raw, upper=True, also_valid=GLOBAL_DEFAULTS)
    # Reject impossible combinations now, not per request.
    _refuse_scattered_atomic(combine(view_defaults), databases, route)
    return AppSettings(
        databases=databases,
        lock=globals_["LOCK"],
        cache_alias=globals_["CACHE_ALIAS"],
        view_defaults=view_defaults,
        lookup_body=globals_["LOOKUP_BODY"],
        keyring=Keyring(keys) if keys else None,
        listen_databases=listen,
        route=route,
    )


_cache: AppSettings | None = None
generation = 0


def get_settings() -> AppSettings:
    global _cache
    if _cache is None:
        try:
            _cache = parse_setting(getattr(settings, "IDEMPOTENCY", None))
        except OptionError as exc:
            raise ImproperlyConfigured(f"IDEMPOTENCY setting: {exc}") from None
    return _cache


def setting_is_valid() -> bool:
    try:
        get_settings()
    except ImproperlyConfigured:
        return False
    return True


def resolve(view_options: Mapping[str, Any]) -> Options:
    """Defaults < ``IDEMPOTENCY`` < per-view options."""
    app_settings = get_settings()
    try:
        options = combine(app_settings.view_defaults, view_options)
        _refuse_scattered_atomic(options, app_settings.databases, app_settings.route)
    except OptionError as exc:
        raise ImproperlyConfigured(f"idempotency options: {exc}") from None
    return options


def _refuse_scattered_atomic(
    options: Options, databases: tuple[str, ...], route: Callable[[str], str] | None
) -> None:
    """Atomic mode commits the view's writes and its record in one transaction,
    on one alias. Hashed shards put each scope's records on an alias of their
    own choosing, never the one the view writes to, so atomic mode would
    quietly stop being atomic; a DATABASE_ROUTE can co-locate them (tenant
    databases) and is the project's responsibility."""
    if options.atomic and len(databases) > 1 and route is None:
        raise OptionError(
            "atomic=True needs the view's writes and its records on one database, "
            f"but 'DATABASE' shards records across {list(databases)} by a hash of the scope; "
            "give a 'DATABASE_ROUTE' that returns the alias the view writes to, or turn "
            "atomic off"
        )


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    global _cache, generation
    if setting in ("IDEMPOTENCY", "DATABASES", "CACHES"):
        _cache = None
        generation += 1
