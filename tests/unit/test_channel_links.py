"""Signed links (open pixel, click redirect, unsubscribe, preference center) and the rewriting of
an email's HTML to carry them."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from itsdangerous.encoding import base64_decode
from markupsafe import escape as markup_escape

from tournesol.channels.links import (
    BadLink,
    Click,
    LinkSigner,
    Subscription,
    add_pixel,
    click_url,
    click_url_maker,
    find_links,
    link_slots,
    open_pixel_url,
    preferences_url,
    rewrite_links,
    unsubscribe_url,
)

SIGNER = LinkSigner("a-long-random-secret")
BASE = "https://t.tournesol.example"

keys = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(min_size=1, max_size=40),
)
web_urls = st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}.example/{path}{query}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9/._~%-]{0,40}", fullmatch=True),
    st.one_of(st.just(""), st.from_regex(r"\?[A-Za-z0-9=&%é_-]{1,40}", fullmatch=True)),
)
subscriptions = st.builds(
    Subscription,
    customer_id=keys,
    channel=st.sampled_from(["email", "sms", "postal", "phone", "any"]),
    brand_id=st.one_of(st.none(), keys),
    campaign_id=st.one_of(st.none(), keys),
)


def make_any_token(kind: str, data: st.DataObject) -> str:
    if kind == "open":
        return SIGNER.make_open(data.draw(keys))
    if kind == "click":
        return SIGNER.make_click(
            data.draw(keys), data.draw(st.integers(0, 500)), data.draw(web_urls)
        )
    if kind == "unsubscribe":
        return SIGNER.make_unsubscribe(data.draw(subscriptions))
    return SIGNER.make_preferences(data.draw(subscriptions))


READERS = {
    "open": SIGNER.read_open,
    "click": SIGNER.read_click,
    "unsubscribe": SIGNER.read_unsubscribe,
    "preferences": SIGNER.read_preferences,
}


# --- round trips ---------------------------------------------------------------------------


@given(keys)
def test_open_tokens_round_trip(outbox_id: int | str) -> None:
    token = SIGNER.make_open(outbox_id)
    assert SIGNER.read_open(token) == outbox_id
    assert type(SIGNER.read_open(token)) is type(outbox_id)


@given(keys, st.integers(0, 10_000), web_urls)
def test_click_tokens_round_trip(outbox_id: int | str, index: int, url: str) -> None:
    token = SIGNER.make_click(outbox_id, index, url)
    assert SIGNER.read_click(token) == Click(outbox_id, index, url)


@given(subscriptions)
def test_unsubscribe_and_preference_tokens_round_trip(sub: Subscription) -> None:
    assert SIGNER.read_unsubscribe(SIGNER.make_unsubscribe(sub)) == sub
    assert SIGNER.read_preferences(SIGNER.make_preferences(sub)) == sub


@given(st.sampled_from(list(READERS)), st.data())
def test_tokens_are_url_safe(kind: str, data: st.DataObject) -> None:
    token = make_any_token(kind, data)
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in token)


# --- tampering -----------------------------------------------------------------------------


@given(st.sampled_from(list(READERS)), st.data())
def test_any_changed_character_is_refused(kind: str, data: st.DataObject) -> None:
    token = make_any_token(kind, data)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="utf-8"))
    assume(replacement != token[position])
    forged = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(BadLink):
        READERS[kind](forged)


@given(st.sampled_from(list(READERS)), st.data())
def test_inserted_or_removed_characters_are_refused(kind: str, data: st.DataObject) -> None:
    token = make_any_token(kind, data)
    position = data.draw(st.integers(0, len(token)))
    inserted = data.draw(st.text(min_size=1, max_size=3))
    with pytest.raises(BadLink):
        READERS[kind](token[:position] + inserted + token[position:])
    cut = data.draw(st.integers(0, len(token) - 1))
    with pytest.raises(BadLink):
        READERS[kind](token[:cut] + token[cut + 1 :])


def test_the_last_character_of_each_part_cannot_vary_in_its_unused_bits() -> None:
    # base64 without padding: 'A' and 'B' can decode to the same bytes at the end of a part
    token = SIGNER.make_open(1)
    payload, signature = token.split(".")
    for part_index, part in enumerate((payload, signature)):
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            if c == part[-1]:
                continue
            changed = part[:-1] + c
            forged = ".".join((changed, signature) if part_index == 0 else (payload, changed))
            with pytest.raises(BadLink):
                SIGNER.read_open(forged)


@given(st.sampled_from(list(READERS)), st.sampled_from(list(READERS)), st.data())
def test_a_token_is_only_good_for_its_purpose(made: str, read: str, data: st.DataObject) -> None:
    assume(made != read)
    token = make_any_token(made, data)
    with pytest.raises(BadLink):
        READERS[read](token)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = LinkSigner("another-secret")
    with pytest.raises(BadLink, match="signature"):
        SIGNER.read_open(other.make_open(5))


def test_keys_rotate_newest_last() -> None:
    old, new = LinkSigner("old-secret"), LinkSigner("new-secret")
    rotating = LinkSigner(["old-secret", "new-secret"])
    assert rotating.read_open(old.make_open(9)) == 9
    assert rotating.read_open(new.make_open(9)) == 9
    assert new.read_open(rotating.make_open(10)) == 10
    with pytest.raises(BadLink):
        old.read_open(rotating.make_open(10))


@pytest.mark.parametrize("token", ["", ".", "abc", "a.b.c", "x" * 5000, "é.é", None, 12])
def test_malformed_tokens_are_refused(token: object) -> None:
    with pytest.raises(BadLink):
        SIGNER.read_open(token)  # type: ignore[arg-type]


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        LinkSigner("")
    with pytest.raises(ValueError):
        LinkSigner([])


# --- what tokens carry ---------------------------------------------------------------------


def _payload(token: str) -> object:
    body = token.split(".")[-2]
    raw = base64_decode(body)
    if token.startswith("."):
        raw = zlib.decompress(raw)
    return json.loads(raw)


def test_tokens_carry_ids_only() -> None:
    sub = Subscription(customer_id=123456, channel="email", brand_id=2, campaign_id=77)
    assert _payload(SIGNER.make_unsubscribe(sub)) == [123456, "email", 2, 77]
    assert _payload(SIGNER.make_preferences(sub)) == [123456, "email", 2, 77]
    assert _payload(SIGNER.make_open(31)) == [31]
    assert _payload(SIGNER.make_click(31, 2, "https://shop.example/p?x=1")) == [
        31,
        2,
        "https://shop.example/p?x=1",
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: SIGNER.make_click(1, -1, "https://a.example/"),
        lambda: SIGNER.make_click(1, True, "https://a.example/"),
        lambda: SIGNER.make_click(1, 0, "javascript:alert(1)"),
        lambda: SIGNER.make_click(1, 0, "/relative"),
        lambda: SIGNER.make_click(1, 0, "https://a.example/\r\nx"),
        lambda: SIGNER.make_open(None),  # type: ignore[arg-type]
        lambda: SIGNER.make_open(""),
        lambda: SIGNER.make_open(1.5),  # type: ignore[arg-type]
        lambda: SIGNER.make_unsubscribe(Subscription(1, "E-mail")),
        lambda: SIGNER.make_unsubscribe(Subscription(1, "ana@example.fr")),
    ],
)
def test_bad_inputs_are_refused_when_making_tokens(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


# --- URLs ----------------------------------------------------------------------------------


def test_url_builders() -> None:
    assert open_pixel_url(BASE + "/", "TOK") == f"{BASE}/t/o/TOK.gif"
    assert click_url(BASE, "TOK") == f"{BASE}/t/c/TOK"
    assert unsubscribe_url(BASE, "TOK") == f"{BASE}/u/TOK"
    assert preferences_url(BASE, "TOK") == f"{BASE}/p/TOK"
    with pytest.raises(ValueError):
        click_url("t.example", "TOK")


# --- rewriting HTML ------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Été</title>
<style>a { color: red }</style></head>
<body>
  <p>Bonjour <b>Anaïs</b>,</p>
  <a class="btn" href="https://shop.example/soldes?utm_source=mail&amp;utm_medium=email" target=_blank>Voir les soldes</a>
  <A HREF='http://blog.example/post'>Le blog</A>
  <a href="mailto:contact@shop.example">Écrire</a> <a href="tel:+33123456789">Appeler</a>
  <a href="#haut">Haut</a> <a href="/relative">Relatif</a> <a name="no-href">ancre</a>
  <!-- <a href="https://commented.example/">hidden</a> -->
  <script>var s = '<a href="https://script.example/">';</script>
  <a href="https://shop.example/soldes?utm_source=mail&amp;utm_medium=email">Encore</a>
  <a href="https://t.tournesol.example/u/abc.def">Se désinscrire</a>
  <a href="https://t.tournesol.example/p/abc.def">Mes préférences</a>
  <a data-notrack href="https://partner.example/">Partenaire</a>
  <a href = " https://spaces.example/x " title="Titre &quot;cité&quot;">Espaces</a>
</body></html>"""


