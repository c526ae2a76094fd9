"""Stored responses encrypted at rest (``IDEMPOTENCY["ENCRYPTION_KEYS"]``).

A sealed value, in the database's ``response_body`` and in Redis::

    version (1 byte, 0x01) | key id (4 bytes) | nonce (12 bytes)
    | AES-256-GCM ciphertext (as long as the plaintext) + tag (16 bytes)

The key id is the start of a SHA-256 of the key: it picks the key among
``ENCRYPTION_KEYS`` without trying them all, and says nothing about the key.
The nonce is random per value. The associated data binds a value to its
record (its lookup hash, and in the database its status code, which stays
in the clear for the admin's filters): a ciphertext copied to another record,
or a status code edited in the table, no longer decrypts.

In the database the headers travel inside the sealed body (JSON, a NUL, the
body) and ``response_headers`` holds only ``SEALED_HEADERS``: a text column
would need the ciphertext in base64 and a second nonce and tag for nothing.
Plaintext headers are always a JSON list, so the marker cannot be mistaken
for them and records written before encryption was turned on still replay.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from typing import Any

from .options import OptionError

# Imported with the app, never on the request path (see cache_lock).
try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # the optional extra is not installed; check E008 says so
    HAVE_CRYPTOGRAPHY = False

VERSION = b"\x01"
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
#: ``response_headers`` of a record whose headers are sealed in its body.
SEALED_HEADERS = "sealed"
_HEADER = len(VERSION) + KEY_ID_BYTES + NONCE_BYTES
_AAD_PREFIX = b"django-idempotency/1/"
MISSING_EXTRA = (
    "ENCRYPTION_KEYS needs the 'cryptography' package: pip install 'django-idempotency[encryption]'"
)


class EncryptionConfigError(OptionError):
    """``ENCRYPTION_KEYS`` cannot be used (check E008): the message says why."""


class Unreadable(Exception):
    """A sealed value that no configured key opens (its key was removed, or
    the value was altered): never replayed, never taken for a missing one."""

    def __init__(self, reason: str, key_id: str = "") -> None:
        self.reason = reason
        self.key_id = key_id
        super().__init__(f"{reason} (key id {key_id or 'unknown'})")


def generate_key() -> str:
    """A new key for ``ENCRYPTION_KEYS``: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"django-idempotency key id\0" + key).digest()[:KEY_ID_BYTES]


def decode_keys(raw: Any) -> tuple[bytes, ...]:
    """The keys of the setting, decoded; ``EncryptionConfigError`` if unusable."""
    if not isinstance(raw, (list, tuple)):
        raise EncryptionConfigError(
            f"'ENCRYPTION_KEYS' must be a list of keys, not {type(raw).__name__}"
        )
    keys: list[bytes] = []
    for position, text in enumerate(raw):
        where = f"ENCRYPTION_KEYS[{position}]"
        if not isinstance(text, str):
            raise EncryptionConfigError(
                f"{where} must be a string (URL-safe base64), not {type(text).__name__}"
            )
        try:
            key = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise EncryptionConfigError(
                f"{where} is not URL-safe base64 (with its '=' padding); "
                "generate keys with django_idempotency.encryption.generate_key()"
            ) from None
        if len(key) != KEY_BYTES:
            raise EncryptionConfigError(
                f"{where} decodes to {len(key)} bytes; a key is {KEY_BYTES} random bytes "
                "(44 characters of URL-safe base64)"
            )
        if key in keys:
            raise EncryptionConfigError(f"{where} repeats an earlier key")
        keys.append(key)
    if keys and not HAVE_CRYPTOGRAPHY:
        raise EncryptionConfigError(MISSING_EXTRA)
    return tuple(keys)


class Keyring:
    """Seals with the first key, opens with any."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        assert HAVE_CRYPTOGRAPHY and keys
        self._ciphers = [(_key_id(key), AESGCM(key)) for key in keys]

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        key_id, cipher = self._ciphers[0]
        # Random 96-bit nonces: safe for 2**32 values per key (NIST SP 800-38D);
        # rotating the key resets the count.
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + key_id + nonce + cipher.encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        if sealed[:1] != VERSION or len(sealed) < _HEADER + TAG_BYTES:
            raise Unreadable("not a sealed value of a known format")
        key_id = sealed[1 : 1 + KEY_ID_BYTES]
        nonce = sealed[1 + KEY_ID_BYTES : _HEADER]
        candidates = [cipher for id_, cipher in self._ciphers if id_ == key_id]
        if not candidates:
            raise Unreadable("sealed with a key not in ENCRYPTION_KEYS", key_id.hex())
        for cipher in candidates:  # more than one only if two key ids collide
            try:
                return bytes(cipher.decrypt(nonce, sealed[_HEADER:], associated))
            except InvalidTag:
                continue
        raise Unreadable("altered, or moved from another record", key_id.hex())


def _record_aad(lookup_hash: str, status: int | None) -> bytes:
    return _AAD_PREFIX + f"record/{lookup_hash}/{status}".encode()


def cache_aad(lookup_hash: str) -> bytes:
    return _AAD_PREFIX + f"cache/{lookup_hash}".encode()


def seal_record(
    ring: Keyring, lookup_hash: str, status: int, headers: list[tuple[str, str]], body: bytes
) -> tuple[str, bytes]:
    """``(response_headers, response_body)`` column values of a sealed record."""
    # JSON never contains a raw NUL, so it separates the headers from the body.
    plaintext = json.dumps(headers).encode() + b"\0" + body
    return SEALED_HEADERS, ring.seal(plaintext, _record_aad(lookup_hash, status))


def open_record(
    ring: Keyring | None, lookup_hash: str, status: int | None, headers: str, body: bytes | None
) -> tuple[list[tuple[str, str]], bytes | None]:
    """The headers and body of a record as stored, sealed or not.

    Raises ``Unreadable`` for a sealed record that no configured key opens
    (also when encryption was turned off since it was written).
    """
    if headers != SEALED_HEADERS:
        return _pairs(headers or "[]"), body
    if body is None:
        raise Unreadable("sealed record without its body")
    if ring is None:
        raise Unreadable("sealed, and ENCRYPTION_KEYS is empty", bytes(body[1:5]).hex())
    plaintext = ring.open(bytes(body), _record_aad(lookup_hash, status))
    head, _, content = plaintext.partition(b"\0")
    return _pairs(head), content


def _pairs(headers: str | bytes) -> list[tuple[str, str]]:
    """The stored headers; Unreadable if the column holds anything else (it
    was altered): never a 500 traceback, never a replay of garbage."""
    try:
        pairs = [(name, value) for name, value in json.loads(headers)]
    except (ValueError, TypeError) as exc:
        raise Unreadable(f"the stored headers are not a JSON list of pairs ({exc})") from None
    if not all(isinstance(name, str) and isinstance(value, str) for name, value in pairs):
        raise Unreadable("the stored headers are not a JSON list of string pairs")
    return pairs
