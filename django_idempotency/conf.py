"""The ``IDEMPOTENCY`` setting, read at call time so ``override_settings`` works.

The parsed value is cached and the cache dropped on ``setting_changed``; a
generation counter lets per-view option caches notice the change too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .encryption import Keyring, decode_keys
from .options import OptionError, Options, combine, validate_options

#: Settings that only exist globally, with their defaults.
GLOBAL_DEFAULTS: Mapping[str, Any] = {
    "DATABASE": "default",
    "LOCK": "database",
    "CACHE_ALIAS": "default",
    "LOOKUP_BODY": False,
    "ENCRYPTION_KEYS": (),
    # Where waiting duplicates LISTEN (PostgreSQL): None is DATABASE, False backs off.
    "LISTEN_DATABASE": None,
}
LOCK_CHOICES = ("database", "cache")


@dataclass(frozen=True)
class AppSettings:
    database: str
    lock: str
    cache_alias: str
    view_defaults: Mapping[str, Any]  # validated view options from the setting
    lookup_body: bool = False  # the outcome look-up shows stored bodies
    #: Seals stored responses; None unless ENCRYPTION_KEYS lists keys.
    keyring: Keyring | None = None
    #: The alias a waiting duplicate LISTENs on; None: no LISTEN, it backs off.
    listen_database: str | None = None


def parse_setting(raw: Any) -> AppSettings:
    """Parse the raw ``IDEMPOTENCY`` value; raise ``OptionError`` if unusable."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise OptionError(f"IDEMPOTENCY must be a dict, not {type(raw).__name__}")
    globals_ = {name: raw.get(name, default) for name, default in GLOBAL_DEFAULTS.items()}
    for name in ("DATABASE", "CACHE_ALIAS"):
        if not isinstance(globals_[name], str) or not globals_[name]:
            raise OptionError(f"'{name}' must be a database/cache alias string")
    if globals_["LOCK"] not in LOCK_CHOICES:
        raise OptionError(f"'LOCK' must be one of {LOCK_CHOICES}, not {globals_['LOCK']!r}")
    if not isinstance(globals_["LOOKUP_BODY"], bool):
        raise OptionError(f"'LOOKUP_BODY' must be True or False, not {globals_['LOOKUP_BODY']!r}")
    listen = globals_["LISTEN_DATABASE"]
    if listen is None:
        listen = globals_["DATABASE"]
    elif listen is False:
        listen = None
    elif not isinstance(listen, str) or not listen:
        raise OptionError(
            f"'LISTEN_DATABASE' must be a database alias string, None or False, not {listen!r}"
        )
    keys = decode_keys(globals_["ENCRYPTION_KEYS"])
    view_raw = {k: v for k, v in raw.items() if k not in GLOBAL_DEFAULTS}
    view_defaults = validate_options(view_raw, upper=True, also_valid=GLOBAL_DEFAULTS)
    combine(view_defaults)  # reject impossible combinations now, not per request
    return AppSettings(
        database=globals_["DATABASE"],
        lock=globals_["LOCK"],
        cache_alias=globals_["CACHE_ALIAS"],
        view_defaults=view_defaults,
        lookup_body=globals_["LOOKUP_BODY"],
        keyring=Keyring(keys) if keys else None,
        listen_database=listen,
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
    try:
        return combine(get_settings().view_defaults, view_options)
    except OptionError as exc:
        raise ImproperlyConfigured(f"idempotency options: {exc}") from None


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    global _cache, generation
    if setting in ("IDEMPOTENCY", "DATABASES", "CACHES"):
        _cache = None
        generation += 1
