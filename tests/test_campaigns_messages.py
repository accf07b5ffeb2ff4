"""Campaign files and message templates: parsing, clear errors, sandboxed rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from segone.campaigns.campaign import (
    Campaign,
    CampaignError,
    campaign_settings,
    get_campaign,
    load_campaigns,
)
from segone.campaigns.messages import MessageError, MessageTemplate, render, unsubscribe_token

YAML = """
name: winback
description: Bring back drifting customers
audience:
  segment: at_risk
  rule: {churn_probability: {gt: 0.6}}
  top: {clv: 0.2}
channel: email
holdout: 0.1
arms:
  - {name: mass, kind: mass, offer: {title: "10% off", category: "Home"}}
  - name: by_segment
    kind: segment
    offers: {vip: {title: Early access}, default: {title: "10% off"}}
  - {name: personal, kind: one_to_one, weight: 2}
  - {name: on_risk, kind: triggered, trigger: {transition: "lifecycle:at_risk"}}
message:
  subject: "{{ first_name or 'Hello' }}, {{ offer.title }}"
  text: "{% for p in products %}- {{ p.name }}\\n{% endfor %}{{ reason }}"
  html: "<p>{{ first_name }}</p>"
  unsubscribe_url: "https://shop.example/u?c={customer_id}&t={token}"
attribution: {window_days: 21}
conversion: {kind: event, name: Signed Up}
frequency_cap: {max: 1, days: 3}
"""


def test_campaign_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "winback.yaml").write_text(YAML)
    c = get_campaign(tmp_path, "winback")
    assert [a.kind for a in c.arms] == ["mass", "segment", "one_to_one", "triggered"]
    assert c.arm_weights() == {"mass": 1.0, "by_segment": 1.0, "personal": 2.0, "on_risk": 1.0}
    assert c.audience.top == {"clv": 0.2} and c.audience.segment == "at_risk"
    assert c.window_days == 21 and c.conversion.name == "Signed Up"
    assert (c.caps.max_contacts, c.caps.days) == (1, 3)
    assert c.hash_salt == "campaign:winback"
    with pytest.raises(CampaignError, match="no campaign 'nope'; known: winback"):
        get_campaign(tmp_path, "nope")
    assert campaign_settings(tmp_path).holdouts.global_control == 0.05
    (tmp_path / "campaigns" / "settings.toml").write_text("global_control = 0.1\n")
    assert campaign_settings(tmp_path).holdouts.global_control == 0.1


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"channel": "pigeon"}, "unknown channel"),
        ({"holdout": 1.5}, "holdout must be in"),
        ({"arms": [{"name": "a", "kind": "psychic"}]}, "arm kind must be one of"),
        ({"arms": [{"name": "a", "kind": "triggered"}]}, "needs trigger"),
        ({"arms": [{"name": "a", "kind": "segment"}]}, "needs offers"),
        ({"arms": [{"name": "a", "kind": "mass"}, {"name": "a", "kind": "mass"}]}, "must differ"),
        ({"colour": "red"}, "unknown key"),
        ({"message": {"subject": "{{ x", "text": "t"}}, "message subject, line 1"),
        ({"audience": {"top": {"clv": 3}}}, "top share of clv"),
    ],
)
def test_bad_campaigns_are_refused_with_the_reason(patch: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "x", "audience": {"segment": "vip"}}
    with pytest.raises(CampaignError, match=message):
        Campaign.from_obj({**base, **patch}, "x.yaml")


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / "campaigns" / f).write_text("name: same\naudience: vip\n")
    with pytest.raises(CampaignError, match="defined twice"):
        load_campaigns(tmp_path)


def test_render_personalises_with_names_reason_and_unsubscribe() -> None:
    tpl = MessageTemplate(
        "{{ first_name or 'Hello' }}, {{ offer.title }}",
        "{% for p in products %}- {{ p.name }} ({{ '%.2f' % p.price }})\n{% endfor %}{{ reason }}",
        "<p>{{ first_name }}</p>{{ unsubscribe_url }}",
        "https://shop.example/u?c={customer_id}&t={token}",
    )
    r = render(
        tpl,
        customer_id="cus 1",
        fields={"first_name": "<Ann>"},
        offer={"title": "Early access"},
        products=[{"name": "Camping Stove", "price": 49.5}, {"name": "Tent", "price": 120.0}],
        reason="because you bought a sleeping bag",
        secret="k",
    )
    assert r.subject == "<Ann>, Early access"
    assert "- Camping Stove (49.50)\n- Tent (120.00)\n" in r.text
    assert r.text.endswith("because you bought a sleeping bag")
    assert "&lt;Ann&gt;" in (r.html or "")  # html is escaped, text is not
    assert (
        r.unsubscribe_url == f"https://shop.example/u?c=cus%201&t={unsubscribe_token('k', 'cus 1')}"
    )
    # a missing field renders empty, it does not stop a campaign
    assert render(tpl, customer_id="c", fields={}).subject == "Hello,"


def test_templates_are_sandboxed() -> None:
    evil = MessageTemplate("x", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(MessageError, match="cannot be rendered"):
        render(evil, customer_id="c", fields={})
    with pytest.raises(MessageError, match="a subject and a text"):
        MessageTemplate.from_obj({"subject": "only"})
