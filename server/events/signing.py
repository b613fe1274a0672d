"""Standard Webhooks signatures (https://www.standardwebhooks.com): sign what Sluice sends,
verify what a receiver gets.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; the signature header is
``v1,<base64 HMAC-SHA256>`` (several, space-separated, while a secret is being rotated). A
secret is either Standard Webhooks' ``whsec_<base64>`` form, whose decoded bytes are the key,
or any other string, whose UTF-8 bytes are the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from server.errors import ConfigError

PREFIX = "whsec_"
TOLERANCE_S = 300.0  # Standard Webhooks' default: five minutes either side


class InvalidSignature(Exception):
    """The headers are missing, malformed, out of the time tolerance, or match no signature."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret`` (``whsec_<base64>`` or a raw string)."""
    if secret.startswith(PREFIX):
        try:
            key = base64.b64decode(secret[len(PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise ConfigError(f"webhook secret '{PREFIX}...' is not valid base64") from exc
    else:
        key = secret.encode()
    if not key:
        raise ConfigError("webhook secret is empty")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str | None, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and, with a secret, ``webhook-signature``."""
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret is not None:
        out["webhook-signature"] = signature(secret_key(secret), msg_id, timestamp, body)
    return out


def verify(
    secret: str,
    received: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a delivery's signature and timestamp; return its ``webhook-id``.

    ``received`` maps header names (any case) to values, as a receiver's framework gives them;
    ``body`` is the raw request body, before any JSON parsing. Raises ``InvalidSignature``.
    """
    lowered = {k.lower(): v for k, v in received.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature(f"webhook-timestamp '{stamp}' is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidSignature(
            f"webhook-timestamp {timestamp} is more than {tolerance_s:g} s from now ({current:.0f})"
        )
    expected = signature(secret_key(secret), msg_id, timestamp, body)
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return msg_id
    raise InvalidSignature("no signature matches the secret")
