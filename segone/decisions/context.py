"""The ``/v1/decide`` request context, validated, and the person's context group."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segone.decisions.policy import UNKNOWN_GROUP
from segone.decisions.settings import DecisionSettings
from segone.exceptions import DecisionError

_ID_FIELDS = ("id", "item_id", "product_id", "offer_id")
_MAX_TEXT = 200


@dataclass(frozen=True)
class Context:
    """The validated request context."""

    placement: str
    page: str | None
    candidates: list[str] | None
    offers: dict[str, dict[str, Any]]
    limit: int
    exclude: frozenset[str]
    #: True: leave out every item the person bought; False: none; None (not given, and the
    #: setting is None): what the last build learned per item (``buy_again``); a mapping of
    #: category (or category prefix, ``A > B``) to True/False: that for items in it, what was
    #: learned for the others
    exclude_bought: bool | dict[str, bool] | None
    follow_up: bool


def _text(value: Any, name: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise DecisionError(f"{name} must be a non-empty string of at most {_MAX_TEXT} characters")
    return value


def _required(value: Any, name: str) -> str:
    text = _text(value, name, required=True)
    assert text is not None
    return text


def _flag(ctx: Mapping[str, Any], name: str, default: bool | None) -> bool:
    v = ctx.get(name, default)
    if not isinstance(v, bool):
        raise DecisionError(f"{name} must be true or false")
    return v


def _maybe(ctx: Mapping[str, Any], name: str, default: bool | None) -> bool | None:
    v = ctx.get(name, default)
    if v is not None and not isinstance(v, bool):
        raise DecisionError(f"{name} must be true or false")
    return v


def _exclude_bought(
    ctx: Mapping[str, Any], settings: DecisionSettings
) -> bool | dict[str, bool] | None:
    v = ctx.get("exclude_bought", settings.exclude_bought)
    if isinstance(v, Mapping):
        if not v or not all(
            isinstance(k, str) and k.strip() and isinstance(x, bool) for k, x in v.items()
        ):
            raise DecisionError(
                "exclude_bought must be true, false, or an object of category: true/false"
            )
        return {str(k): bool(x) for k, x in v.items()}
    return _maybe(ctx, "exclude_bought", settings.exclude_bought)


def parse_context(context: Mapping[str, Any], settings: DecisionSettings) -> Context:
    """Validate the request context (unknown keys, such as the person's identifier, are left
    to the caller); raises :class:`DecisionError` on anything wrong."""
    if not isinstance(context, Mapping):
        raise DecisionError("the decision context must be an object")
    placement = _required(context.get("placement"), "placement")
    limit = context.get("limit", settings.default_limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= settings.max_limit:
        raise DecisionError(f"limit must be an integer from 1 to {settings.max_limit}")
    exclude = context.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise DecisionError("exclude must be a list of item ids")
    raw = context.get("candidates")
    candidates: list[str] | None = None
    offers: dict[str, dict[str, Any]] = {}
    if raw is not None:
        if not isinstance(raw, list) or len(raw) > settings.max_candidates:
            raise DecisionError(
                f"candidates must be a list of at most {settings.max_candidates} items"
            )
        if all(type(c) is str for c in raw):
            # plain ids (the common case, hundreds a request): checked in bulk
            if not all(map(str.strip, raw)) or max(map(len, raw), default=0) > _MAX_TEXT:
                raise DecisionError(
                    f"a candidate item id must be a non-empty string of at most {_MAX_TEXT} "
                    "characters"
                )
            candidates = list(dict.fromkeys(raw))
        else:
            candidates = []
            for c in raw:
                if isinstance(c, Mapping):
                    cid = _required(next((c[f] for f in _ID_FIELDS if f in c), None), "an offer id")
                    offers[cid] = dict(c)
                    candidates.append(cid)
                else:
                    candidates.append(_required(c, "a candidate item id"))
            candidates = list(dict.fromkeys(candidates))
    return Context(
        placement=placement,
        page=_text(context.get("page"), "page"),
        candidates=candidates,
        offers=offers,
        limit=limit,
        exclude=frozenset(exclude),
        exclude_bought=_exclude_bought(context, settings),
        follow_up=_flag(context, "follow_up", True),
    )


def context_group(view: Mapping[str, Any] | None, settings: DecisionSettings) -> str:
    """The person's context group: their ``group_field`` value (lifecycle stage), or unknown."""
    g = (view or {}).get(settings.group_field)
    if isinstance(g, bool) or not isinstance(g, str | int) or g == "":
        return UNKNOWN_GROUP
    return str(g)


def recommendations(published: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The person's published batch recommendations that name a product, best first."""
    recs = (published or {}).get("recommendations") or []
    return [r for r in recs if isinstance(r, Mapping) and isinstance(r.get("product_id"), str)]
