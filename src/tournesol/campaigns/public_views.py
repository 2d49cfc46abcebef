"""Public routes reached from messages, without sign-in: open pixel, click redirect, one-click
unsubscribe, preference center, SMS provider callbacks (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