def rewrite(html: str) -> tuple[str, list[str]]:
    return rewrite_links(
        html,
        lambda index, url: f"https://t.tournesol.example/t/c/{index}",
        untracked=(f"{BASE}/u/", f"{BASE}/p/"),
    )


def test_rewrite_links_replaces_web_links_and_leaves_the_rest() -> None:
    html, targets = rewrite(PAGE)
    assert targets == [
        "https://shop.example/soldes?utm_source=mail&utm_medium=email",
        "http://blog.example/post",
        "https://shop.example/soldes?utm_source=mail&utm_medium=email",
        "https://spaces.example/x",
    ]
    assert '<a class="btn" href="https://t.tournesol.example/t/c/0" target="_blank">' in html
    assert '<a href="https://t.tournesol.example/t/c/1">Le blog</A>' in html
    assert '<a href="https://t.tournesol.example/t/c/2">Encore</a>' in html
    assert (
        '<a href="https://t.tournesol.example/t/c/3" title="Titre &quot;cité&quot;">Espaces</a>'
        in html
    )
    for kept in (
        '<a href="mailto:contact@shop.example">',
        '<a href="tel:+33123456789">',
        '<a href="#haut">',
        '<a href="/relative">',
        '<a name="no-href">',
        '<!-- <a href="https://commented.example/">hidden</a> -->',
        "var s = '<a href=\"https://script.example/\">';",
        '<a href="https://t.tournesol.example/u/abc.def">',
        '<a href="https://t.tournesol.example/p/abc.def">',
        '<a data-notrack href="https://partner.example/">',
    ):
        assert kept in html
    assert "shop.example/soldes" not in html.replace("commented", "")


