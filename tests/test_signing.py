"""Standard Webhooks signing: the spec's published test vector, rotation, replays, bad secrets."""

from __future__ import annotations

import base64

import pytest

from segone import signing

# The test vector published with the Standard Webhooks specification (and its reference
# libraries): secret, message id, timestamp, body and the signature they must produce.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_reproduces_the_spec_test_vector():
    assert signing.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    assert signing.sign(VECTOR_SECRET, VECTOR_ID, str(VECTOR_TS), VECTOR_BODY.encode()) == (
        VECTOR_SIGNATURE
    )


def test_verify_accepts_the_spec_test_vector():
    assert signing.verify(
        VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY, VECTOR_SIGNATURE, now=VECTOR_TS + 10
    )
    headers = {
        "Webhook-Id": VECTOR_ID,
        "Webhook-Timestamp": str(VECTOR_TS),
        "Webhook-Signature": VECTOR_SIGNATURE,
    }
    assert signing.verify_headers(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)


@pytest.mark.parametrize(
    ("msg_id", "ts", "body", "sig"),
    [
        ("msg_other", VECTOR_TS, VECTOR_BODY, VECTOR_SIGNATURE),
        (VECTOR_ID, VECTOR_TS + 1, VECTOR_BODY, VECTOR_SIGNATURE),
        (VECTOR_ID, VECTOR_TS, '{"test": 2432232315}', VECTOR_SIGNATURE),
        (VECTOR_ID, VECTOR_TS, VECTOR_BODY, "v1,AAAA" + VECTOR_SIGNATURE[7:]),
        (VECTOR_ID, VECTOR_TS, VECTOR_BODY, VECTOR_SIGNATURE[3:]),  # no version prefix
        (VECTOR_ID, VECTOR_TS, VECTOR_BODY, "v2," + VECTOR_SIGNATURE[3:]),
        (VECTOR_ID, VECTOR_TS, VECTOR_BODY, ""),
        (VECTOR_ID, "soon", VECTOR_BODY, VECTOR_SIGNATURE),
    ],
)
def test_verify_rejects_any_change(msg_id, ts, body, sig):
    assert not signing.verify(VECTOR_SECRET, msg_id, ts, body, sig, now=VECTOR_TS)


def test_replays_outside_the_tolerance_are_refused():
    kw = {"now": VECTOR_TS + 301}
    assert not signing.verify(
        VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY, VECTOR_SIGNATURE, **kw
    )
    assert not signing.verify(
        VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY, VECTOR_SIGNATURE, now=VECTOR_TS - 301
    )
    assert signing.verify(
        VECTOR_SECRET,
        VECTOR_ID,
        VECTOR_TS,
        VECTOR_BODY,
        VECTOR_SIGNATURE,
        tolerance_s=400,
        now=VECTOR_TS + 301,
    )


def test_several_signatures_during_a_key_rotation():
    other = signing.new_secret()
    both = f"{signing.sign(other, VECTOR_ID, VECTOR_TS, VECTOR_BODY)} {VECTOR_SIGNATURE}"
    assert signing.verify(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY, both, now=VECTOR_TS)
    assert signing.verify(other, VECTOR_ID, VECTOR_TS, VECTOR_BODY, both, now=VECTOR_TS)
    assert not signing.verify(
        signing.new_secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY, both, now=VECTOR_TS
    )


def test_secrets():
    fresh = signing.new_secret()
    assert fresh.startswith("whsec_") and len(base64.b64decode(fresh[6:])) == 32
    assert fresh != signing.new_secret()
    # a plain secret (segone.toml's webhook_secret) is its UTF-8 bytes
    assert signing.secret_key("s3cret") == b"s3cret"
    assert signing.secret_key(VECTOR_SECRET) == base64.b64decode(VECTOR_SECRET[6:])
    with pytest.raises(ValueError, match="base64"):
        signing.secret_key("whsec_not base64!")
    with pytest.raises(ValueError, match="empty"):
        signing.secret_key("")
    # a bad secret on the receiving side is a failed check, not a crash
    assert not signing.verify(
        "whsec_%%", VECTOR_ID, VECTOR_TS, VECTOR_BODY, VECTOR_SIGNATURE, now=VECTOR_TS
    )


def test_headers_sign_now():
    h = signing.headers(VECTOR_SECRET, "msg_1", b"{}")
    assert set(h) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert signing.verify_headers(VECTOR_SECRET, h, b"{}")
    assert signing.headers(VECTOR_SECRET, VECTOR_ID, VECTOR_BODY, timestamp=VECTOR_TS) == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIGNATURE,
    }
