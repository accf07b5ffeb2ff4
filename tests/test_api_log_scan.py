"""No contact data and no credential in any log line of a full session of ``segone serve``.

The real server (its own process, with its writer process, logging as ``segone serve`` does)
takes identifies with real-looking e-mails and phones, tracks, page views from a browser origin,
decisions, feedback, suppressions and an erasure, authenticated with write keys, decide and admin
tokens (from the settings and from ``segone keys``), plus wrong keys and bad requests whose error
paths log too. Then every byte the two processes wrote to stderr is scanned for each e-mail,
phone (as sent and as digits), user id, key and token.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from segone.api.keys import KeyFile

EMAILS = ["jane.doe+shop@example.com", "Bob.Smith@Mail.Example.org"]
PHONES = ["+1 (555) 010-4477", "+44 20 7946 0958"]
USER_IDS = ["u-logscan-7781", "u-logscan-9912"]
WRITE = "wk_logscan_" + uuid.uuid4().hex
DECIDE = "dk_logscan_" + uuid.uuid4().hex
ADMIN = "ak_logscan_" + uuid.uuid4().hex
SITE = "https://shop.example.com"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.mark.slow
def test_a_full_session_logs_no_contact_data_and_no_credentials(tmp_path: Path) -> None:
    (tmp_path / "segone.toml").write_text(
        f'[server]\nonline_url = "sqlite:///{tmp_path / "online.db"}"\ncors_origins = ["{SITE}"]\n'
    )
    _, file_key = KeyFile(tmp_path / "keys.json").create("write", origins=[SITE])
    port = _port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "SEGONE_WRITE_KEYS": WRITE,
        "SEGONE_DECIDE_TOKENS": DECIDE,
        "SEGONE_ADMIN_TOKENS": ADMIN,
    }
    with log.open("wb") as f:
        cmd = [sys.executable, "-m", "segone.api.server", "-p", str(tmp_path), "--port", str(port)]
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=30) as http:
            admin = {"Authorization": f"Bearer {ADMIN}"}
            decide = {"Authorization": f"Bearer {DECIDE}"}
            for key, uid, email, phone in zip(
                (WRITE, file_key), USER_IDS, EMAILS, PHONES, strict=True
            ):
                r = http.post(
                    "/v1/identify",
                    json={"userId": uid, "traits": {"email": email, "phone": phone}},
                    headers={**_basic(key), "Origin": SITE},
                )
                assert r.status_code == 200, r.text
                r = http.post(
                    "/v1/t",
                    content=(
                        f'{{"writeKey": "{key}", "type": "track", "userId": "{uid}", '
                        f'"event": "Order Completed", "properties": {{"total": "NaN", '
                        f'"email": "{email}"}}}}'
                    ),
                    headers={"Content-Type": "text/plain", "Origin": SITE},
                )
                assert r.status_code == 200, r.text
                # a batch with a bad message (quarantined: its reason is logged nowhere)
                r = http.post(
                    "/v1/batch",
                    json={"batch": [{"userId": uid, "type": "page"}, {"traits": {"email": email}}]},
                    headers=_basic(key),
                )
                assert r.status_code == 200 and len(r.json()["rejected"]) == 1
                r = http.post(
                    "/v1/decide",
                    json={
                        "identifier": f"email:{email}",
                        "placement": "home",
                        "candidates": ["p1"],
                    },
                    headers=decide,
                )
                assert r.status_code == 200, r.text
                decision = r.json()
                r = http.post(
                    "/v1/feedback",
                    json={
                        "decision_id": decision["decision_id"],
                        "item_id": "p1",
                        "kind": "click",
                    },
                    headers=decide,
                )
                assert r.status_code == 200, r.text
                assert http.get(f"/v1/profiles/phone:{phone}", headers=admin).status_code == 200
                r = http.put(f"/v1/suppressions/email:{email}", json={}, headers=admin)
                assert r.status_code == 200
            # error paths: wrong keys (a key that is a contact datum), scopes, origins, bad JSON
            assert http.post("/v1/track", json={}, headers=_basic(EMAILS[0])).status_code == 401
            bad = {"Authorization": f"Bearer {EMAILS[1]}"}
            assert http.get(f"/v1/profiles/email:{EMAILS[0]}", headers=bad).status_code == 401
            assert http.get(f"/v1/profiles/email:{EMAILS[0]}", headers=decide).status_code == 403
            r = http.post(
                "/v1/track",
                json={"userId": "x", "event": "E"},
                headers={**_basic(WRITE), "Origin": "https://evil.example"},
            )
            assert r.status_code in (200, 403)
            r = http.post("/v1/track", content=f'{{"email": "{EMAILS[0]}"', headers=_basic(WRITE))
            assert r.status_code == 400
            r = http.get(f"/v1/nothing/{EMAILS[0]}?phone={PHONES[0]}")
            assert r.status_code == 404
            # the erasure of the first person, by phone
            r = http.delete(f"/v1/profiles/phone:{PHONES[0]}", headers=admin)
            assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert "POST /v1/identify 200" in text and "DELETE /v1/profiles/{identifier} 200" in text
    secrets = [*EMAILS, *PHONES, *USER_IDS, WRITE, DECIDE, ADMIN, file_key]
    secrets += [e.lower() for e in EMAILS] + [e.split("@")[0] for e in EMAILS]
    secrets += [re.sub(r"\D", "", p) for p in PHONES]  # a phone as digits (normalised)
    secrets += [re.sub(r"\D", "", p)[-7:] for p in PHONES]
    found = [s for s in secrets if s.lower() in text.lower()]
    assert not found, f"found in the server's log: {found}\n{text[-2000:]}"
    assert base64.b64encode(f"{WRITE}:".encode()).decode() not in text