def test_rewrite_links_changes_nothing_outside_the_rewritten_tags() -> None:
    html, _ = rewrite(PAGE)
    original_lines = PAGE.splitlines()
    new_lines = html.splitlines()
    assert len(original_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(original_lines, new_lines, strict=True)) if a != b]
    assert changed == [5, 6, 11, 15]


def test_rewritten_links_lead_back_to_their_targets() -> None:
    make = click_url_maker(SIGNER, BASE, 4242)
    html, targets = rewrite_links(PAGE, make, untracked=(f"{BASE}/u/", f"{BASE}/p/"))
    prefix = f"{BASE}/t/c/"
    tokens = [part.split('"')[0] for part in html.split(f'href="{prefix}')[1:]]  # in document order
    assert [SIGNER.read_click(t) for t in tokens] == [
        Click(4242, i, url) for i, url in enumerate(targets)
    ]


def test_rewrite_links_on_a_page_without_links() -> None:
    assert rewrite_links("<p>Rien</p>", lambda i, u: "x") == ("<p>Rien</p>", [])
    assert rewrite_links("", lambda i, u: "x") == ("", [])


text_without_markup = st.text(
    alphabet=st.characters(exclude_characters="<>&\r", codec="utf-8"), max_size=40
)


@given(st.lists(st.tuples(text_without_markup, web_urls), max_size=6), text_without_markup)
def test_rewrite_links_keeps_the_text_between_links(
    parts: list[tuple[str, str]], tail: str
) -> None:
    html = "".join(f'{text}<a href="{url}">lien</a>' for text, url in parts) + tail
    expected = "".join(f'{text}<a href="C{i}">lien</a>' for i, (text, _) in enumerate(parts))
    new_html, targets = rewrite_links(html, lambda i, u: f"C{i}")
    assert new_html == expected + tail
    assert targets == [url for _, url in parts]


