"""Event collection compatible with Segment's HTTP tracking API (docs/api.md)."""
