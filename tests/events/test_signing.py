"""Standard Webhooks signatures: our signer against the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest

from server.errors import ConfigError
from server.events import signing

BODY = b'{"specversion":"1.0","id":"abc","type":"io.sluice.model.deployed"}'
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_signature_matches_the_standard_webhooks_package() -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    stamp = int(time.time())
    headers = signing.headers(WHSEC, "evt-1", BODY, stamp)
    standardwebhooks.Webhook(WHSEC).verify(BODY, headers)  # raises if it does not match
    theirs = standardwebhooks.Webhook(WHSEC).sign(
        "evt-1", datetime.fromtimestamp(stamp, UTC), BODY.decode()
    )
    assert headers["webhook-signature"] == theirs


def test_raw_string_secret_is_its_utf8_bytes() -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    headers = signing.headers("s3cret-ü", "evt-2", BODY, int(time.time()))
    standardwebhooks.Webhook("s3cret-ü".encode()).verify(BODY, headers)
    assert signing.verify("s3cret-ü", headers, BODY) == "evt-2"


def test_wrong_secret_fails_verification() -> None:
    headers = signing.headers("right", "evt-3", BODY, int(time.time()))
    with pytest.raises(signing.InvalidSignature, match="no signature matches"):
        signing.verify("wrong", headers, BODY)


def test_changed_body_or_id_fails_verification() -> None:
    headers = signing.headers(WHSEC, "evt-4", BODY, int(time.time()))
    with pytest.raises(signing.InvalidSignature):
        signing.verify(WHSEC, headers, BODY.replace(b"deployed", b"deleted"))
    with pytest.raises(signing.InvalidSignature):
        signing.verify(WHSEC, {**headers, "webhook-id": "evt-5"}, BODY)


def test_old_timestamp_and_missing_headers_fail() -> None:
    stamp = int(time.time())
    headers = signing.headers(WHSEC, "evt-6", BODY, stamp)
    with pytest.raises(signing.InvalidSignature, match="more than 300 s"):
        signing.verify(WHSEC, headers, BODY, now=stamp + 301)
    assert signing.verify(WHSEC, headers, BODY, now=stamp + 299) == "evt-6"
    with pytest.raises(signing.InvalidSignature, match="missing"):
        signing.verify(WHSEC, {"webhook-id": "evt-6"}, BODY)
    with pytest.raises(signing.InvalidSignature, match="not an integer"):
        signing.verify(WHSEC, {**headers, "webhook-timestamp": "soon"}, BODY)


def test_any_of_several_signatures_verifies_during_rotation() -> None:
    stamp = int(time.time())
    new = signing.headers("new", "evt-7", BODY, stamp)["webhook-signature"]
    old = signing.headers("old", "evt-7", BODY, stamp)["webhook-signature"]
    headers = {"Webhook-Id": "evt-7", "Webhook-Timestamp": str(stamp)}
    assert signing.verify("old", {**headers, "Webhook-Signature": f"{new} {old}"}, BODY)


def test_unsigned_without_a_secret_and_bad_secrets_refused() -> None:
    assert "webhook-signature" not in signing.headers(None, "evt-8", BODY, 1)
    with pytest.raises(ConfigError, match="not valid base64"):
        signing.secret_key("whsec_@@@")
    with pytest.raises(ConfigError, match="empty"):
        signing.secret_key("")