def test_add_pixel_goes_before_the_last_body_end() -> None:
    html = "<html><body><p>x</p><!-- </body> --></BODY></html>"
    out = add_pixel(html, f"{BASE}/t/o/TOK.gif")
    assert out.startswith("<html><body><p>x</p><!-- </body> --><img ")
    assert out.endswith("/></BODY></html>")
    assert f'src="{BASE}/t/o/TOK.gif"' in out and 'width="1"' in out and 'height="1"' in out
    assert 'alt=""' in out


def test_add_pixel_without_body_appends() -> None:
    out = add_pixel("<p>x</p>", "https://t.example/t/o/a&b.gif")
    assert out.startswith("<p>x</p><img ")
    assert 'src="https://t.example/t/o/a&amp;b.gif"' in out


def test_add_pixel_ignores_a_body_end_inside_a_trailing_comment() -> None:
    out = add_pixel("<body>x</body><!-- old </body> -->", "https://t/o/a.gif")
    assert out.startswith("<body>x<img ")
    assert out.endswith("/></body><!-- old </body> -->")


def test_a_document_is_scanned_once_and_applied_per_message() -> None:
    find_links.cache_clear()
    untracked = (f"{BASE}/u/", f"{BASE}/p/")
    for outbox_id in range(5):
        html, targets = rewrite_links(
            PAGE, click_url_maker(SIGNER, BASE, outbox_id), untracked=untracked
        )
        assert len(targets) == 4
        assert SIGNER.read_click(html.split(f"{BASE}/t/c/")[1].split('"')[0]).outbox_id == outbox_id
    info = find_links.cache_info()
    assert (info.misses, info.hits) == (1, 4)
    assert find_links(PAGE, untracked=untracked).targets == tuple(targets)


def test_applying_the_original_targets_gives_an_equivalent_document() -> None:
    links = find_links('<p><a  href="https://a.example/?x=1&amp;y=2"  class=k>a</a></p>')
    assert links.apply(lambda i, url: url) == (
        '<p><a href="https://a.example/?x=1&amp;y=2" class="k">a</a></p>'
    )


# --- documents written with holes (the HTML of a template) ------------------------------------

HOLE = object()  # where a template writes a value
UNTRACKED = (f"{BASE}/u/", f"{BASE}/p/")
FRAGMENTS = [
    "<p>", "</p>", "Bonjour ", "\n", " ", "-", "--", "!", ">", "<", "</", "<!", "<!-", "<!--",
    " -->", "--!>", "&", "&amp;", '"', "'", "=", "/", "<br/>", "<b", "a", "href",
    '<a href="https://shop.example/a?x=1&amp;y=2">', "</a>", "<A HREF='HTTPS://SHOP.EXAMPLE/B'/>",
    '<a data-notrack href="https://partner.example/">', '<a href="mailto:x@shop.example">',
    f'<a href="{BASE}/u/tok">', '<a class=btn href=https://shop.example/c target="_blank">',
    '<a href="', '<a href="https://shop.example/?q=', '">', '<a title="', '" href="https://s.example/">',
    "<a href='", "'>", '<img alt="', '" src="https://img.example/x.png">', "<a href=", "<a ",
    "<script>", "</script>", "if (a<b) {}", "</scr", "ipt>", "<style>", "</style>", "<title>",
    "</title>", "<!DOCTYPE html>", "<?php ?>", "<![CDATA[ x ]]>", "<textarea>", "</textarea>",
]  # fmt: skip
# what a template writes for a value: escaped text (markupsafe's escaping, as Jinja's)
escaped_values = st.lists(
    st.sampled_from(
        [
            "", "a", "x", "script", "scr", "ipt", "-", "--", "!", " ", "\n", "/", "=", "<", ">",
            "&", '"', "'", "https://shop.example/h?a=1&b=2", f"{BASE}/u/tok", f"{BASE}/p/tok",
            "mailto:x@y.example", "é", "#",
        ]
    ),
    max_size=4,
).map(lambda parts: str(markup_escape("".join(parts))))  # fmt: skip


def fill(parts: list[object], values: list[str]) -> str:
    """The document with its holes holding ``values``."""
    given = iter(values)
    return "".join(next(given) if part is HOLE else str(part) for part in parts)


