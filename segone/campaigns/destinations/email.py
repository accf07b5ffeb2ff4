"""E-mail over SMTP (stdlib ``smtplib``): multipart plain + HTML, one-click unsubscribe, paced.

Each ``OutgoingEmail`` (rendered by ``segone.campaigns``) becomes a ``multipart/alternative``
message — the plain text first, the HTML last, as RFC 2046 orders them (clients show the last
part they can render) — with ``Message-ID``, ``Date``, and, when the message has an unsubscribe
URL, ``List-Unsubscribe: <url>`` (plus ``<mailto:…>`` when configured) and, for an https URL,
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058, which Gmail and Yahoo require
of bulk senders).

Sending is paced at ``rate_per_second`` (message *n* leaves no earlier than ``n / rate`` after
the first), over one connection reused for ``max_per_connection`` messages and reopened when
the server drops it. A refused recipient fails that message only. With a ``SyncState`` and a
``list_id``, a message is recorded once accepted and a re-run skips it, so a campaign resumed
after a crash never mails anyone twice. Logs and reports carry counts and SMTP codes only.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

from segone.campaigns.destinations.base import DestinationError, OutgoingEmail
from segone.campaigns.destinations.sync_state import SyncState

log = logging.getLogger("segone.destinations")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how fast to send; ``security`` is "none", "starttls" or "ssl"."""

    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "segone@localhost"
    security: str = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    rate_per_second: float = 10.0
    max_per_connection: int = 1000
    max_attempts: int = 3
    unsubscribe_mailto: str | None = None
    message_id_domain: str | None = None

    def __post_init__(self) -> None:
        if self.security not in {"none", "starttls", "ssl"}:
            raise DestinationError(f"smtp: security {self.security!r} is not none/starttls/ssl")
        if self.rate_per_second <= 0:
            raise DestinationError("smtp: rate_per_second must be > 0")
        if self.max_per_connection < 1 or self.max_attempts < 1:
            raise DestinationError("smtp: max_per_connection and max_attempts must be >= 1")
        if "@" not in self.sender:
            raise DestinationError("smtp: sender must be an e-mail address")


