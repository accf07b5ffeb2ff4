"""One-to-one arms reach each person on their preferred consented channel.

A campaign on e-mail and SMS over a real DuckDB warehouse of random people (consents, opt-outs,
suppressions, erasures and caps as in ``test_campaigns_audience``), run through a real local SMTP
server and a real local SMS provider: each destination receives exactly the people given its
channel, the one-to-one arm follows each person's preference (falling back to the other
reachable channel), the other arms the campaign's order, and the funnel counts per channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from aiosmtpd.controller import Controller

from segone.campaigns.campaign import Campaign
from segone.campaigns.run import default_sender, plan, preferred_channels, run
from segone.store.duckdb import DuckDBWarehouse
from tests.platform_server import Platform
from tests.test_campaigns_audience import NOW, random_store
from tests.test_destinations_email import free_port

CAMPAIGN = {
    "name": "multi",
    "audience": {"rule": {"churn_probability": {"gt": 0.1}}},
    "channels": ["email", "sms"],
    "holdout": 0.1,
    "arms": [
        {"name": "everyone", "kind": "mass", "offer": {"title": "10% off"}},
        {"name": "personal", "kind": "one_to_one"},
    ],
    "message": {"subject": "Hi {{ first_name }}", "text": "{{ offer.title or 'For you' }}"},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[DuckDBWarehouse, dict]:
    wh = DuckDBWarehouse(tmp_path_factory.mktemp("ch") / "w.duckdb")
    wh.ensure_tables()
    truth = random_store(wh, 5, n=400)
    # per-person channel evidence: an engagement rate per channel, and for some people an
    # explicit preference (as a source's extra field would give)
    rng = np.random.default_rng(5)
    p = wh.execute(wh.table("profiles"))
    n = len(p)
    p["p_email_click"] = rng.random(n) * 0.2
    p["sms_click_rate"] = np.where(rng.random(n) < 0.7, rng.random(n) * 0.2, np.nan)
    p["preferred_channel"] = np.where(rng.random(n) < 0.2, "sms", None)
    wh.replace("profiles", __import__("ibis").memtable(pa.Table.from_pandas(p)))
    return wh, truth


def test_preference_order() -> None:
    chans = ["email", "sms"]
    assert preferred_channels({"p_email_click": 0.1, "sms_click_rate": 0.3}, chans) == [
        "sms",
        "email",
    ]
    assert preferred_channels({"p_email_click": 0.1}, chans) == ["email", "sms"]
    assert preferred_channels({"p_email_click": 0.5, "preferred_channel": "sms"}, chans)[0] == "sms"
    assert preferred_channels({}, ["sms", "email"]) == ["sms", "email"]


def test_each_person_on_one_reachable_channel_and_destinations_get_only_theirs(
    store: tuple[DuckDBWarehouse, dict], tmp_path: Path
) -> None:
    wh, truth = store
    c = Campaign.from_obj(CAMPAIGN)
    pl = plan(
        wh,
        c,
        at=NOW,
        suppressions=truth["suppressions"],
        online_erased=truth["online_hashes"],
    )
    reach = {
        ch: set(wh.execute(a.reachable.customer_id).astype(str)) for ch, a in pl.audiences.items()
    }
    assert set(pl.audiences) == {"email", "sms"}
    # the run's population is everyone reachable on some channel, nobody else
    assert {p.customer_id for p in pl.people} <= reach["email"] | reach["sms"]
    assert pl.reachable == len(reach["email"] | reach["sms"])
    # nobody erased, opted out of e-mail, blocked everywhere or capped gets e-mail
    for p in pl.people:
        assert p.customer_id in reach[p.channel]
        if p.channel == "email":
            assert p.customer_id not in truth["erased"] | truth["opted"] | truth["capped"]
        assert p.customer_id not in truth["erased"]
    prof = wh.execute(wh.table("profiles")).set_index("customer_id")
    both = 0
    for p in pl.people:
        on = [ch for ch in ("email", "sms") if p.customer_id in reach[ch]]
        if p.arm == "personal":
            row = prof.loc[p.customer_id].to_dict()
            want = next(ch for ch in preferred_channels(row, ["email", "sms"]) if ch in on)
        else:
            want = on[0]  # the campaign's order
        assert p.channel == want, (p.customer_id, p.arm, on)
        both += len(on) == 2
    personal = [p for p in pl.people if p.arm == "personal" and p.group == "treatment"]
    assert {p.channel for p in personal} == {"email", "sms"} and both > 20
    # the funnel counts per channel add up to the groups
    per = pl.per_channel()
    assert sum(per[ch]["treatment"] for ch in per) == pl.counts()["treatment"]
    assert all(per[ch]["reachable"] == len(reach[ch]) for ch in per)
    assert "reachable on some channel" in pl.funnel()

    got: list[str] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.extend(envelope.rcpt_tos)
            return "250 OK"

    platform = Platform()
    ctl = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        send = {
            "email": {
                "smtp": {
                    "host": "127.0.0.1",
                    "port": ctl.port,
                    "sender": "shop@example.com",
                    "rate_per_second": 500,
                }
            },
            "sms": {
                "destination": {
                    "kind": "sms",
                    "config": {
                        "base_url": platform.base_url,
                        "api_key": "smskey",
                        "sender": "SHOP",
                        "backoff_seconds": 0.001,
                    },
                }
            },
        }
        c2 = Campaign.from_obj({**CAMPAIGN, "send": send})
        pl2 = plan(
            wh, c2, at=NOW, suppressions=truth["suppressions"], online_erased=truth["online_hashes"]
        )
        res = run(wh, pl2, sender=default_sender(tmp_path))
    finally:
        ctl.stop()
        platform.close()
    treated = pl2.treated()
    by_email = sorted(truth["email_of"][p.customer_id] for p in treated if p.channel == "email")
    assert sorted(got) == by_email
    sms_people = sorted(p.contact for p in treated if p.channel == "sms")
    assert sorted(m["to"] for m in platform.messages) == sms_people and platform.bad == []
    assert all(m["body"] for m in platform.messages)  # the template's text, rendered
    assert res.report is not None and res.report.failed == 0
    assert set(pl2.reports) == {"email", "sms"}
    x = wh.execute(wh.table("campaign_exposures"))
    x = x[x.run_id == res.run_id]
    assert dict(zip(x.customer_id, x.channel, strict=True)) == {
        p.customer_id: p.channel for p in treated
    }


def test_channels_are_checked() -> None:
    from segone.exceptions import CampaignError

    with pytest.raises(CampaignError, match="not in channels"):
        Campaign.from_obj({**CAMPAIGN, "channel": "push"})
    with pytest.raises(CampaignError, match="unknown channel"):
        Campaign.from_obj({**CAMPAIGN, "channels": ["email", "fax"]})
    assert Campaign.from_obj({**CAMPAIGN}).channel == "email"
    assert Campaign.from_obj({**CAMPAIGN, "channels": ["sms", "email"]}).channel == "sms"
