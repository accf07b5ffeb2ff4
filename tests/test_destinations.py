"""Destinations against a real local HTTP server that checks each platform's request shapes."""

from __future__ import annotations

import csv
import hashlib
import json
import logging

import pyarrow.parquet as pq
import pytest

from segone.campaigns.destinations import DestinationError, Member, open_destination, sync_many
from tests.platform_server import Platform

FAST = {"backoff_seconds": 0.001, "max_backoff_seconds": 0.01, "random_state": 0}


def sha(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


def md5(v: str) -> str:
    return hashlib.md5(v.encode()).hexdigest()


def people(ids, *, name="F") -> list[Member]:
    return [
        Member(
            f"c{i:04d}",
            email=f"First.Last{i}@Example.com",
            phone=f"+44 7700 9{i:05d}",
            fields={"first_name": f"{name}{i}"},
        )
        for i in ids
    ]


@pytest.fixture
def platform():
    p = Platform()
    yield p
    p.close()


def mailchimp(platform, tmp_path, **extra):
    cfg = {
        "api_key": "k3y-us6",
        "base_url": platform.base_url,
        "merge_fields": {"FNAME": "first_name"},
        **FAST,
        **extra,
    }
    return open_destination("mailchimp", cfg, state_dir=tmp_path / "state")


def mailchimp_list(platform) -> dict[str, str]:
    return {h: m["merge_fields"]["FNAME"] for h, m in platform.lists["L1"].items()}


def expected_mailchimp(members) -> dict[str, str]:
    return {md5(m.email.lower()): m.fields["first_name"] for m in members}


def test_mailchimp_full_then_incremental_sync(platform, tmp_path):
    dest = mailchimp(platform, tmp_path)
    first = people(range(1200))
    r1 = dest.sync(first, list_id="L1")
    assert (r1.added, r1.removed, r1.failed, r1.requests) == (1200, 0, 0, 3)  # 500 + 500 + 200
    assert mailchimp_list(platform) == expected_mailchimp(first)
    assert platform.bad == []
    # a member as sent: lowercased address, status, merge fields from the named field
    body = json.loads(platform.raw[0]["body"])
    assert body["update_existing"] is True
    assert body["members"][0] == {
        "email_address": "first.last0@example.com",
        "status": "subscribed",  # the batch endpoint's field (not the PUT's status_if_new)
        "merge_fields": {"FNAME": "F0"},
    }

    # second sync: 150 left, 50 joined, 10 changed their first name
    second = people(range(150, 1200)) + people(range(2000, 2050))
    second = [
        Member(m.customer_id, m.email, m.phone, {"first_name": "New"})
        if m.customer_id in {f"c{i:04d}" for i in range(500, 510)}
        else m
        for m in second
    ]
    sent_before = len(platform.raw)
    r2 = dest.sync(second, list_id="L1")
    assert (r2.added, r2.updated, r2.removed, r2.unchanged) == (50, 10, 150, 1040 - 0)
    assert r2.failed == 0 and r2.ok
    new_requests = platform.raw[sent_before:]
    # only the delta went: one removal batch of 150 DELETEs, one upsert of 60 members
    removal = json.loads(new_requests[0]["body"])
    assert new_requests[0]["path"] == "/3.0/batches" and len(removal["operations"]) == 150
    assert removal["operations"][0]["path"] == f"/lists/L1/members/{md5('first.last0@example.com')}"
    upsert = json.loads(new_requests[1]["body"])
    assert len(upsert["members"]) == 60 and len(new_requests) == 2
    assert mailchimp_list(platform) == expected_mailchimp(second)

    # third sync with nothing changed: no request at all
    r3 = dest.sync(second, list_id="L1")
    assert (r3.added, r3.removed, r3.updated, r3.requests) == (0, 0, 0, 0)
    assert r3.unchanged == len(second)


def test_retries_500_and_429_with_the_same_request_id(platform, tmp_path):
    platform.plan = ["500", "429"]
    platform.retry_after = "0"
    dest = mailchimp(platform, tmp_path)
    members = people(range(30))
    report = dest.sync(members, list_id="L1")
    assert report.ok and report.added == 30 and report.retries == 2 and report.requests == 3
    keys = [r["headers"]["idempotency-key"] for r in platform.raw]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert mailchimp_list(platform) == expected_mailchimp(members)
    assert set(platform.applied.values()) == {1}


def test_retry_after_is_honoured(platform, tmp_path):
    platform.plan = ["429", "429"]
    platform.retry_after = "7"
    waits: list[float] = []
    dest = open_destination(
        "mailchimp",
        {"api_key": "k3y-us6", "base_url": platform.base_url, "backoff_seconds": 0.01},
        state_dir=tmp_path,
        sleep=waits.append,
    )
    report = dest.sync(people(range(3)), list_id="L1")
    assert report.ok and report.retries == 2
    assert len(waits) == 2 and all(w >= 7 for w in waits)


def test_backoff_grows_exponentially_with_jitter(platform, tmp_path):
    platform.plan = ["503"] * 4
    waits: list[float] = []
    dest = open_destination(
        "mailchimp",
        {
            "api_key": "k3y-us6",
            "base_url": platform.base_url,
            "backoff_seconds": 1,
            "random_state": 3,
        },
        state_dir=tmp_path,
        sleep=waits.append,
    )
    assert dest.sync(people(range(3)), list_id="L1").ok
    assert len(waits) == 4
    for k, w in enumerate(waits):  # 1, 2, 4, 8 s, each times 0.5..1.5
        assert 0.5 * 2**k <= w <= 1.5 * 2**k
    assert len({round(w / 2**k, 6) for k, w in enumerate(waits)}) > 1


def test_a_lost_response_is_retried_without_sending_anything_twice(platform, tmp_path):
    # the server applies the batch, then the connection drops before the answer
    platform.plan = ["ok", "drop"]
    dest = mailchimp(platform, tmp_path, batch_size=10)
    members = people(range(30))
    report = dest.sync(members, list_id="L1")
    assert report.ok and report.retries == 1 and report.added == 30
    assert (
        platform.raw[1]["headers"]["idempotency-key"]
        == platform.raw[2]["headers"]["idempotency-key"]
    )
    assert platform.processed == 3  # three batches, each applied once
    assert set(platform.applied.values()) == {1} and len(platform.applied) == 30


def test_a_failed_sync_is_resumed_by_the_next_without_duplicates(platform, tmp_path):
    # batch 2 is applied by the server but its answer is lost, and no retry is allowed
    platform.plan = ["ok", "drop"]
    dest = mailchimp(platform, tmp_path, batch_size=10, max_attempts=1)
    members = people(range(30))
    r1 = dest.sync(members, list_id="L1")
    assert (r1.added, r1.failed) == (20, 10) and not r1.ok
    assert r1.errors == ["add batch of 10: POST RemoteProtocolError"]
    r2 = dest.sync(members, list_id="L1")
    assert (r2.added, r2.failed, r2.unchanged, r2.requests) == (10, 0, 20, 1)
    # the resent batch carried the same id, so the server did not apply it again
    assert (
        platform.raw[1]["headers"]["idempotency-key"]
        == platform.raw[3]["headers"]["idempotency-key"]
    )
    assert set(platform.applied.values()) == {1} and len(platform.applied) == 30
    assert mailchimp_list(platform) == expected_mailchimp(members)


def test_giving_up_reports_the_failure_and_the_next_sync_sends_it(platform, tmp_path):
    platform.plan = ["500"] * 3
    dest = mailchimp(platform, tmp_path, max_attempts=3)
    members = people(range(5))
    r1 = dest.sync(members, list_id="L1")
    assert (r1.added, r1.failed, r1.retries) == (0, 5, 2)
    assert r1.errors == ["add batch of 5: POST HTTP 500"]
    assert platform.lists["L1"] == {}
    r2 = dest.sync(members, list_id="L1")
    assert r2.ok and r2.added == 5
    assert mailchimp_list(platform) == expected_mailchimp(members)


def test_a_4xx_is_not_retried(platform, tmp_path):
    dest = open_destination(
        "mailchimp", {"api_key": "wrong-us6", "base_url": platform.base_url}, state_dir=tmp_path
    )
    report = dest.sync(people(range(3)), list_id="L1")
    assert (
        report.failed == 3
        and report.requests == 1
        and report.errors == ["add batch of 3: POST HTTP 400"]
    )


def test_mailchimp_member_errors_count_as_failed_without_addresses(platform, tmp_path):
    platform.mailchimp_refuse = {"first.last1@example.com"}
    dest = mailchimp(platform, tmp_path)
    members = people(range(3))
    r1 = dest.sync(members, list_id="L1")
    assert (r1.added, r1.failed) == (2, 1)
    assert r1.errors == ["mailchimp refused 1: ERROR_CONTACT_EXISTS"]
    assert not any("@" in e for e in r1.errors)
    platform.mailchimp_refuse = set()
    r2 = dest.sync(members, list_id="L1")  # the refused one is tried again
    assert (r2.added, r2.unchanged) == (1, 2)


def test_members_without_an_email_are_skipped(platform, tmp_path):
    dest = mailchimp(platform, tmp_path)
    members = [
        *people(range(2)),
        Member("c9", phone="+447700900999"),
        Member("c8", email="not-an-address"),
    ]
    report = dest.sync(members, list_id="L1")
    assert (report.added, report.skipped) == (2, 2)


def test_meta_hashes_and_removes(platform, tmp_path):
    cfg = {
        "access_token": "EAAtoken",
        "base_url": platform.base_url,
        "default_country_code": "44",
        **FAST,
    }
    dest = open_destination("meta", cfg, state_dir=tmp_path)
    members = [
        Member("a", email="  Jane.Doe@Example.COM ", phone="+44 (0)7700-900123"),
        Member("b", phone="07700 900456"),  # national: takes the default country code
        Member("c", email="x@example.com"),
        Member("d"),  # nothing to match on
    ]
    report = dest.sync(members, list_id="6001")
    assert (report.added, report.skipped) == (3, 1) and platform.bad == []
    req = platform.raw[0]
    assert req["method"] == "POST" and req["path"] == "/v25.0/6001/users"
    rows = json.loads(req["body"])["payload"]["data"]
    assert rows == [
        [sha("jane.doe@example.com"), sha("447700900123")],
        ["", sha("447700900456")],
        [sha("x@example.com"), ""],
    ]
    report = dest.sync(members[1:3], list_id="6001")
    assert report.removed == 1
    delete = platform.raw[-1]
    assert delete["method"] == "DELETE"
    assert json.loads(delete["body"])["payload"]["data"] == [rows[0]]
    assert sorted(platform.lists["6001"].values()) == sorted(rows[1:])


def test_meta_invalid_entries_are_reported(platform, tmp_path):
    platform.meta_invalid = 2
    cfg = {"access_token": "EAAtoken", "base_url": platform.base_url}
    report = open_destination("meta", cfg, state_dir=tmp_path).sync(people(range(3)), list_id="7")
    assert report.errors == ["meta marked 2 entries invalid"]


def google(platform, tmp_path, **extra):
    cfg = {
        **extra,
        "access_token": "ya29.token",
        "developer_token": "devtok",
        "customer_id": "123-456-7890",
        "base_url": platform.base_url,
        **FAST,
    }
    return open_destination("google", cfg, state_dir=tmp_path)


def test_google_customer_match_normalises_and_runs_one_job(platform, tmp_path):
    dest = google(platform, tmp_path)
    members = [
        Member("a", email="John.Q.Doe@GoogleMail.com", phone="+1 (415) 555-0100"),
        Member("b", email="Jane.Doe@Example.com"),
    ]
    report = dest.sync(members, list_id="99")
    assert report.ok and report.added == 2 and platform.bad == []
    paths = [r["path"] for r in platform.raw]
    assert paths == [
        "/v26/customers/1234567890/offlineUserDataJobs:create",
        "/v26/customers/1234567890/offlineUserDataJobs/1:addOperations",
        "/v26/customers/1234567890/offlineUserDataJobs/1:run",
    ]
    ops = json.loads(platform.raw[1]["body"])["operations"]
    assert ops[0] == {
        "create": {
            "userIdentifiers": [
                # trimmed and lowercased only: the UserIdentifier reference asks nothing more
                {"hashedEmail": sha("john.q.doe@googlemail.com")},
                {"hashedPhoneNumber": sha("+14155550100")},  # E.164 with the +
            ]
        }
    }
    assert ops[1]["create"]["userIdentifiers"] == [{"hashedEmail": sha("jane.doe@example.com")}]
    report = dest.sync(members[:1], list_id="99")
    assert report.removed == 1 and len(platform.lists["99"]) == 1
    assert (
        "consent" not in json.loads(platform.raw[0]["body"])["job"]["customerMatchUserListMetadata"]
    )


def test_google_consent_is_sent_when_configured(platform, tmp_path):
    google(platform, tmp_path, consent="GRANTED").sync([Member("a", email="a@b.co")], list_id="9")
    meta = json.loads(platform.raw[0]["body"])["job"]["customerMatchUserListMetadata"]
    assert meta["consent"] == {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
    with pytest.raises(DestinationError, match="GRANTED or DENIED"):
        google(platform, tmp_path, consent="yes")


def test_google_failed_run_commits_nothing(platform, tmp_path):
    dest = google(platform, tmp_path)
    platform.plan = ["ok", "ok", "500", "500", "500", "500", "500"]
    members = [Member("a", email="a@example.com")]
    r1 = dest.sync(members, list_id="99")
    assert (r1.added, r1.failed) == (0, 1) and r1.errors == ["finish: POST HTTP 500"]
    assert platform.lists["99"] == {}
    r2 = dest.sync(members, list_id="99")  # nothing was recorded: the whole list goes again
    assert r2.ok and r2.added == 1 and len(platform.lists["99"]) == 1
    assert len(platform.jobs) == 2 and all(
        j["ran"] == (n == 2) for n, j in enumerate(platform.jobs.values(), 1)
    )


def test_klaviyo_imports_profiles_and_removes_by_external_id(platform, tmp_path):
    cfg = {"api_key": "pk_test", "base_url": platform.base_url, **FAST}
    dest = open_destination("klaviyo", cfg, state_dir=tmp_path)
    members = people(range(3))
    assert dest.sync(members, list_id="Y6nRLr").added == 3
    assert platform.bad == []
    job = json.loads(platform.raw[0]["body"])["data"]
    assert job["relationships"]["lists"]["data"] == [{"type": "list", "id": "Y6nRLr"}]
    assert job["attributes"]["profiles"]["data"][0]["attributes"] == {
        "external_id": "c0000",
        "email": "first.last0@example.com",
        "phone_number": "+447700900000",
        "properties": {"first_name": "F0"},
    }
    report = dest.sync(members[1:], list_id="Y6nRLr")
    assert report.removed == 1 and platform.bad == []
    assert [r["method"] for r in platform.raw[1:]] == ["GET", "DELETE"]
    assert "c0000" not in {a["external_id"] for a in platform.lists["Y6nRLr"].values()}
    assert len(platform.lists["Y6nRLr"]) == 2


def test_webhook_batches_are_signed_and_removals_sent(platform, tmp_path):
    cfg = {"url": platform.base_url + "/hooks/audience", "secret": platform.secret, **FAST}
    dest = open_destination("webhook", cfg, state_dir=tmp_path)
    members = [
        Member("a", email="a@example.com", fields={"tier": "gold"}),
        Member("b", email="b@example.com"),
    ]
    assert dest.sync(members, list_id="vip").ok
    assert platform.bad == []  # the server verified every signature
    h = platform.raw[0]["headers"]
    assert h["webhook-id"].startswith("msg_") and h["webhook-signature"].startswith("v1,")
    assert platform.lists["vip"]["a"] == {
        "customer_id": "a",
        "email": "a@example.com",
        "fields": {"tier": "gold"},
    }
    r = dest.sync(members[1:], list_id="vip")
    assert r.removed == 1 and set(platform.lists["vip"]) == {"b"}
    assert json.loads(platform.raw[-1]["body"])["type"] == "audience.members_removed"


def test_webhook_retry_keeps_its_id_and_resigns(platform, tmp_path):
    platform.plan = ["500"]
    cfg = {"url": platform.base_url + "/hooks/a", "secret": platform.secret, **FAST}
    dest = open_destination("webhook", cfg, state_dir=tmp_path)
    assert dest.sync([Member("a")], list_id="l").ok
    ids = {r["headers"]["webhook-id"] for r in platform.raw}
    assert len(platform.raw) == 2 and len(ids) == 1


def test_webhook_with_the_wrong_secret_is_refused(platform, tmp_path):
    cfg = {"url": platform.base_url + "/hooks/a", "secret": "whsec_" + "A" * 44, **FAST}
    report = open_destination("webhook", cfg, state_dir=tmp_path).sync([Member("a")], list_id="l")
    assert (
        report.failed == 1
        and report.requests == 1
        and platform.bad == ["webhook: bad Standard Webhooks signature"]
    )


def sms(platform, tmp_path, **extra):
    cfg = {
        "base_url": platform.base_url,
        "api_key": "smskey",
        "sender": "SEGONE",
        "default_country_code": "44",
        **FAST,
        **extra,
    }
    return open_destination("sms", cfg, state_dir=tmp_path)


def test_sms_sends_each_person_once_per_list(platform, tmp_path):
    dest = sms(platform, tmp_path)
    members = [
        Member("a", phone="07700 900123", fields={"body": "Hi A"}),
        Member("b", phone="+33 6 12 34 56 78", fields={"body": "Salut B"}),
        Member("c", email="c@example.com", fields={"body": "no phone"}),
    ]
    platform.plan = ["ok", "drop"]  # b's answer is lost: the retry must not send a second SMS
    r1 = dest.sync(members, list_id="camp1")
    assert (r1.added, r1.skipped, r1.retries) == (2, 1, 1) and platform.bad == []
    assert platform.messages == [
        {"to": "+447700900123", "from": "SEGONE", "body": "Hi A"},
        {"to": "+33612345678", "from": "SEGONE", "body": "Salut B"},
    ]
    r2 = dest.sync(members, list_id="camp1")
    assert (r2.added, r2.unchanged, r2.requests) == (0, 2, 0)
    assert len(platform.messages) == 2
    r3 = dest.sync(members, list_id="camp2")  # another campaign: sent again
    assert r3.added == 2 and len(platform.messages) == 4


def test_file_csv_has_only_the_asked_columns(tmp_path):
    out = tmp_path / "out" / "{list_id}.csv"
    dest = open_destination(
        "file",
        {"path": str(out), "columns": ["customer_id", "email", "first_name"]},
        state_dir=tmp_path,
    )
    r1 = dest.sync(people(range(3)), list_id="vip")
    assert r1.added == 3
    with (tmp_path / "out" / "vip.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["customer_id", "email", "first_name"]
    assert rows[1] == ["c0000", "First.Last0@Example.com", "F0"]
    assert all(len(r) == 3 for r in rows) and len(rows) == 4
    r2 = dest.sync(people(range(1, 4)), list_id="vip")
    assert (r2.added, r2.removed, r2.unchanged) == (1, 1, 2)


def test_file_parquet_hashed(tmp_path):
    out = tmp_path / "a.parquet"
    dest = open_destination(
        "file",
        {"path": str(out), "columns": ["customer_id", "email", "phone"], "hash": True},
        state_dir=tmp_path,
    )
    dest.sync([Member("a", email=" A@X.com", phone="+44 7700 900123"), Member("b")], list_id="l")
    t = pq.read_table(out).to_pylist()
    assert t == [
        {"customer_id": "a", "email": sha("a@x.com"), "phone": sha("447700900123")},
        {"customer_id": "b", "email": None, "phone": None},
    ]


def test_file_refuses_a_column_nobody_has(tmp_path):
    dest = open_destination(
        "file",
        {"path": str(tmp_path / "a.csv"), "columns": ["customer_id", "frist_name"]},
        state_dir=tmp_path,
    )
    with pytest.raises(DestinationError, match="frist_name"):
        dest.sync(people(range(2)), list_id="l")


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("mailchimps", {}, "did you mean 'mailchimp'"),
        ("mailchimp", {"base_url": "http://x"}, "mailchimp: api_key is required"),
        ("mailchimp", {"api_key": "k", "base_url": "ftp://x"}, "must start with http"),
        ("mailchimp", {"api_key": "k-us1", "batch_size": 501}, "batch_size must be 1..500"),
        ("meta", {"access_token": "t", "acess_token": "t"}, "did you mean 'access_token'"),
        ("webhook", {"url": "http://x/h", "secret": "whsec_!!"}, "base64"),
        ("file", {"path": "out.txt"}, "cannot tell the format"),
        (
            "sms",
            {"base_url": "http://x", "api_key": "env:SEGONE_TEST_UNSET_VAR", "sender": "S"},
            "not set",
        ),
    ],
)
def test_bad_configuration_is_a_clear_error(kind, config, message, tmp_path):
    with pytest.raises(DestinationError, match=message):
        open_destination(kind, config, state_dir=tmp_path)


def test_env_secret_and_default_mailchimp_base_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGONE_TEST_MC_KEY", "abc-us21")
    dest = open_destination("mailchimp", {"api_key": "env:SEGONE_TEST_MC_KEY"}, state_dir=tmp_path)
    assert dest.settings.base_url == "https://us21.api.mailchimp.com"  # type: ignore[attr-defined]


def test_no_contact_data_in_logs(platform, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    platform.plan = ["500", "drop"]
    platform.mailchimp_refuse = {"first.last2@example.com"}
    members = people(range(5))
    mailchimp(platform, tmp_path).sync(members, list_id="L1")
    cfg = {"access_token": "EAAtoken", "base_url": platform.base_url}
    open_destination("meta", cfg, state_dir=tmp_path).sync(members, list_id="6")
    sms(platform, tmp_path, body="hello").sync(members, list_id="s")
    text = caplog.text.lower()
    assert "synced list" in text
    for m in members:
        assert m.email.lower() not in text
        assert m.phone.replace(" ", "") not in text.replace(" ", "")
        assert sha(m.email.lower()) not in text
        assert md5(m.email.lower()) not in text
    assert "k3y-us6" not in text and "eaatoken" not in text and "smskey" not in text


def test_people_sharing_an_address_are_one_entry_and_removing_one_keeps_it(platform, tmp_path):
    dest = mailchimp(platform, tmp_path)
    shared = [Member("a", email="Home@Example.com"), Member("b", email="home@example.com")]
    r1 = dest.sync([*shared, *people(range(2))], list_id="L1")
    assert (r1.added, r1.skipped) == (3, 1) and r1.ok
    assert r1.warnings == ["1 member(s) share a contact point with another"]
    assert platform.applied["home@example.com"] == 1
    # "a" leaves; "b" still uses the address, so it must stay at Mailchimp
    r2 = dest.sync([shared[1], *people(range(2))], list_id="L1")
    assert r2.ok and md5("home@example.com") in platform.lists["L1"]
    assert not any(r["path"] == "/3.0/batches" for r in platform.raw)
    assert len(platform.lists["L1"]) == 3


def test_a_changed_address_replaces_the_old_one(platform, tmp_path):
    dest = mailchimp(platform, tmp_path)
    dest.sync([Member("a", email="old@example.com")], list_id="L1")
    r = dest.sync([Member("a", email="new@example.com")], list_id="L1")
    assert (r.added, r.updated, r.removed) == (0, 1, 0)
    assert set(platform.lists["L1"]) == {md5("new@example.com")}


def test_field_values_that_are_not_json_go_as_text(platform, tmp_path):
    from datetime import date
    from decimal import Decimal

    cfg = {"api_key": "pk_test", "base_url": platform.base_url, **FAST}
    dest = open_destination("klaviyo", cfg, state_dir=tmp_path)
    m = Member(
        "a", email="a@example.com", fields={"since": date(2024, 5, 1), "clv": Decimal("12.50")}
    )
    assert dest.sync([m], list_id="L").ok
    attrs = json.loads(platform.raw[0]["body"])["data"]["attributes"]["profiles"]["data"][0]
    assert attrs["attributes"]["properties"] == {"since": "2024-05-01", "clv": "12.50"}
    assert platform.raw[0]["headers"]["content-type"] == "application/vnd.api+json"


def test_sync_many_reports_per_destination_and_survives_a_broken_one(platform, tmp_path):
    members = iter(people(range(4)))  # consumed once, shared by all
    broken = open_destination(
        "file",
        {"path": str(tmp_path / "a.csv"), "columns": ["customer_id", "nope"]},
        state_dir=tmp_path,
    )
    reports = sync_many(
        [mailchimp(platform, tmp_path), broken, sms(platform, tmp_path, body="hi")],
        members,
        list_id="L1",
    )
    assert [r.destination for r in reports] == ["mailchimp", "file", "sms"]
    assert reports[0].added == 4 and reports[2].added == 4
    assert reports[1].failed == 4 and "nope" in reports[1].errors[0]
