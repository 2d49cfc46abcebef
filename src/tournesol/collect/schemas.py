"""The JSON of the Segment-compatible endpoints, as the OpenAPI description shows it. The
collector reads bodies itself (rules.read_body, rules.read_event) to answer Segment's way and
say exactly what is wrong; these models document the shapes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Accepted(BaseModel):
    """The answer to an accepted request (Segment's)."""

    success: bool = True


class EventIn(BaseModel):
    """One event of the Segment Spec (other fields are kept as sent)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["identify", "track", "page", "screen", "group", "alias"] | None = Field(
        None, description="required in a batch; implied by the endpoint otherwise"
    )
    messageId: str | None = Field(
        None, description="unique per event: a resend with the same messageId is stored once"
    )
    userId: str | None = Field(None, description="the app's id of the user (or anonymousId)")
    anonymousId: str | None = Field(None, description="the browser's or device's id")
    event: str | None = Field(None, description="track: the event name (Order Completed)")
    name: str | None = Field(None, description="page, screen: the page's name")
    previousId: str | None = Field(None, description="alias: the former id")
    groupId: str | None = Field(None, description="group: the company's id")
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = Field(None, description="identify: email, phone...")
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: str | None = Field(None, description="ISO 8601; when the event happened")
    originalTimestamp: str | None = None
    sentAt: str | None = None
    writeKey: str | None = Field(None, description="the key, when not in the Authorization header")


class BatchIn(BaseModel):
    """Several events at once (at most 500KB, 32KB per event): all accepted or none."""

    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]] = Field(description="events, each with its type")
    context: dict[str, Any] | None = Field(None, description="merged into each event's")
    integrations: dict[str, Any] | None = None
    sentAt: str | None = None
    writeKey: str | None = None
