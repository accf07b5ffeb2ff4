"""What the dashboard changes: erase and unmerge a person (admins only, with a confirmation
step), record the review of a borderline identity pair, and sync a segment to a destination.

Each handler calls the library the CLI calls (``identity.erase.erase_everywhere`` with the
project's warehouse and online store, ``identity.decisions``, ``campaigns.audiences`` and
``campaigns.destinations``); the routes' wrapper (``pages._page``) has checked the session
and the form's CSRF token. The warehouse is opened for writing only for the change itself: a
build holding it makes the change fail with "warehouse busy", and nothing is half done.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from segone.web import campaign_view, data
from segone.web.security import Session

if TYPE_CHECKING:
    from segone.web.pages import Dashboard

log = logging.getLogger("segone.web")
ADMIN_USER = "admin"  # the session user of an admin-token login (reserved for it)


def _page_error(status: int, title: str, message: str) -> Exception:
    from segone.web.pages import PageError

    return PageError(status, title, message)


def require_admin(session: Session) -> None:
    """Erasing and unmerging change every store: only an admin-token login may."""
    if session.user != ADMIN_USER:
        raise _page_error(
            403,
            "Admins only",
            "Erasing or unmerging a person needs an admin login: log out and log in with an "
            "admin token ([server] admin_tokens or `segone keys add --kind admin`).",
        )


def _customer_or_404(dash: Dashboard, cid: str) -> dict[str, Any]:
    c = dash.built("customer", lambda wh: data.customer(wh, cid), cid)
    if c is None:
        raise _page_error(
            404, "No such customer", f"No customer has the id {cid!r} in the last build."
        )
    return dict(c)


def _confirmed(form: Mapping[str, Any]) -> bool:
    return str(form.get("confirm") or "") == "yes"


# -- erase ------------------------------------------------------------------------------------
def erase(dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]) -> Response:
    """``POST /customers/{id}/erase``: first a confirmation page, then (``confirm=yes``) the
    erasure everywhere, as ``segone erase`` does it."""
    require_admin(session)
    cid = request.path_params["customer_id"]
    c = _customer_or_404(dash, cid)
    if not _confirmed(form):
        return dash.render(
            "confirm.html",
            request,
            session,
            title=f"Erase {cid}?",
            action=f"/customers/{cid}/erase",
            fields={},
            button="Erase this person everywhere",
            cancel=f"/customers/{cid}",
            what=[
                f"{len(c['identifiers'])} identifiers and every record carrying one of them "
                "(orders, events, interactions, customer records) leave the warehouse;",
                "their live profile, events and decisions leave the online store;",
                "their identifiers are refused if they are loaded or sent again "
                "(`segone readmit` accepts one again);",
                "the warehouse file is rewritten so the deleted bytes leave it.",
            ],
            warning="This cannot be undone.",
        )
    from segone.identity.erase import compact_warehouse, erase_everywhere
    from segone.pipeline.publish import open_online

    proj = dash.project
    store = open_online(proj.settings)
    try:
        with proj.warehouse() as wh:
            r = erase_everywhere(proj.settings, wh, store, customer_ids=[cid], route="web")
    finally:
        if store is not None:
            store.close()
    compact_warehouse(proj.settings.warehouse_path)
    log.info("dashboard: erasure %s by %s", r.erasure_id, session.user)
    return dash.render(
        "done.html",
        request,
        session,
        title="Erased",
        message=r.summary(),
        detail=f"Customer {cid} is gone from the warehouse and the online store.",
        links=[("/customers", "Back to customers")],
    )


# -- unmerge ----------------------------------------------------------------------------------
def unmerge(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    """``POST /customers/{id}/unmerge`` with ``node``: split that identifier off the person
    (confirmation first). The decision is recorded for every later build and the identities
    are resolved again at once; the profiles follow at the next ``segone build``."""
    require_admin(session)
    cid = request.path_params["customer_id"]
    c = _customer_or_404(dash, cid)
    node = str(form.get("node") or "")
    mine = {i["node"] for i in c["identifiers"]}
    if node not in mine:
        raise _page_error(
            400, "Not one of theirs", f"{cid} has no such identifier; pick one from their page."
        )
    if len(mine) < 2:
        raise _page_error(400, "Nothing to unmerge", f"{cid} has a single identifier.")
    if not _confirmed(form):
        return dash.render(
            "confirm.html",
            request,
            session,
            title=f"Split {node.split(':', 1)[0]} off {cid}?",
            action=f"/customers/{cid}/unmerge",
            fields={"node": node},
            button="Split it off",
            cancel=f"/customers/{cid}",
            what=[
                f"the identifier {node} no longer links anything: it becomes a customer of its "
                "own, and the records it alone carried go with it;",
                "records that carry other identifiers of this person stay with them;",
                "every later build keeps it apart (recorded in identity_decisions);",
                "the identities are resolved again now; profiles, segments and scores follow at "
                "the next `segone build`.",
            ],
            warning=None,
        )
    from segone.identity import decisions
    from segone.identity.resolve import resolve

    proj = dash.project
    with proj.warehouse() as wh:
        decisions.record(wh, "split", node, by=session.user)
        res = resolve(wh, proj.settings.identity)
        cm = wh.table("customer_map")
        now = wh.execute(cm.filter(cm.node == node).customer_id)
        new_id = str(now.iloc[0]) if len(now) else None
    log.info("dashboard: an identifier split off %s by %s", cid, session.user)
    return dash.render(
        "done.html",
        request,
        session,
        title="Unmerged",
        message=f"{node.split(':', 1)[0]} split off {cid}"
        + (f": it is now customer {new_id}." if new_id else "."),
        detail=res.summary() + ". Run `segone build` to refresh the profiles.",
        links=[(f"/customers/{cid}", f"Back to {cid}"), ("/identity", "Identity")],
    )


# -- review of borderline pairs ----------------------------------------------------------------
def review(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    """``POST /identity/review`` with ``a``, ``b`` (the pair's nodes) and ``decision``
    (accept / reject): recorded as a hand-made link or unlink that the next build honours."""
    a, b = str(form.get("a") or ""), str(form.get("b") or "")
    decision = str(form.get("decision") or "")
    if decision not in ("accept", "reject"):
        raise _page_error(400, "Bad review", "A review accepts or rejects a pair.")
    pairs = dash.built("identity", data.identity).get("borderline", [])
    if not any({p["a"], p["b"]} == {a, b} for p in pairs):
        raise _page_error(
            400, "Not a borderline pair", "That pair is not among the pairs up for review."
        )
    from segone.identity import decisions

    with dash.project.warehouse() as wh:
        decisions.record(wh, "link" if decision == "accept" else "unlink", a, b, by=session.user)
    verb = "accepted: they stay linked" if decision == "accept" else "rejected: kept apart"
    return dash.render(
        "_reviewed.html",
        request,
        session,
        message=f"Pair {verb} from the next build on.",
        decision=decision,
    )


# -- sync a segment -----------------------------------------------------------------------------
def sync_segment(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    """``POST /segments/{name}/sync`` with ``destination`` (a name from
    ``data.destinations``): the segment's reachable members (consent, suppressions and
    erasures honoured, as a campaign's audience) synced to it; the counts are shown."""
    name = request.path_params["name"]
    dests = campaign_view.destinations(dash.root)
    key = str(form.get("destination") or "")
    if key not in dests:
        raise _page_error(
            400,
            "No such destination",
            "Pick one of the destinations configured in the project's campaign files "
            "(send: destination: {kind, config}).",
        )
    dest_cfg = dests[key]
    from segone.campaigns.audiences import AudienceSpec, build_audience, members
    from segone.campaigns.destinations import open_destination
    from segone.campaigns.service import online_state
    from segone.segments import project_catalogue

    proj = dash.project
    state = online_state(proj)
    with dash.snapshot.read() as wh:
        cat = project_catalogue(proj, wh)
        if name not in cat.segments:
            raise _page_error(404, "No such segment", f"There is no segment {name!r}.")
        aud = build_audience(
            wh,
            AudienceSpec(segment=name),
            dest_cfg["channel"],
            as_of=data.as_of(wh),
            catalogue=cat,
            suppressions=state.suppressions,
            online_erased=state.erased,
            online_salts=state.salts,
        )
        rows = wh.execute(aud.reachable).to_dict("records")
    dest = open_destination(
        dest_cfg["kind"], dest_cfg["config"], state_dir=dash.root / "campaigns" / ".state"
    )
    rep = dest.sync(members(rows, dest_cfg["channel"]), list_id=f"segment-{name}")
    log.info("dashboard: segment synced to %s by %s", key, session.user)
    return dash.render(
        "_synced.html", request, session, rep=rep, dest=key, steps=aud.steps, name=name
    )
