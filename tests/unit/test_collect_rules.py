"""The pure rules of event collection: reading Segment events (with the reasons for refusing
one), event names as interaction types, event times, and who sent what (stitching)."""

from __future__ import annotations

import base64
import gzip
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.collect.rules import (
    MAX_BATCH_BYTES,
    Event,
    Malformed,
    event_time,
    normalize_event_name,
    read_batch,
    read_body,
    read_event,
    resolve,
    write_key_of,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def event(data: dict[str, Any], kind: str | None = None, **shared: Any) -> Event:
    return read_event(data, kind=kind, received_at=NOW, shared=shared or None)


# --- the request ---------------------------------------------------------------------------


def test_the_write_key_is_the_basic_auth_user_name_or_a_bearer_token() -> None:
    basic = "Basic " + base64.b64encode(b"tsk_ab12_s3cret:").decode()
    assert write_key_of(basic) == "tsk_ab12_s3cret"
    assert write_key_of("basic " + base64.b64encode(b"tsk_x_y").decode()) == "tsk_x_y"
    assert write_key_of("Bearer tsk_ab12_s3cret") == "tsk_ab12_s3cret"
    assert write_key_of("Basic " + base64.b64encode(b":password").decode()) is None
    assert write_key_of("Basic not-base64!") is None
    assert write_key_of("Digest abc") is None
    assert write_key_of(None) is None and write_key_of("") is None


def test_bodies_are_json_objects_possibly_gzipped() -> None:
    body = {"batch": [], "sentAt": "2025-03-01T12:00:00Z"}
    assert read_body(orjson.dumps(body)) == body
    assert read_body(gzip.compress(orjson.dumps(body)), encoding="gzip") == body
    with pytest.raises(Malformed, match="not valid JSON"):
        read_body(b"{'batch': []}")
    with pytest.raises(Malformed, match="must be a JSON object"):
        read_body(b"[1, 2]")
    with pytest.raises(Malformed, match="gzip-compressed but is not"):
        read_body(b"{}", encoding="gzip")
    with pytest.raises(Malformed, match="'br' is not supported"):
        read_body(b"{}", encoding="br")


def test_a_body_over_500kb_is_refused_also_once_decompressed() -> None:
    big = orjson.dumps({"batch": [], "pad": "x" * MAX_BATCH_BYTES})
    with pytest.raises(Malformed, match="larger than 500KB"):
        read_body(big)
    bomb = gzip.compress(big)
    assert len(bomb) < 10_000
    with pytest.raises(Malformed, match="larger than 500KB"):
        read_body(bomb, encoding="gzip")


# --- events --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind", "reason"),
    [
        ({"event": "Signed Up"}, "track", "userId or anonymousId is required"),
        ({"userId": "", "anonymousId": "  ", "event": "x"}, "track", "userId or anonymousId"),
        ({"userId": "u1"}, "track", "track needs an event name"),
        ({"userId": "u1", "event": "   "}, "track", "track needs an event name"),
        ({"userId": "u1", "event": 12}, "track", "event must be a string"),
        ({"userId": "u1", "timestamp": "yesterday"}, "page", "timestamp 'yesterday' is not"),
        ({"userId": "u1", "timestamp": 1700000000}, "page", "timestamp must be an ISO 8601"),
        ({"userId": "u1", "sentAt": "2025-13-01"}, "page", "sentAt '2025-13-01' is not"),
        ({"userId": {"id": 1}}, "identify", "userId must be a string"),
        ({"userId": "u" * 301}, "identify", "userId is longer than 300"),
        ({"userId": "u1", "messageId": "m" * 201}, "identify", "messageId is longer than 200"),
        ({"userId": "u1", "traits": ["a"]}, "identify", "traits must be an object"),
        ({"userId": "u1", "properties": "x"}, "page", "properties must be an object"),
        ({"userId": "u1", "context": 3}, "page", "context must be an object"),
        ({"userId": "u1"}, "alias", "alias needs a userId and a previousId"),
        ({"userId": "u1"}, "group", "group needs a groupId"),
        ({"userId": "u1"}, None, "type is required"),
        ({"userId": "u1", "type": "purchase"}, None, "type 'purchase' is not one of"),
        ({"userId": "u1", "properties": {"x": "y" * 33_000}}, "page", "larger than 32KB"),
        ("hello", "page", "an event must be a JSON object"),
    ],
)
def test_malformed_events_are_refused_with_the_reason(
    data: Any, kind: str | None, reason: str
) -> None:
    with pytest.raises(Malformed, match=re.escape(reason)):
        event(data, kind)


def test_a_batch_is_refused_whole_naming_the_faulty_event() -> None:
    good = {"type": "page", "anonymousId": "a"}
    with pytest.raises(Malformed, match=r"^batch\[2\]: track needs an event name"):
        read_batch({"batch": [good, good, {"type": "track", "userId": "u"}]}, received_at=NOW)
    with pytest.raises(Malformed, match="batch: a list of events is required"):
        read_batch({"events": []}, received_at=NOW)
    assert read_batch({"batch": []}, received_at=NOW) == []


