"""Reading and validating the key from the request header."""

from __future__ import annotations

from .exceptions import KeyInvalid
from .options import Options


def _unquote_sf_string(value: str) -> str:
    """Unquote an RFC 8941 sf-string (``"abc"``), as the IETF draft sends the key."""
    out = []
    chars = iter(value[1:-1])
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in ('"', "\\"):
                raise KeyInvalid("the quoted key has an invalid escape sequence")
            out.append(escaped)
        elif char == '"':
            raise KeyInvalid("the quoted key has an unescaped double quote")
        else:
            out.append(char)
    return "".join(out)


def parse_key(raw: str, options: Options) -> str:
    """Return the key, or raise ``KeyInvalid`` whose detail (sent to the
    client) names the rule that failed."""
    value = raw.strip(" \t")
    if not value.isascii():
        raise KeyInvalid("the key must be ASCII")
    if not value.isprintable():
        raise KeyInvalid("the key must not contain control characters")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _unquote_sf_string(value)
    elif "," in value:
        # Two copies of the header arrive joined by a comma.
        raise KeyInvalid(f"the {options.header} header must be sent once, with one value")
    if not value:
        raise KeyInvalid("the key is empty")
    if len(value) < options.key_min_length:
        raise KeyInvalid(f"the key must be at least {options.key_min_length} characters long")
    if len(value) > options.key_max_length:
        raise KeyInvalid(f"the key must be at most {options.key_max_length} characters long")
    if not options.key_pattern.fullmatch(value):
        raise KeyInvalid("the key contains characters that are not allowed")
    return value
