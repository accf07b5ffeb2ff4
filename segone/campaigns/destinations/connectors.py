"""Per-platform shapes: how each one holds a member and which requests add or remove a batch.

Each connector follows its platform's documented API (paths and bodies below); the base URL is
always configurable, so tests and proxies point them anywhere.

Checked against each platform's reference (December 2026); the pages are cited in
docs/campaigns-destinations.md.

* Mailchimp — ``POST /3.0/lists/{list_id}`` ``{"members": [...], "update_existing": true}``
  (batch subscribe/update, 500 per call, each member ``email_address`` and ``status`` — the
  batch endpoint takes ``status``, not the ``status_if_new`` of the single-member ``PUT``; a
  member who unsubscribed at Mailchimp is refused with a compliance error, not resubscribed —
  per-member ``errors`` in the 200 answer); removals
  archive members through ``POST /3.0/batches`` with ``DELETE /lists/{id}/members/{hash}``
  operations, the hash being the MD5 of the lowercased address. HTTP Basic auth with the key.
* Klaviyo — ``POST /api/profile-bulk-import-jobs`` (JSON:API, up to 10,000 profiles, related to
  the list), headers ``Authorization: Klaviyo-API-Key …`` and ``revision``; removals look the
  profiles up by ``external_id`` (``GET /api/profiles/?filter=any(external_id,[…])``) and
  ``DELETE /api/lists/{id}/relationships/profiles`` (no trailing slashes, as the current
  reference writes them).
* Meta Custom Audiences — ``POST /{version}/{audience_id}/users`` (removal: ``DELETE``) with
  ``{"payload": {"schema": ["EMAIL", "PHONE"], "data": [[sha256, sha256], …]}, "session": …}``.
* Google Customer Match — an offline user data job: ``:create`` (type CUSTOMER_MATCH_USER_LIST),
  ``:addOperations`` with ``create``/``remove`` of ``userIdentifiers``
  (``hashedEmail``/``hashedPhoneNumber``), then ``:run``; headers ``developer-token`` and
  optionally ``login-customer-id``.
* Webhook — a signed POST per batch (Standard Webhooks headers, ``segone.signing``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from segone import signing
from segone.campaigns.destinations import normalise
from segone.campaigns.destinations.base import DestinationError, Member
from segone.campaigns.destinations.http import BatchFailed, Call, Connector, Http, Item
from segone.campaigns.destinations.sync_state import digest


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {}


class Mailchimp(Connector):
    kind = "mailchimp"

    def __init__(self, api_key: str, *, status_if_new: str, merge_fields: Mapping[str, str]):
        if status_if_new not in {"subscribed", "pending", "unsubscribed", "transactional"}:
            raise DestinationError(f"mailchimp: status_if_new {status_if_new!r} is not a status")
        self.api_key = api_key
        self.status_if_new = status_if_new
        self.merge_fields = dict(merge_fields)

    def headers(self) -> dict[str, str]:
        import base64

        token = base64.b64encode(f"segone:{self.api_key}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def item(self, member: Member) -> Item | None:
        address = normalise.email(member.email) if member.email else None
        if address is None:
            return None
        # the batch endpoint's member takes ``status`` (``status_if_new`` is the PUT's)
        payload: dict[str, Any] = {"email_address": address, "status": self.status_if_new}
        merge = {
            tag: member.fields[name]
            for tag, name in self.merge_fields.items()
            if member.fields.get(name) is not None
        }
        if merge:
            payload["merge_fields"] = merge
        return Item(member.customer_id, payload, normalise.subscriber_hash(address))

    def add(self, http: Http, items: Sequence[Item], list_id: str, rid: str) -> set[str]:
        body = {"members": [i.payload for i in items], "update_existing": True}
        resp = http(Call("POST", f"/3.0/lists/{list_id}", json=body), request_id=rid)
        errors = _json(resp).get("errors") or []
        refused_addresses = {str(e.get("email_address", "")).lower() for e in errors}
        codes = Counter(str(e.get("error_code") or "error") for e in errors)
        if codes:
            http.report.errors.extend(
                f"mailchimp refused {n}: {c}" for c, n in sorted(codes.items())
            )
        return {i.key for i in items if i.payload["email_address"] in refused_addresses}

    def remove(self, http: Http, items: Sequence[tuple[str, str]], list_id: str, rid: str) -> None:
        ops = [
            {
                "method": "DELETE",
                "path": f"/lists/{list_id}/members/{token}",
                "operation_id": f"{rid}-{n}",
            }
            for n, (_, token) in enumerate(items)
        ]
        http(Call("POST", "/3.0/batches", json={"operations": ops}), request_id=rid)


class Klaviyo(Connector):
    kind = "klaviyo"
    remove_batch_size = 100  # one page of the profile lookup

    def __init__(self, api_key: str, *, revision: str, default_country_code: str | None) -> None:
        self.api_key = api_key
        self.revision = revision
        self.cc = default_country_code

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Klaviyo-API-Key {self.api_key}",
            "revision": self.revision,
            "accept": "application/vnd.api+json",
            "content-type": "application/vnd.api+json",
        }

    def item(self, member: Member) -> Item | None:
        attrs: dict[str, Any] = {"external_id": member.customer_id}
        address = normalise.email(member.email) if member.email else None
        phone = normalise.e164(member.phone, self.cc) if member.phone else None
        if address is None and phone is None:
            return None
        if address:
            attrs["email"] = address
        if phone:
            attrs["phone_number"] = phone
        if member.fields:
            attrs["properties"] = dict(member.fields)
        return Item(
            member.customer_id, {"type": "profile", "attributes": attrs}, member.customer_id
        )

    def add(self, http: Http, items: Sequence[Item], list_id: str, rid: str) -> set[str]:
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": [i.payload for i in items]}},
                "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
            }
        }
        http(Call("POST", "/api/profile-bulk-import-jobs", json=body), request_id=rid)
        return set()

    def remove(self, http: Http, items: Sequence[tuple[str, str]], list_id: str, rid: str) -> None:
        ids = ",".join(json.dumps(token) for _, token in items)
        found = http(
            Call(
                "GET",
                "/api/profiles",
                params={"filter": f"any(external_id,[{ids}])", "page[size]": "100"},
            ),
            request_id=rid + "-lookup",
        )
        profiles = [{"type": "profile", "id": p["id"]} for p in _json(found).get("data") or []]
        if profiles:
            http(
                Call(
                    "DELETE",
                    f"/api/lists/{list_id}/relationships/profiles",
                    json={"data": profiles},
                ),
                request_id=rid,
            )


class Meta(Connector):
    kind = "meta"
    remove_batch_size = 10_000
    schema = ("EMAIL", "PHONE")

    def __init__(self, access_token: str, *, version: str, default_country_code: str | None):
        self.access_token = access_token
        self.version = version
        self.cc = default_country_code

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    def item(self, member: Member) -> Item | None:
        row = [
            normalise.meta_email_hash(member.email),
            normalise.meta_phone_hash(member.phone, self.cc),
        ]
        if not any(row):
            return None
        return Item(member.customer_id, row, json.dumps(row))

    def _body(self, rows: list[Any], rid: str) -> dict[str, Any]:
        return {
            "payload": {"schema": list(self.schema), "data": rows},
            # one session per batch; its id comes from the request id, so a retry is the same
            "session": {
                "session_id": int(rid[:15], 16),
                "batch_seq": 1,
                "last_batch_flag": True,
                "estimated_num_total": len(rows),
            },
        }

    def _check(self, http: Http, resp: Any) -> None:
        invalid = int(_json(resp).get("num_invalid_entries") or 0)
        if invalid:
            http.report.errors.append(f"meta marked {invalid} entries invalid")

    def add(self, http: Http, items: Sequence[Item], list_id: str, rid: str) -> set[str]:
        body = self._body([i.payload for i in items], rid)
        resp = http(Call("POST", f"/{self.version}/{list_id}/users", json=body), request_id=rid)
        self._check(http, resp)
        return set()

    def remove(self, http: Http, items: Sequence[tuple[str, str]], list_id: str, rid: str) -> None:
        body = self._body([json.loads(t) for _, t in items], rid)
        resp = http(Call("DELETE", f"/{self.version}/{list_id}/users", json=body), request_id=rid)
        self._check(http, resp)


class Google(Connector):
    kind = "google"
    remove_batch_size = 10_000
    deferred = True  # operations take effect when the job runs

    def __init__(
        self,
        access_token: str,
        *,
        customer_id: str,
        developer_token: str,
        login_customer_id: str | None,
        version: str,
        default_country_code: str | None,
        consent: str | None = None,
    ) -> None:
        if consent not in {None, "GRANTED", "DENIED"}:
            raise DestinationError("google: consent must be GRANTED or DENIED")
        self.consent = consent
        self.access_token = access_token
        self.customer_id = customer_id
        self.developer_token = developer_token
        self.login_customer_id = login_customer_id
        self.version = version
        self.cc = default_country_code
        self._job: str | None = None

    def headers(self) -> dict[str, str]:
        h = {
            "Authorization": f"Bearer {self.access_token}",
            "developer-token": self.developer_token,
        }
        if self.login_customer_id:
            h["login-customer-id"] = self.login_customer_id
        return h

    def item(self, member: Member) -> Item | None:
        ids: list[dict[str, str]] = []
        e = normalise.google_email_hash(member.email)
        p = normalise.google_phone_hash(member.phone, self.cc)
        if e:
            ids.append({"hashedEmail": e})
        if p:
            ids.append({"hashedPhoneNumber": p})
        if not ids:
            return None
        return Item(member.customer_id, ids, json.dumps(ids))

    def begin(self) -> None:
        self._job = None  # a job an aborted sync created never ran: start a new one

    def _job_name(self, http: Http, list_id: str, rid: str) -> str:
        if self._job is None:
            metadata: dict[str, Any] = {
                "userList": f"customers/{self.customer_id}/userLists/{list_id}"
            }
            if self.consent:  # the EU user consent Google asks for (ad user data, personalisation)
                metadata["consent"] = {
                    "adUserData": self.consent,
                    "adPersonalization": self.consent,
                }
            body = {
                "job": {
                    "type": "CUSTOMER_MATCH_USER_LIST",
                    "customerMatchUserListMetadata": metadata,
                }
            }
            path = f"/{self.version}/customers/{self.customer_id}/offlineUserDataJobs:create"
            # a new job per sync (an unrun job does nothing), so a fresh key; the keys of the
            # job's own requests below include its name
            resp = http(Call("POST", path, json=body), request_id=uuid.uuid4().hex)
            name = _json(resp).get("resourceName")
            if not name:
                raise BatchFailed("create job: no resourceName in the answer")
            self._job = str(name)
        return self._job

    def _operations(self, http: Http, op: str, ids: list[Any], list_id: str, rid: str) -> None:
        job = self._job_name(http, list_id, rid)
        body = {
            "enablePartialFailure": True,
            "operations": [{op: {"userIdentifiers": i}} for i in ids],
        }
        path = f"/{self.version}/{job}:addOperations"
        resp = http(Call("POST", path, json=body), request_id=digest([rid, job])[:32])
        if _json(resp).get("partialFailureError"):
            http.report.errors.append("google reported a partial failure")

    def add(self, http: Http, items: Sequence[Item], list_id: str, rid: str) -> set[str]:
        self._operations(http, "create", [i.payload for i in items], list_id, rid)
        return set()

    def remove(self, http: Http, items: Sequence[tuple[str, str]], list_id: str, rid: str) -> None:
        self._operations(http, "remove", [json.loads(t) for _, t in items], list_id, rid)

    def finish(self, http: Http, list_id: str, rid: str) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            path = f"/{self.version}/{job}:run"
            http(Call("POST", path, json={}), request_id=digest([rid, job])[:32])


class Webhook(Connector):
    kind = "webhook"

    def __init__(self, path: str, secret: str) -> None:
        try:
            signing.secret_key(secret)
        except ValueError as exc:
            raise DestinationError(f"webhook: {exc}") from None
        self.path = path
        self.secret = secret

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def item(self, member: Member) -> Item | None:
        doc: dict[str, Any] = {"customer_id": member.customer_id}
        if member.email:
            doc["email"] = member.email
        if member.phone:
            doc["phone"] = member.phone
        if member.fields:
            doc["fields"] = dict(member.fields)
        return Item(member.customer_id, doc, member.customer_id)

    def _post(self, http: Http, kind: str, list_id: str, members: list[Any], rid: str) -> None:
        msg_id = f"msg_{rid}"
        body = json.dumps(
            {"type": kind, "list_id": list_id, "members": members},
            separators=(",", ":"),
            sort_keys=True,
            default=str,
        ).encode()
        call = Call(
            "POST",
            self.path,
            content=body,
            sign=lambda: signing.headers(self.secret, msg_id, body),
        )
        http(call, request_id=rid)

    def add(self, http: Http, items: Sequence[Item], list_id: str, rid: str) -> set[str]:
        self._post(http, "audience.members_added", list_id, [i.payload for i in items], rid)
        return set()

    def remove(self, http: Http, items: Sequence[tuple[str, str]], list_id: str, rid: str) -> None:
        members = [{"customer_id": k} for k, _ in items]
        self._post(http, "audience.members_removed", list_id, members, rid)
