"""Standard Webhooks signatures, verified by the independent ``standardwebhooks`` implementation."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from engram.webhooks import signing

BODY = json.dumps({"event_details": {"id": "m1", "data": {"memory": "Lives in Lisbon ✓"}, "event": "ADD"}}).encode()


def test_secret_format() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret
    assert signing.mask(secret) == f"whsec_…{secret[-4:]}" and secret[6:-4] not in signing.mask(secret)


def test_headers_verify_with_standardwebhooks() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "msg_1", int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Verifier(secret).verify(BODY, headers) == json.loads(BODY)
    assert signing.verify(secret, "msg_1", int(headers["webhook-timestamp"]), BODY, headers["webhook-signature"])


def test_any_change_breaks_the_signature() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "msg_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(BODY.replace(b"Lisbon", b"Porto"), headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        Verifier(signing.new_secret()).verify(BODY, headers)


def test_rotation_sends_both_signatures() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.headers([new, old], "msg_9", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split()) == 2
    assert Verifier(new).verify(BODY, headers) and Verifier(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(signing.new_secret()).verify(BODY, headers)


def test_an_unpadded_secret_from_another_system_signs_the_same() -> None:
    key = b"k" * 24
    padded = "whsec_" + base64.b64encode(key).decode()
    unpadded = padded.rstrip("=")
    assert signing.secret_key(padded) == signing.secret_key(unpadded) == key