@dataclass(slots=True)
class SendReport:
    """What a send did: counts, elapsed time and SMTP error labels (never addresses)."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    connections: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Messages accepted per second."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _text_part(text: str, subtype: str) -> MIMEText:
    # ASCII goes as 7bit, anything else as UTF-8 (base64): both survive any relay
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        return MIMEText(text, subtype, "utf-8")
    return MIMEText(text, subtype, "us-ascii")


def build_message(email: OutgoingEmail, settings: SmtpSettings) -> Message:
    """The MIME message for ``email`` (also what a dry run renders).

    Built with the ``email.mime`` classes (the compat32 policy) rather than ``EmailMessage``:
    the modern API parses every header it is given, which made building a message cost about
    ten times the SMTP exchange itself. Header values are checked here instead.
    """
    if not email.to or "@" not in email.to or any(c in email.to for c in "\r\n,<>"):
        raise DestinationError(f"smtp: message for {email.customer_id} has no valid address")
    for value in (email.subject, email.unsubscribe_url or "", email.message_id or ""):
        if any(c in value for c in "\r\n"):
            raise DestinationError("smtp: a header value cannot contain a line break")
    msg: Message
    if email.html:
        msg = MIMEMultipart("alternative")
        msg.attach(_text_part(email.text, "plain"))
        msg.attach(_text_part(email.html, "html"))
    else:
        msg = _text_part(email.text, "plain")
    msg["From"] = settings.sender
    msg["To"] = email.to
    try:
        email.subject.encode("ascii")
        msg["Subject"] = email.subject
    except UnicodeEncodeError:
        msg["Subject"] = Header(email.subject, "utf-8").encode()
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = settings.message_id_domain or settings.sender.rpartition("@")[2]
    msg["Message-ID"] = email.message_id or make_msgid(domain=domain)
    targets = []
    if email.unsubscribe_url:
        targets.append(f"<{email.unsubscribe_url}>")
    if settings.unsubscribe_mailto:
        targets.append(f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>")
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if email.unsubscribe_url and email.unsubscribe_url.startswith("https://"):
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return msg


class SmtpSender:
    """Sends rendered e-mails over SMTP (see the module doc)."""

    name = "smtp"

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        state: SyncState | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.state = state
        self.clock = clock
        self.sleep = sleep
        self._smtp: smtplib.SMTP | None = None
        self._on_connection = 0

    def _connect(self, report: SendReport) -> smtplib.SMTP:
        s = self.settings
        if s.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if s.username:
            smtp.login(s.username, s.password or "")
        report.connections += 1
        self._on_connection = 0
        return smtp

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except smtplib.SMTPException:
                self._smtp.close()
            except OSError:
                pass
            self._smtp = None

    def _deliver(self, msg: Message, report: SendReport) -> str | None:
        """None when accepted, else an error label (an SMTP code or exception name)."""
        for attempt in range(self.settings.max_attempts):
            try:
                if self._smtp is None or self._on_connection >= self.settings.max_per_connection:
                    self.close()
                    self._smtp = self._connect(report)
                refused = self._smtp.send_message(msg)
                self._on_connection += 1
                return f"refused {sorted({c for c, _ in refused.values()})}" if refused else None
            except smtplib.SMTPRecipientsRefused as exc:
                codes = sorted({c for c, _ in exc.recipients.values()})
                return f"recipient refused {codes}"
            except smtplib.SMTPResponseException as exc:
                if 400 <= exc.smtp_code < 500 and attempt + 1 < self.settings.max_attempts:
                    self.sleep(0.1 * 2**attempt)  # transient: try again
                    continue
                return f"SMTP {exc.smtp_code}"
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._smtp = None  # reconnect and try again
                if attempt + 1 >= self.settings.max_attempts:
                    return type(exc).__name__
        return "gave up"

    def send(
        self,
        emails: Iterable[OutgoingEmail],
        *,
        list_id: str | None = None,
        dry_run: bool = False,
    ) -> SendReport:
        """Send ``emails`` at the configured rate; with ``list_id`` and a state, skip those
        already sent for that list. ``dry_run`` builds every message and sends none."""
        report = SendReport(dry_run=dry_run)
        todo = list(emails)
        if self.state is not None and list_id is not None:
            done = self.state.was_sent(self.name, list_id, (e.customer_id for e in todo))
            report.skipped = sum(e.customer_id in done for e in todo)
            todo = [e for e in todo if e.customer_id not in done]
        interval = 1.0 / self.settings.rate_per_second
        start = self.clock()
        sent_keys: list[str] = []
        errors: Counter[str] = Counter()
        try:
            for n, email in enumerate(todo):
                msg = build_message(email, self.settings)
                if dry_run:
                    report.sent += 1
                    continue
                wait = start + n * interval - self.clock()
                if wait > 0:
                    self.sleep(wait)
                error = self._deliver(msg, report)
                if error is None:
                    report.sent += 1
                    sent_keys.append(email.customer_id)
                    if len(sent_keys) >= 100:
                        self._mark(list_id, sent_keys)
                else:
                    report.failed += 1
                    errors[error] += 1
        finally:
            self._mark(list_id, sent_keys)
            self.close()
            report.errors = [f"{label}: {n}" for label, n in sorted(errors.items())]
            report.elapsed_s = self.clock() - start
        log.info(
            "smtp: %d sent, %d failed, %d already sent, %.1f msg/s over %d connection(s)%s",
            report.sent,
            report.failed,
            report.skipped,
            report.rate,
            report.connections,
            " (dry run)" if dry_run else "",
        )
        return report

    def _mark(self, list_id: str | None, keys: list[str]) -> None:
        if keys and self.state is not None and list_id is not None:
            self.state.mark_sent(self.name, list_id, keys)
        keys.clear()
