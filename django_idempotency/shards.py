"""Records spread over several databases, each scope's on one of them.

``IDEMPOTENCY["DATABASE"]`` may list several aliases. A scope (a user, an API
client) then always has its records on the same alias, so a claim is still one
statement on one database and exactly-once needs nothing across databases.

The alias is chosen by rendezvous hashing: every alias scores the scope with a
hash of both, and the highest score wins. The hash is SHA-256, not Python's
``hash()``, so every process and every host agrees. Adding an alias moves only
the scopes that the new alias now wins (about one in n); removing one moves
only its own scopes. A modulo over the list would move almost all of them.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.utils.module_loading import import_string

from .options import OptionError


def rendezvous(scope: str, aliases: Sequence[str]) -> str:
    """The alias among ``aliases`` that holds ``scope``'s records."""
    encoded = scope.encode("utf-8", "surrogatepass")
    return max(aliases, key=lambda alias: _score(alias, encoded))


def _score(alias: str, scope: bytes) -> bytes:
    # The alias is hashed with the scope, not its position in the list: the
    # list may be reordered without moving any scope.
    return hashlib.sha256(alias.encode() + b"\x00" + scope).digest()


def parse_databases(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str) and raw:
        return (raw,)
    if isinstance(raw, list | tuple) and raw and all(isinstance(a, str) and a for a in raw):
        if len(set(raw)) != len(raw):
            raise OptionError(f"'DATABASE' lists an alias twice: {list(raw)!r}")
        return tuple(raw)
    raise OptionError(
        f"'DATABASE' must be a database alias or a non-empty list of aliases, not {raw!r}"
    )


def parse_route(raw: Any, databases: tuple[str, ...]) -> Callable[[str], str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = import_string(raw)
        except ImportError as exc:
            raise OptionError(f"'DATABASE_ROUTE' cannot be imported: {exc}") from None
    if not callable(raw):
        raise OptionError(
            f"'DATABASE_ROUTE' must be a callable scope -> alias or its dotted path, not {raw!r}"
        )
    try:
        inspect.signature(raw).bind("scope")
    except TypeError:
        raise OptionError(
            f"'DATABASE_ROUTE' must take one argument, the scope: {raw!r} cannot"
        ) from None
    except ValueError:  # no signature to read (some builtins): called as given
        pass
    if len(databases) < 2:
        # Silently unused otherwise: a route is read only to choose among shards.
        raise OptionError("'DATABASE_ROUTE' needs 'DATABASE' to list several aliases")
    route: Callable[[str], str] = raw
    return route


def parse_listen(raw: Any, databases: tuple[str, ...]) -> Mapping[str, str] | None:
    """LISTEN_DATABASE as {records alias: alias to LISTEN on}; None: nowhere."""
    if raw is None:  # each records database listens on itself
        return {alias: alias for alias in databases}
    if raw is False:
        return None
    if isinstance(raw, str) and raw:
        if len(databases) > 1:
            raise OptionError(
                "'LISTEN_DATABASE' names one alias but 'DATABASE' lists several: "
                "give None, False or a dict {records alias: alias to LISTEN on}"
            )
        return {databases[0]: raw}
    if isinstance(raw, Mapping):
        unknown = [alias for alias in raw if alias not in databases]
        if unknown:
            raise OptionError(
                f"'LISTEN_DATABASE' names {unknown!r}, which 'DATABASE' does not list"
            )
        if not all(isinstance(v, str) and v for v in raw.values()):
            raise OptionError("'LISTEN_DATABASE' values must be database alias strings")
        return dict(raw)
    raise OptionError(
        "'LISTEN_DATABASE' must be a database alias, None, False or a dict "
        f"{{records alias: alias}}, not {raw!r}"
    )