def test_a_track_event_is_read_for_the_timeline() -> None:
    e = event(
        {
            "userId": 42,
            "anonymousId": "anon-1",
            "event": "Order Completed",
            "properties": {"total": 59.9, "currency": "EUR"},
            "context": {
                "ip": "203.0.113.9",
                "userAgent": "Mozilla/5.0",
                "traits": {"email": "A@B.FR"},
            },
            "timestamp": "2025-03-01T10:00:00.123Z",
            "messageId": "m-1",
            "writeKey": "tsk_secret",
        },
        "track",
    )
    assert (e.type, e.name, e.interaction_type, e.subject) == (
        "track",
        "Order Completed",
        "order_completed",
        "Order Completed",
    )
    assert e.user_id == "42" and e.anonymous_id == "anon-1" and e.message_id == "m-1"
    assert e.occurred_at == datetime(2025, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert e.details == {"total": 59.9, "currency": "EUR"} and e.channel == "web"
    assert e.email == "a@b.fr"  # the SDK's copy of the user's traits in the context
    # Stored whole (with the personal context), but never with the key.
    assert "writeKey" not in e.payload and e.payload["context"]["ip"] == "203.0.113.9"
    assert e.payload["receivedAt"] == NOW.isoformat() and e.payload["type"] == "track"


def test_identify_traits_give_the_contact_points_and_group_traits_do_not() -> None:
    e = event(
        {"userId": "u1", "traits": {"email": " Jean.Dupont@GMIAL.com ", "phone": "06 12 34 56 78"}},
        "identify",
    )
    assert e.email == "jean.dupont@gmail.com" and e.phone == "+33612345678"
    assert e.interaction_type == "identify" and e.details["phone"] == "06 12 34 56 78"
    g = event({"userId": "u1", "groupId": "acme", "traits": {"email": "contact@acme.fr"}}, "group")
    assert g.email is None and g.subject == "acme" and g.details["groupId"] == "acme"
    bad = event({"userId": "u1", "traits": {"email": "not an email", "phone": "hello"}}, "identify")
    assert bad.email is None and bad.phone is None  # kept in the payload, not used to resolve


def test_a_user_id_that_is_an_email_is_used_as_one() -> None:
    assert event({"userId": "Marie@Example.org", "event": "x"}, "track").email == (
        "marie@example.org"
    )


def test_pages_screens_and_aliases() -> None:
    page = event({"anonymousId": "a", "name": "Home", "properties": {"path": "/"}}, "page")
    assert (page.interaction_type, page.subject, page.channel) == ("page_view", "Home", "web")
    untitled = event({"anonymousId": "a", "properties": {"title": "Soldes", "path": "/s"}}, "page")
    assert untitled.subject == "Soldes"
    screen = event({"anonymousId": "a", "name": "Cart"}, "screen")
    assert (screen.interaction_type, screen.channel) == ("screen_view", "app")
    mobile = event(
        {"anonymousId": "a", "event": "Opened", "context": {"app": {"name": "x"}}}, "track"
    )
    rudder = event({"anonymousId": "a", "event": "Opened", "channel": "mobile"}, "track")
    assert mobile.channel == rudder.channel == "app"
    alias = event({"userId": "u2", "previousId": "anon-9"}, "alias")
    assert alias.previous_id == "anon-9" and alias.details == {"previousId": "anon-9"}


def test_message_ids_are_kept_or_made_unique() -> None:
    one, two = (event({"anonymousId": "a"}, "page") for _ in range(2))
    assert one.message_id != two.message_id and one.message_id.startswith("tournesol-")
    assert one.payload["messageId"] == one.message_id


def test_a_batch_shares_its_context_and_sent_at() -> None:
    events = read_batch(
        {
            "batch": [
                {"type": "page", "anonymousId": "a", "context": {"locale": "fr-FR"}},
                {"type": "page", "anonymousId": "a", "originalTimestamp": "2025-03-01T11:00:00Z"},
            ],
            "context": {"library": {"name": "analytics-python"}, "locale": "en-US"},
            "sentAt": "2025-03-01T11:00:10Z",
        },
        received_at=NOW,
    )
    assert events[0].payload["context"] == {
        "library": {"name": "analytics-python"},
        "locale": "fr-FR",
    }
    # The device's clock ran 59m50s late: the event happened 10 s before it was received.
    assert events[1].occurred_at == NOW - timedelta(seconds=10)
    assert events[1].payload["sentAt"] == "2025-03-01T11:00:10+00:00"


def test_event_time_follows_segment() -> None:
    stamp, original, sent = (NOW - timedelta(hours=h) for h in (1, 3, 2))
    assert event_time(stamp, original, sent, NOW) == stamp
    assert event_time(None, original, sent, NOW) == NOW - timedelta(hours=1)
    assert event_time(None, original, None, NOW) == original
    assert event_time(None, None, sent, NOW) == NOW
    naive = event({"anonymousId": "a", "timestamp": "2025-03-01 09:30:00"}, "page")
    assert naive.occurred_at == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    paris = event({"anonymousId": "a", "timestamp": "2025-03-01T10:30:00+01:00"}, "page")
    assert paris.occurred_at == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


# --- event names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Order Completed", "order_completed"),
        ("order_completed", "order_completed"),
        ("orderCompleted", "order_completed"),
        ("URLClicked", "url_clicked"),
        ("step2Done", "step2_done"),
        ("Product Viewed (v2)", "product_viewed_v2"),
        ("  Ajouté au panier !", "ajoute_au_panier"),
        ("Newsletter--Signup", "newsletter_signup"),
        ("!!!", "event"),
        ("", "event"),
        ("x" * 100, "x" * 60),
    ],
)
def test_event_names_become_interaction_types(name: str, expected: str) -> None:
    assert normalize_event_name(name) == expected


