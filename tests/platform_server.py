"""A real local HTTP server playing Mailchimp, Klaviyo, Meta, Google, a webhook receiver and an
SMS provider, for the destination tests.

It checks each request's shape (paths, auth headers, bodies, hash formats, signatures) the way
the platform documents it, answers 400 with the reason when a shape is wrong, holds each list's
members so tests compare the platform's state with the audience, and de-duplicates on
``Idempotency-Key`` like providers that support it. ``plan`` scripts failures per request:
``"500"``/``"429"`` answer that status without processing; ``"drop"`` processes the request
and then closes the connection without answering (the response is lost on the way back).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class Bad(Exception):
    """A request whose shape the platform would reject (400 with this reason)."""


class Platform:
    def __init__(self, *, secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") -> None:
        self.secret = secret
        self.plan: list[str] = []  # actions for the next requests, consumed in order
        self.retry_after: str | None = None
        self.raw: list[dict[str, Any]] = []  # every request received
        self.bad: list[str] = []  # shape errors found
        self.seen_keys: dict[str, tuple[int, Any]] = {}
        self.processed = 0  # requests applied (after de-duplication)
        self.lists: dict[str, dict[str, Any]] = defaultdict(dict)  # list id -> key -> member
        self.applied: Counter[str] = Counter()  # member key -> times added
        self.messages: list[dict[str, Any]] = []
        self.mailchimp_refuse: set[str] = set()
        self.meta_invalid = 0
        self.jobs: dict[str, dict[str, Any]] = {}
        self.klaviyo_ids: dict[str, str] = {}  # external id -> profile id
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    action = outer.plan.pop(0) if outer.plan else "ok"
                    req = {
                        "method": self.command,
                        "path": urlsplit(self.path).path,
                        "query": parse_qs(urlsplit(self.path).query),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "action": action,
                    }
                    outer.raw.append(req)
                    if action in {"500", "429", "503"}:
                        status, doc = int(action), {"detail": "try later"}
                    else:
                        key = req["headers"].get("idempotency-key")
                        if key and key in outer.seen_keys:
                            status, doc = outer.seen_keys[key]
                        else:
                            try:
                                status, doc = 200, outer.route(req)
                            except Bad as exc:
                                outer.bad.append(str(exc))
                                status, doc = 400, {"detail": str(exc)}
                            if key and status < 300:
                                outer.seen_keys[key] = (status, doc)
                                outer.processed += 1
                if action == "drop":
                    self.close_connection = True
                    return
                out = json.dumps(doc).encode()
                self.send_response(status)
                if status == 429 and outer.retry_after:
                    self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- routing -----------------------------------------------------------------------------

    def route(self, req: dict[str, Any]) -> Any:
        path, method = req["path"], req["method"]
        if path.startswith("/3.0/"):
            return self.mailchimp(req)
        if path.startswith("/api/"):
            return self.klaviyo(req)
        if re.fullmatch(r"/v\d+\.\d+/[^/]+/users", path):
            return self.meta(req)
        if "/offlineUserDataJobs" in path:
            return self.google(req)
        if path.startswith("/hooks/"):
            return self.webhook(req)
        if path == "/messages" and method == "POST":
            return self.sms(req)
        raise Bad(f"no route {method} {path}")

    def _json(self, req: dict[str, Any]) -> Any:
        try:
            return json.loads(req["body"])
        except ValueError:
            raise Bad("body is not JSON") from None

    def mailchimp(self, req: dict[str, Any]) -> Any:
        auth = req["headers"].get("authorization", "")
        if not auth.startswith("Basic "):
            raise Bad("mailchimp: no Basic auth")
        _, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        if key != "k3y-us6":
            raise Bad("mailchimp: wrong API key")
        doc = self._json(req)
        m = re.fullmatch(r"/3.0/lists/([^/]+)", req["path"])
        if m and req["method"] == "POST":
            if doc.get("update_existing") is not True or not isinstance(doc.get("members"), list):
                raise Bad("mailchimp: body must have members and update_existing: true")
            if len(doc["members"]) > 500:
                raise Bad("mailchimp: more than 500 members")
            new, updated, errors = [], [], []
            for member in doc["members"]:
                address = member.get("email_address")
                # the batch endpoint's member needs ``status`` (``status_if_new`` is the PUT's)
                if not address or member.get("status") not in {"subscribed", "pending"}:
                    raise Bad("mailchimp: member without email_address/status")
                if "status_if_new" in member:
                    raise Bad("mailchimp: status_if_new is not a batch member field")
                if address in self.mailchimp_refuse:
                    errors.append(
                        {
                            "email_address": address,
                            "error": "fake",
                            "error_code": "ERROR_CONTACT_EXISTS",
                        }
                    )
                    continue
                h = hashlib.md5(address.lower().encode()).hexdigest()
                (updated if h in self.lists[m[1]] else new).append({"id": h})
                self.lists[m[1]][h] = member
                self.applied[address] += 1
            return {
                "new_members": new,
                "updated_members": updated,
                "errors": errors,
                "error_count": len(errors),
            }
        if req["path"] == "/3.0/batches" and req["method"] == "POST":
            for op in doc["operations"]:
                m = re.fullmatch(r"/lists/([^/]+)/members/([0-9a-f]{32})", op["path"])
                if op["method"] != "DELETE" or not m or not op.get("operation_id"):
                    raise Bad("mailchimp: batch operation is not a member DELETE")
                self.lists[m[1]].pop(m[2], None)
            return {"id": "batch1", "status": "pending", "total_operations": len(doc["operations"])}
        raise Bad("mailchimp: unknown endpoint")

    def klaviyo(self, req: dict[str, Any]) -> Any:
        h = req["headers"]
        if h.get("authorization") != "Klaviyo-API-Key pk_test" or h.get("revision") != "2026-10-15":
            raise Bad("klaviyo: missing Klaviyo-API-Key auth or revision header")
        if req["method"] != "GET" and h.get("content-type") != "application/vnd.api+json":
            raise Bad("klaviyo: content-type must be application/vnd.api+json")
        if req["path"] == "/api/profile-bulk-import-jobs" and req["method"] == "POST":
            data = self._json(req)["data"]
            if data["type"] != "profile-bulk-import-job":
                raise Bad("klaviyo: wrong job type")
            (lst,) = data["relationships"]["lists"]["data"]
            for p in data["attributes"]["profiles"]["data"]:
                attrs = p["attributes"]
                if p["type"] != "profile" or not (attrs.get("email") or attrs.get("phone_number")):
                    raise Bad("klaviyo: profile without email or phone")
                ext = attrs["external_id"]
                pid = self.klaviyo_ids.setdefault(ext, f"P{len(self.klaviyo_ids) + 1:05d}")
                self.lists[lst["id"]][pid] = attrs
                self.applied[ext] += 1
            return {"data": {"type": "profile-bulk-import-job", "id": "job1"}}
        if req["path"] == "/api/profiles" and req["method"] == "GET":
            (flt,) = req["query"]["filter"]
            m = re.fullmatch(r"any\(external_id,(\[.*\])\)", flt)
            if not m:
                raise Bad("klaviyo: unsupported filter")
            wanted = json.loads(m[1])
            return {
                "data": [
                    {"type": "profile", "id": self.klaviyo_ids[e]}
                    for e in wanted
                    if e in self.klaviyo_ids
                ]
            }
        m = re.fullmatch(r"/api/lists/([^/]+)/relationships/profiles", req["path"])
        if m and req["method"] == "DELETE":
            for p in self._json(req)["data"]:
                self.lists[m[1]].pop(p["id"], None)
            return {}
        raise Bad("klaviyo: unknown endpoint")

    def meta(self, req: dict[str, Any]) -> Any:
        if req["headers"].get("authorization") != "Bearer EAAtoken":
            raise Bad("meta: no access token")
        audience = req["path"].split("/")[2]
        doc = self._json(req)
        payload = doc.get("payload") or {}
        if payload.get("schema") != ["EMAIL", "PHONE"]:
            raise Bad("meta: schema must be [EMAIL, PHONE]")
        session = doc.get("session") or {}
        if not isinstance(session.get("session_id"), int) or "batch_seq" not in session:
            raise Bad("meta: session must carry session_id and batch_seq")
        for row in payload["data"]:
            if len(row) != 2 or not all(v == "" or HEX64.match(v) for v in row) or row == ["", ""]:
                raise Bad("meta: a row is not two SHA-256 hex values")
            if req["method"] == "POST":
                self.lists[audience][json.dumps(row)] = row
                self.applied[json.dumps(row)] += 1
            else:
                self.lists[audience].pop(json.dumps(row), None)
        return {
            "audience_id": audience,
            "session_id": session["session_id"],
            "num_received": len(payload["data"]),
            "num_invalid_entries": self.meta_invalid,
            "invalid_entry_samples": {},
        }

    def google(self, req: dict[str, Any]) -> Any:
        h = req["headers"]
        if h.get("authorization") != "Bearer ya29.token" or h.get("developer-token") != "devtok":
            raise Bad("google: missing OAuth or developer-token header")
        doc = self._json(req)
        m = re.fullmatch(r"/v\d+/customers/(\d+)/offlineUserDataJobs:create", req["path"])
        if m:
            job = doc["job"]
            if job["type"] != "CUSTOMER_MATCH_USER_LIST":
                raise Bad("google: job type")
            name = f"customers/{m[1]}/offlineUserDataJobs/{len(self.jobs) + 1}"
            user_list = job["customerMatchUserListMetadata"]["userList"]
            self.jobs[name] = {"list": user_list.rsplit("/", 1)[1], "ops": [], "ran": False}
            return {"resourceName": name}
        m = re.fullmatch(
            r"/v\d+/(customers/\d+/offlineUserDataJobs/\d+):(addOperations|run)", req["path"]
        )
        if not m or m[1] not in self.jobs:
            raise Bad("google: unknown job")
        job = self.jobs[m[1]]
        if m[2] == "addOperations":
            for op in doc["operations"]:
                ((kind, body),) = op.items()
                ids = body["userIdentifiers"]
                for ident in ids:
                    ((k, v),) = ident.items()
                    if k not in {"hashedEmail", "hashedPhoneNumber"} or not HEX64.match(v):
                        raise Bad("google: identifier is not hashedEmail/hashedPhoneNumber hex")
                job["ops"].append((kind, json.dumps(ids)))
            return {}
        if job["ran"]:
            raise Bad("google: job already ran")
        job["ran"] = True
        for kind, ids in job["ops"]:
            if kind == "create":
                self.lists[job["list"]][ids] = json.loads(ids)
                self.applied[ids] += 1
            else:
                self.lists[job["list"]].pop(ids, None)
        return {}

    def webhook(self, req: dict[str, Any]) -> Any:
        # checked by hand from the spec, not with segone.signing (which signed it)
        h = req["headers"]
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        content = f"{h.get('webhook-id')}.{h.get('webhook-timestamp')}.".encode() + req["body"]
        expected = "v1," + base64.b64encode(hmac.new(key, content, "sha256").digest()).decode()
        fresh = abs(time.time() - int(h.get("webhook-timestamp") or 0)) < 300
        if expected not in (h.get("webhook-signature") or "").split() or not fresh:
            raise Bad("webhook: bad Standard Webhooks signature")
        doc = self._json(req)
        for member in doc["members"]:
            if doc["type"] == "audience.members_added":
                self.lists[doc["list_id"]][member["customer_id"]] = member
                self.applied[member["customer_id"]] += 1
            elif doc["type"] == "audience.members_removed":
                self.lists[doc["list_id"]].pop(member["customer_id"], None)
            else:
                raise Bad("webhook: unknown type")
        return {}

    def sms(self, req: dict[str, Any]) -> Any:
        if req["headers"].get("authorization") != "Bearer smskey":
            raise Bad("sms: no key")
        if not req["headers"].get("idempotency-key"):
            raise Bad("sms: no Idempotency-Key")
        doc = self._json(req)
        if not re.fullmatch(r"\+\d{8,15}", doc.get("to", "")) or not doc.get("body"):
            raise Bad("sms: to must be E.164 and body non-empty")
        self.messages.append(doc)
        return {"id": f"SM{len(self.messages)}", "status": "queued"}