def written_with_slots(
    parts: list[object], values: list[str], make_click_url: Callable[[int, str], str]
) -> str | None:
    """What link_slots makes of each copy: its tags rewritten slot by slot (None when the
    document must be read copy by copy)."""
    document = "".join("xx" if part is HOLE else str(part) for part in parts)
    holes: list[tuple[int, int]] = []
    at = 0
    for part in parts:
        size = 2 if part is HOLE else len(str(part))
        if part is HOLE:
            holes.append((at, at + size))
        at += size
    slots = link_slots(document, holes, untracked=UNTRACKED)
    if slots is None:
        return None
    count = 0

    def make(target: str) -> str:
        nonlocal count
        count += 1
        return make_click_url(count - 1, target)

    def text(start: int, end: int) -> str:
        out, cursor = [], start
        for i, (s, e) in enumerate(holes):
            if start <= s and e <= end:
                out += (document[cursor:s], values[i])
                cursor = e
        return "".join(out) + document[cursor:end]

    out, cursor = [], 0
    for slot in slots:
        out += (text(cursor, slot.start), slot.rewrite([values[i] for i in slot.holes], make))
        cursor = slot.end
    return "".join(out) + text(cursor, len(document))


def click(index: int, target: str) -> str:
    return f"{BASE}/t/c/{index}?to={target}"


@settings(max_examples=400)
@given(
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.just(HOLE)), max_size=14),
    st.data(),
)
def test_a_document_with_holes_rewrites_every_copy_as_reading_the_copy_would(
    parts: list[object], data: st.DataObject
) -> None:
    values = [data.draw(escaped_values) for part in parts if part is HOLE]
    by_slots = written_with_slots(parts, values, click)
    event("read once" if by_slots is not None else "read copy by copy")
    if by_slots is not None:
        copy = fill(parts, values)
        assert by_slots == find_links(copy, untracked=UNTRACKED).apply(click)


def test_holes_in_text_comments_and_quoted_values_keep_the_document_readable_once() -> None:
    page = (
        '<p>Bonjour xx,</p><!-- pour xx --><img alt="xx"><a class="b" href="https://s.example/'
        '?c=xx&amp;d=1">A</a><a href="xx">B</a><a href="https://s.example/fixe">C</a>'
    )
    holes = [(m.start(), m.end()) for m in re.finditer("xx", page)]
    slots = link_slots(page, holes, untracked=UNTRACKED)
    assert slots is not None
    assert [(slot.holes, slot.target) for slot in slots] == [
        ((3,), None),
        ((4,), None),
        ((), "https://s.example/fixe"),
    ]
    targets: list[str] = []

    def make(target: str) -> str:
        targets.append(target)
        return f"https://t/c/{len(targets) - 1}"

    tags = [slot.rewrite(["v"] * len(slot.holes), make) for slot in slots]
    assert targets == ["https://s.example/?c=v&d=1", "https://s.example/fixe"]
    assert tags == [
        '<a class="b" href="https://t/c/0">',
        '<a href="v">',
        '<a href="https://t/c/1">',
    ]
    assert slots[2].rewrite([], lambda target: "https://t/c/0") == '<a href="https://t/c/0">'


@pytest.mark.parametrize(
    "page",
    [
        '<xx href="https://s.example/">',  # the tag's name
        '<a xx href="https://s.example/">',  # an attribute's name
        "<a href=xx>",  # an unquoted value
        '<a href="https://s.example/"xx>',  # between attributes
        "</xx>",  # an end tag
        "<!xx>",  # may open a comment
        "<!-- a -xx> b -->",  # may close the comment
        "<!-- a xx > b -->",
        "<script>a</scrxxipt><a href='https://s.example/'></script>",  # may close the script
        "<!DOCTYPE xx>",
        "<?xx>",
    ],
)
def test_a_hole_that_could_change_how_the_page_reads_makes_each_copy_read_alone(
    page: str,
) -> None:
    at = page.index("xx")
    assert link_slots(page, [(at, at + 2)], untracked=UNTRACKED) is None


def test_holes_must_be_letters_in_order() -> None:
    with pytest.raises(ValueError, match="letters"):
        link_slots("<p>  </p>", [(3, 5)])
    with pytest.raises(ValueError, match="in order"):
        link_slots("<p>ab cd</p>", [(6, 8), (3, 5)])
