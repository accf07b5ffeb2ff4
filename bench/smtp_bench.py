"""E-mail sending benchmark: ``SmtpSender`` to a real local SMTP server (aiosmtpd), no loss.

    python bench/smtp_bench.py                        # 10,000 e-mails at 200/s (about 50 s)
    python bench/smtp_bench.py --n 1000 --rate 500    # a quicker run
    python bench/smtp_bench.py --rate 0               # unpaced: how fast the path itself is

Each message is a multipart/alternative (plain + HTML) with List-Unsubscribe headers, sent over
one connection per ``--per-connection`` messages. Reported: messages accepted per second
against the configured rate, the pacing error (achieved / configured), and loss: every
message id sent must arrive exactly once at the server (a count and a set comparison).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller

from segone.campaigns.destinations.base import OutgoingEmail
from segone.campaigns.destinations.email import SmtpSender, SmtpSettings

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE | re.IGNORECASE)


class Inbox:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # the server shares this process (and its GIL): find the id without parsing the MIME
        found = MESSAGE_ID.search(envelope.content)
        with self.lock:
            self.ids.append(found[1].decode() if found else "")
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=200.0, help="messages per second; 0 = unpaced")
    ap.add_argument("--per-connection", type=int, default=1000)
    args = ap.parse_args()

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        rate = args.rate if args.rate > 0 else 1e9
        settings = SmtpSettings(
            host="127.0.0.1",
            port=controller.port,
            sender="news@shop.example",
            rate_per_second=rate,
            max_per_connection=args.per_connection,
        )
        mails = [
            OutgoingEmail(
                customer_id=f"c{i}",
                to=f"person{i}@example.com",
                subject=f"Your picks this week, {i}",
                text=f"Hello {i},\nthree things we think you'll like.\n",
                html=f"<p>Hello {i},</p><p>three things we think you'll like.</p>",
                unsubscribe_url=f"https://shop.example/u/{i}",
                message_id=f"<bench-{i}@shop.example>",
            )
            for i in range(args.n)
        ]
        t0 = time.perf_counter()
        report = SmtpSender(settings).send(mails)
        wall = time.perf_counter() - t0
        deadline = time.monotonic() + 10
        while len(inbox.ids) < report.sent and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        controller.stop()
    expected = {m.message_id for m in mails}
    received = inbox.ids
    result = {
        "n": args.n,
        "configured_rate": args.rate or None,
        "sent": report.sent,
        "failed": report.failed,
        "received": len(received),
        "duplicates": len(received) - len(set(received)),
        "lost": len(expected - set(received)),
        "connections": report.connections,
        "wall_s": round(wall, 2),
        "messages_per_s": round(report.sent / wall, 1),
        "pacing": round(report.sent / wall / args.rate, 3) if args.rate else None,
    }
    print(json.dumps(result, indent=2))
    if result["lost"] or result["duplicates"] or report.failed:
        raise SystemExit("loss, duplicates or failures: see above")


if __name__ == "__main__":
    main()
