"""E-mail over a real local SMTP server (aiosmtpd): MIME parts, unsubscribe headers, pacing."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
import time
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from segone.campaigns.destinations import DestinationError, OutgoingEmail, SyncState, open_sender
from segone.campaigns.destinations.email import SmtpSender, SmtpSettings, build_message


class Inbox:
    """Keeps every message accepted; refuses RCPT for addresses in ``refuse``."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


def outgoing(n: int, *, html: bool = True) -> list[OutgoingEmail]:
    return [
        OutgoingEmail(
            customer_id=f"c{i}",
            to=f"person{i}@example.com",
            subject=f"Hello {i}",
            text=f"Plain text for {i}",
            html=f"<p>HTML for <b>{i}</b></p>" if html else None,
            unsubscribe_url=f"https://shop.example/u/{i}",
        )
        for i in range(n)
    ]


def settings(port: int, **kw) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, sender="news@shop.example", **kw)


def test_multipart_plain_and_html_with_one_click_unsubscribe(smtp):
    inbox, port = smtp
    sender = SmtpSender(
        settings(port, rate_per_second=1000, unsubscribe_mailto="unsub@shop.example")
    )
    report = sender.send(outgoing(3))
    assert (report.sent, report.failed) == (3, 0)
    assert len(inbox.messages) == 3
    msg = inbox.messages[1]
    assert msg["To"] == "person1@example.com" and msg["From"] == "news@shop.example"
    assert msg["Subject"] == "Hello 1"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]  # plain first
    assert parts[0].get_content().strip() == "Plain text for 1"
    assert parts[1].get_content().strip() == "<p>HTML for <b>1</b></p>"
    # (a long header is folded onto a continuation line: compare the unfolded value)
    assert str(msg["List-Unsubscribe"]).strip() == (
        "<https://shop.example/u/1>, <mailto:unsub@shop.example?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"].endswith("@shop.example>") and msg["Date"]
    assert len({m["Message-ID"] for m in inbox.messages}) == 3
    assert inbox.envelopes[1] == ("news@shop.example", ["person1@example.com"])
    assert report.connections == 1


def test_text_only_and_given_message_id():
    e = OutgoingEmail(
        "c1", "a@example.com", "S", "text", message_id="<m1@x>", unsubscribe_url="http://x/u"
    )
    msg = build_message(e, SmtpSettings())
    assert msg.get_content_type() == "text/plain" and msg["Message-ID"] == "<m1@x>"
    assert msg["List-Unsubscribe"] == "<http://x/u>"
    assert msg["List-Unsubscribe-Post"] is None  # one-click needs https (RFC 8058)


def test_non_ascii_subject_and_body_arrive_intact(smtp):
    inbox, port = smtp
    e = OutgoingEmail("c1", "a@example.com", "Café – 20 % für Sie", "Grüße, José", "<p>Grüße</p>")
    assert SmtpSender(settings(port, rate_per_second=1000)).send([e]).sent == 1
    (msg,) = inbox.messages
    assert msg["Subject"] == "Café – 20 % für Sie"
    plain, html = msg.iter_parts()
    assert (
        plain.get_content().strip() == "Grüße, José"
        and html.get_content().strip() == "<p>Grüße</p>"
    )


def test_bad_messages_and_settings_are_clear_errors():
    with pytest.raises(DestinationError, match="no valid address"):
        build_message(OutgoingEmail("c1", "nobody", "S", "t"), SmtpSettings())
    with pytest.raises(DestinationError, match="no valid address"):
        build_message(OutgoingEmail("c1", "a@b.c\r\nBcc: x@y.z", "S", "t"), SmtpSettings())
    with pytest.raises(DestinationError, match="line break"):
        build_message(OutgoingEmail("c1", "a@b.c", "S\r\nBcc: x@y.z", "t"), SmtpSettings())
    with pytest.raises(DestinationError, match="rate_per_second"):
        SmtpSettings(rate_per_second=0)
    with pytest.raises(DestinationError, match="security"):
        SmtpSettings(security="tls")


def test_the_rate_is_respected(smtp):
    inbox, port = smtp
    rate = 40.0
    sender = SmtpSender(settings(port, rate_per_second=rate))
    t0 = time.monotonic()
    report = sender.send(outgoing(21, html=False))
    elapsed = time.monotonic() - t0
    assert report.sent == 21 and len(inbox.messages) == 21
    assert elapsed >= 20 / rate  # message n leaves no earlier than n / rate
    assert report.rate <= rate * 1.05


def test_a_refused_recipient_fails_only_its_message(smtp, caplog):
    caplog.set_level(logging.DEBUG)
    inbox, port = smtp
    inbox.refuse = {"person1@example.com"}
    report = SmtpSender(settings(port, rate_per_second=1000)).send(outgoing(3))
    assert (report.sent, report.failed) == (2, 1)
    assert report.errors == ["recipient refused [550]: 1"]
    assert len(inbox.messages) == 2
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("segone"))
    assert "smtp: 2 sent, 1 failed" in ours
    assert "person" not in ours and "example.com" not in ours


def test_connections_are_reused_then_reopened(smtp):
    inbox, port = smtp
    report = SmtpSender(settings(port, rate_per_second=1000, max_per_connection=4)).send(
        outgoing(10)
    )
    assert report.sent == 10 and report.connections == 3 and len(inbox.messages) == 10


def test_dry_run_renders_and_sends_nothing(smtp):
    inbox, port = smtp
    report = SmtpSender(settings(port)).send(outgoing(5), dry_run=True)
    assert report.dry_run and report.sent == 5 and report.connections == 0
    assert inbox.messages == []


def test_a_rerun_skips_what_was_sent(smtp, tmp_path):
    inbox, port = smtp
    state = SyncState(tmp_path)
    sender = SmtpSender(settings(port, rate_per_second=1000), state=state)
    first = sender.send(outgoing(3), list_id="camp")
    second = sender.send(outgoing(5), list_id="camp")
    assert (first.sent, second.sent, second.skipped) == (3, 2, 3)
    assert sorted(m["To"] for m in inbox.messages) == sorted(
        f"person{i}@example.com" for i in range(5)
    )


def test_unreachable_server_fails_every_message():
    report = SmtpSender(settings(free_port(), rate_per_second=1000, max_attempts=2)).send(
        outgoing(2)
    )
    assert (report.sent, report.failed) == (0, 2)
    assert report.errors == ["ConnectionRefusedError: 2"]


def test_open_sender_from_a_config_mapping(smtp, tmp_path, monkeypatch):
    inbox, port = smtp
    monkeypatch.setenv("SEGONE_TEST_SMTP_PASSWORD", "pw")
    with pytest.raises(DestinationError, match="did you mean 'rate_per_second'"):
        open_sender({"sender": "a@b.c", "rate_per_secnd": 5})
    with pytest.raises(DestinationError, match="sender is required"):
        open_sender({"host": "127.0.0.1"})
    sender = open_sender(
        {"port": port, "sender": "news@shop.example", "rate_per_second": 500},
        state_dir=tmp_path,
    )
    assert sender.send(outgoing(2), list_id="l").sent == 2
    assert sender.send(outgoing(2), list_id="l").skipped == 2
    assert len(inbox.messages) == 2
