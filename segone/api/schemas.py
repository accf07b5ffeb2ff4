"""Request and response models of the HTTP API, for the OpenAPI documentation.

Tracking bodies are parsed by ``segone.api.segment`` (they may be gzip-compressed and carry
Segment's size limits), so these models document them without validating them on the hot path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from segone.api.errors import ErrorDetail

_TS = "2026-03-01T12:00:00.000Z"


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str | None = Field(None, description="your id of the person; or anonymousId")
    anonymousId: str | None = Field(None, description="device/cookie id before login")
    messageId: str | None = Field(None, description="de-duplication key (generated if absent)")
    timestamp: str | None = Field(None, description="ISO-8601; defaults to the time received")
    context: dict[str, Any] | None = Field(None, description="context.traits count as traits")
    writeKey: str | None = Field(None, description="write key, when not sent by Basic auth")


class IdentifyMessage(_Message):
    type: Literal["identify"] | None = None
    traits: dict[str, Any] | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "userId": "u-1001",
                "anonymousId": "a-77",
                "traits": {"email": "jane@example.com", "plan": "gold"},
                "timestamp": _TS,
            }
        },
    )


class TrackMessage(_Message):
    type: Literal["track"] | None = None
    event: str = Field(description="the action, e.g. Order Completed")
    properties: dict[str, Any] | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "userId": "u-1001",
                "event": "Product Viewed",
                "properties": {"product_id": "p-42", "category": "shoes", "price": 79.0},
                "messageId": "m-0001",
                "timestamp": _TS,
            }
        },
    )


class PageMessage(_Message):
    type: Literal["page"] | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {"anonymousId": "a-77", "name": "Pricing", "properties": {"path": "/p"}}
        },
    )


class ScreenMessage(PageMessage):
    type: Literal["screen"] | None = None  # type: ignore[assignment]


class GroupMessage(_Message):
    type: Literal["group"] | None = None
    groupId: str
    traits: dict[str, Any] | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"example": {"userId": "u-1001", "groupId": "acme", "traits": {}}},
    )


class AliasMessage(_Message):
    type: Literal["alias"] | None = None
    previousId: str
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"example": {"previousId": "a-77", "userId": "u-1001"}},
    )


class BatchMessage(_Message):
    type: Literal["identify", "track", "page", "screen", "group", "alias"]
    event: str | None = None
    name: str | None = None
    groupId: str | None = None
    previousId: str | None = None
    traits: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None


class BatchRequest(BaseModel):
    batch: list[BatchMessage]
    context: dict[str, Any] | None = Field(None, description="applies to every message")
    writeKey: str | None = None
    sentAt: str | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "batch": [
                    {"type": "identify", "userId": "u-1001", "traits": {"plan": "gold"}},
                    {"type": "track", "userId": "u-1001", "event": "Order Completed"},
                ]
            }
        },
    )


MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "identify": IdentifyMessage,
    "track": TrackMessage,
    "page": PageMessage,
    "screen": ScreenMessage,
    "group": GroupMessage,
    "alias": AliasMessage,
    "batch": BatchRequest,
}


class IngestResponse(BaseModel):
    """Sent only after the accepted messages are committed to the online store."""

    success: bool = True
    accepted: int = Field(description="new messages stored")
    duplicates: int = Field(description="messages whose messageId was already stored")
    refused_erased: int | None = Field(
        default=None,
        description="messages (and rejected ones) of erased people, dropped unstored; "
        "present only when there were any",
    )
    rejected: list[ErrorDetail] = Field(
        default_factory=list, description="invalid messages of a batch (kept in quarantine)"
    )
    dropped: list[ErrorDetail] = Field(
        default_factory=list,
        description=(
            "fields of accepted messages that were not of their spec type, dropped (their "
            "values kept with the stored message under `_dropped`), and timestamps outside "
            "the accepted window, replaced by the time received"
        ),
    )
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "accepted": 19,
                "duplicates": 0,
                "rejected": [],
                "dropped": [],
            }
        }
    )


class DecideRequest(BaseModel):
    """Any identifier of the person (``user_id:``, ``anonymous_id:``, ``email:``...) and the
    decision context: ``placement`` (required), ``page``, ``limit``, ``candidates`` (item ids or
    offer objects; default: the published catalogue), ``exclude``, ``exclude_bought``,
    ``follow_up``. See docs/server.md."""

    identifier: str
    placement: str
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "identifier": "user_id:u-1001",
                "placement": "home_hero",
                "page": "/",
                "limit": 3,
            }
        },
    )


class FeedbackRequest(BaseModel):
    """What happened to a decision: ``kind`` is impression, click or conversion."""

    decision_id: str
    kind: str
    item_id: str | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {"decision_id": "d-5f2c", "item_id": "p-42", "kind": "click"}
        },
    )


class Document(BaseModel):
    """A JSON document whose fields are described in docs/api.md."""

    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    version: str