TYPE_SHAPE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")


@given(st.text(max_size=120))
def test_any_event_name_gives_a_short_snake_case_type(name: str) -> None:
    kind = normalize_event_name(name)
    assert TYPE_SHAPE.fullmatch(kind) and len(kind) <= 60
    assert normalize_event_name(kind) == kind  # stable: a type read again is itself


@given(
    st.lists(st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8), min_size=1, max_size=5)
)
def test_the_usual_spellings_of_one_name_meet(words: list[str]) -> None:
    expected = "_".join(words)
    spellings = [
        " ".join(w.title() for w in words),  # Segment's Object Action: "Order Completed"
        " ".join(words),
        "_".join(words),
        "-".join(w.upper() for w in words),
        words[0] + "".join(w.title() for w in words[1:]),  # camelCase
    ]
    assert {normalize_event_name(s) for s in spellings} == {expected[:60].rstrip("_")}


# --- who sent it ---------------------------------------------------------------------------


def at(minute: int, **fields: Any) -> Event:
    data = {"timestamp": (NOW + timedelta(minutes=minute)).isoformat(), **fields}
    kind = "identify" if "traits" in fields else "page"
    return event(data, kind)


def test_anonymous_page_views_are_stitched_by_a_later_identify_in_the_batch() -> None:
    events = [
        at(0, anonymousId="a1"),
        at(1, anonymousId="a1"),
        at(2, anonymousId="a1", userId="u1", traits={"email": "jean@exemple.fr"}),
        at(3, anonymousId="a1"),
        at(4, anonymousId="a2"),
    ]
    result = resolve(events, identifiers={("email", "jean@exemple.fr"): 7}, links={})
    assert result.owners == [7, 7, 7, 7, None]
    # The anonymous id and the unknown user id now stand for customer 7.
    assert result.learned == {("anonymous", "a1"): (7, 2), ("user", "u1"): (7, 2)}


def test_a_user_id_known_as_an_account_id_needs_no_link() -> None:
    events = [at(0, userId="105723", anonymousId="a1"), at(1, userId="105723")]
    result = resolve(events, identifiers={("account_id", "105723"): 3}, links={})
    assert result.owners == [3, 3]
    assert result.learned == {("anonymous", "a1"): (3, 0)}


def test_existing_links_win_and_the_earliest_event_teaches() -> None:
    events = [
        at(5, anonymousId="a1", traits={"email": "b@x.fr"}),
        at(1, anonymousId="a2", traits={"email": "a@x.fr"}),
        at(2, anonymousId="a2", traits={"email": "b@x.fr"}),
    ]
    ids = {("email", "a@x.fr"): 1, ("email", "b@x.fr"): 2}
    result = resolve(events, identifiers=ids, links={("anonymous", "a1"): 9})
    assert result.owners == [2, 1, 2]  # contact points speak for their own events
    assert result.learned == {("anonymous", "a2"): (1, 1)}


def test_an_anonymous_link_never_speaks_for_an_event_with_a_user_id() -> None:
    events = [at(0, anonymousId="shared", userId="someone-else"), at(1, anonymousId="shared")]
    result = resolve(events, identifiers={}, links={("anonymous", "shared"): 4})
    assert result.owners == [None, 4]


def test_a_phone_resolves_and_a_user_link_comes_before_contact_points() -> None:
    events = [
        at(0, userId="u9", traits={"phone": "0612345678"}),
        at(1, userId="u8", traits={"email": "a@x.fr"}),
    ]
    ids = {("phone", "+33612345678"): 5, ("email", "a@x.fr"): 1}
    result = resolve(events, identifiers=ids, links={("user", "u8"): 6})
    assert result.owners == [5, 6]
    assert result.learned == {("user", "u9"): (5, 0)}


def test_an_alias_links_the_previous_id() -> None:
    alias = event({"userId": "105723", "previousId": "anon-7"}, "alias")
    result = resolve([alias], identifiers={("account_id", "105723"): 3}, links={})
    assert result.learned == {("anonymous", "anon-7"): (3, 0), ("user", "anon-7"): (3, 0)}
