"""Campaign message templates: personalization, autoescaped HTML, the checks made when a message
is saved (unknown fields with their part and line, syntax errors, the sandbox, the unsubscribe
link of a marketing e-mail) and the errors at render time, which never quote customer data."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.campaigns.models import CampaignMessage
from tournesol.campaigns.templates import (
    FIELDS,
    LINKS,
    MessageRenderer,
    RenderedMessage,
    TemplateError,
    check_message,
    format_amount,
    format_date,
)
from tournesol.channels import links as links_module
from tournesol.channels.links import find_links

UNSUBSCRIBE = '<a href="{{ unsubscribe_url }}">Se désabonner</a>'


def message(
    body_text: str,
    *,
    subject: str | None = None,
    body_html: str | None = None,
    channel: str = "email",
    language: str = "fr",
) -> CampaignMessage:
    return CampaignMessage(
        channel=channel,
        language=language,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
    )


def test_a_message_is_personalized_and_empty_fields_fall_back() -> None:
    renderer = MessageRenderer(
        message(
            "{{ civility }} {{ last_name }}, votre dernier achat du {{ last_purchase_date | date }}"
            " ({{ last_purchase_amount | amount }}) chez {{ brand }}.",
            subject="Bonjour {{ first_name | default('cher client') }} !",
            body_html="<p>Bonjour {{ first_name | default('cher client') }}</p>" + UNSUBSCRIBE,
        )
    )
    context = {
        "civility": "Madame",
        "first_name": "Anne",
        "last_name": "Petit",
        "brand": "Soleil",
        "last_purchase_date": date(2026, 3, 1),
        "last_purchase_amount": Decimal("1234.5"),
        "unsubscribe_url": "https://t.example.fr/u/abc",
    }
    got = renderer.render(context)
    assert got.subject == "Bonjour Anne !"
    assert got.text == (
        "Madame Petit, votre dernier achat du 1er mars 2026 (1\u202f234,50\xa0€) chez Soleil."
    )
    assert got.html == ('<p>Bonjour Anne</p><a href="https://t.example.fr/u/abc">Se désabonner</a>')
    # a known field that is empty for this customer: the default, or nothing
    empty = renderer.render(context | {"first_name": None, "last_purchase_amount": ""})
    assert empty.subject == "Bonjour cher client !"
    assert "()" in empty.text


def test_english_dates_and_amounts() -> None:
    renderer = MessageRenderer(
        message("{{ last_purchase_date | date }} {{ total_spent | amount }}", language="en")
    )
    got = renderer.render(
        {"last_purchase_date": date(2026, 3, 3), "total_spent": Decimal("1234.5")}
    )
    assert got.text == "3 March 2026 €1,234.50"
    assert format_date(date(2026, 5, 1)) == "1er mai 2026"
    assert format_amount(None) == "" and format_amount(Decimal("3")) == "3,00\xa0€"


def test_html_is_autoescaped_but_not_the_subject_nor_the_text() -> None:
    renderer = MessageRenderer(
        message(
            "Bonjour {{ first_name }}",
            subject="Pour {{ first_name }}",
            body_html="<p>Bonjour {{ first_name }}</p>",
        )
    )
    got = renderer.render({"first_name": "<b>Ana</b> & Cie"})
    assert got == RenderedMessage(
        subject="Pour <b>Ana</b> & Cie",
        text="Bonjour <b>Ana</b> & Cie",
        html="<p>Bonjour &lt;b&gt;Ana&lt;/b&gt; &amp; Cie</p>",
    )


def test_the_subject_is_one_line_whatever_the_data() -> None:
    renderer = MessageRenderer(message("x", subject="Bonjour   {{ first_name }} !"))
    assert renderer.render({"first_name": "Anne\r\nBcc: x@evil.example"}).subject == (
        "Bonjour Anne Bcc: x@evil.example !"
    )


def test_check_returns_the_fields_and_links_used() -> None:
    used = check_message(
        subject="Bonjour {{ first_name | default('client') }}",
        body_text="{% if city %}À {{ city }}{% endif %} {{ preferences_url }}",
        body_html=None,
    )
    assert used == ["city", "first_name", "preferences_url"]
    assert check_message(subject=None, body_text="Soldes !", body_html=None) == []


@pytest.mark.parametrize(
    ("part", "kwargs", "line"),
    [
        ("subject", {"subject": "Bonjour {{ frist_name }}"}, 1),
        ("text", {"body_text": "Bonjour,\n\n{{ loyalty }}"}, 3),
        ("html", {"body_html": "<p>\n</p>\n<p>{{ firstname }}</p>" + UNSUBSCRIBE}, 3),
    ],
)
def test_an_unknown_field_is_refused_with_its_part_and_line(
    part: str, kwargs: dict[str, str], line: int
) -> None:
    values = {
        "subject": "Soldes",
        "body_text": "Soldes {{ unsubscribe_url }}",
        "body_html": None,
    } | kwargs
    with pytest.raises(TemplateError) as caught:
        check_message(**values)  # type: ignore[arg-type]
    assert (caught.value.part, caught.value.line) == (part, line)
    assert str(caught.value).startswith(f"{part}, line {line}: unknown field")


def test_a_syntax_error_is_refused_with_its_line() -> None:
    with pytest.raises(TemplateError, match=r"^html, line 2: syntax error"):
        check_message(
            subject="Soldes",
            body_text="{{ unsubscribe_url }}",
            body_html="<p>\n{% if first_name %}</p>",
        )


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ first_name['__class__'] }}",
        "{{ (first_name | default('x')).__init__.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_python_internals(source: str) -> None:
    with pytest.raises(TemplateError, match="not allowed"):
        check_message(subject=None, body_text="Bonjour\n" + source, body_html=None)


def test_the_sandbox_also_refuses_them_at_render_time() -> None:
    # a message written around the check (an import, an old row) still cannot reach them
    renderer = MessageRenderer(message("{{ ''.__class__ }}{{ x | attr('__class__') }}"))
    with pytest.raises(TemplateError, match="unsafe"):
        renderer.render({})
    with pytest.raises(TemplateError, match="unsafe"):
        MessageRenderer(message("{{ first_name.__class__.__name__ }}")).render({"first_name": "A"})


def test_includes_and_imports_are_refused() -> None:
    for source in ("{% include 'x.html' %}", "{% import 'm' as m %}", "{% extends 'b' %}"):
        with pytest.raises(TemplateError, match="include, import and extends"):
            check_message(subject=None, body_text=source, body_html=None)


def test_a_marketing_email_needs_an_unsubscribe_link() -> None:
    with pytest.raises(TemplateError, match="must carry an unsubscribe link") as caught:
        check_message(subject="Soldes", body_text="Soldes", body_html="<p>Soldes</p>")
    assert caught.value.part == "html"
    with pytest.raises(TemplateError, match="must carry an unsubscribe link"):
        check_message(subject="Soldes", body_text="Soldes", body_html=None, channel="email")
    # in the text or the HTML, the unsubscribe or the preference link
    check_message(subject="Soldes", body_text="Soldes {{ preferences_url }}", body_html="<p>S</p>")
    check_message(subject="Soldes", body_text="Soldes", body_html=UNSUBSCRIBE)
    # a service message, an SMS or a letter needs none
    check_message(subject="Commande", body_text="Expédiée", body_html=None, marketing=False)
    check_message(subject=None, body_text="Soldes -20 %", body_html=None, channel="sms")
    with pytest.raises(TemplateError, match="needs a subject"):
        check_message(
            subject=" ", body_text="{{ unsubscribe_url }}", body_html=None, channel="email"
        )


def test_a_field_used_without_a_fallback_where_it_cannot_be_empty_is_refused() -> None:
    with pytest.raises(TemplateError, match=r"text, line 2: cannot render.*default"):
        check_message(subject=None, body_text="Bonjour\n{{ first_name.upper() }}", body_html=None)
    assert check_message(
        subject=None, body_text="{{ (first_name | default('')).upper() }}", body_html=None
    ) == ["first_name"]


def test_a_subject_must_fit_on_one_line() -> None:
    with pytest.raises(TemplateError, match=r"^subject: a subject must fit on one line"):
        check_message(subject="Soldes\nd'hiver", body_text="{{ unsubscribe_url }}", body_html=None)


def test_render_errors_name_the_part_and_line_never_the_data() -> None:
    renderer = MessageRenderer(
        message("Bonjour\n{{ first_name + 1 }}", subject="Pour {{ first_name }}")
    )
    with pytest.raises(TemplateError) as caught:
        renderer.render({"first_name": "Zoé Secrète", "email": "zoe@exemple.fr"})
    assert (caught.value.part, caught.value.line) == ("text", 2)
    assert "Zoé" not in str(caught.value) and "zoe@" not in str(caught.value)


def test_a_message_that_does_not_compile_is_refused_by_the_renderer() -> None:
    with pytest.raises(TemplateError, match=r"^text, line 1: syntax error"):
        MessageRenderer(message("{% for %}"))


def test_fields_and_links_are_documented() -> None:
    assert not set(FIELDS) & set(LINKS)
    assert all(text.strip() for text in [*FIELDS.values(), *LINKS.values()])
    sample = "".join(f"{{{{ {name} }}}}" for name in [*FIELDS, *LINKS])
    assert check_message(subject=None, body_text=sample, body_html=None) == sorted(
        [*FIELDS, *LINKS]
    )


def test_fields_used_names_what_the_messages_read_and_nothing_else() -> None:
    from tournesol.campaigns.models import CampaignMessage
    from tournesol.campaigns.templates import FIELDS, fields_used

    email = CampaignMessage(
        channel="email", language="fr", subject="{{ first_name | default('') }}",
        body_text="{{ unsubscribe_url }} {% set x = 1 %}{{ x }}",
        body_html="<p>{{ total_spent | amount }}</p>",
    )  # fmt: skip
    sms = CampaignMessage(channel="sms", language="fr", body_text="{{ rfm_segment }}")
    assert fields_used([email]) == {"first_name", "total_spent"}
    assert fields_used([email, sms]) == {"first_name", "total_spent", "rfm_segment"}
    # a message that does not compile reads everything (its error comes when rendered)
    broken = CampaignMessage(channel="sms", language="fr", body_text="{{ first_name ")
    assert fields_used([broken]) == set(FIELDS)


# --- links rewritten while rendering -------------------------------------------------------------

BASE = "https://t.example.fr"
UNTRACKED = (f"{BASE}/u/", f"{BASE}/p/")
LINK_FRAGMENTS = [
    "<p>", "</p>", "Bonjour ", "\n", "-", "--", " ", ">", "<", "&amp;", '"', "=",
    "{{ first_name }}", "{{ first_name | default('Client') }}", "{{ city | upper }}",
    "{{ unsubscribe_url }}", "{{ preferences_url }}", "{{ total_spent | amount }}",
    "{{ first_name ~ '<b>' }}", "{{ first_name | safe }}", "{{ range(2) | list }}",
    '<a href="https://shop.example/a?x=1&amp;y=2">', "</a>", "<a href='https://shop.example/b'/>",
    '<a data-notrack href="https://partner.example/">', '<a href="', '">', "<a href=",
    '<a href="https://shop.example/?ville=', '<a title="', '" href="https://s.example/t">',
    "<!-- ", " -->", "<script>", "</script>", "{% if first_name %}", "{% else %}",
    "{% endif %}", "{# note #}", "{% raw %}{{ x }}{% endraw %}",
]  # fmt: skip
CONTEXTS = st.fixed_dictionaries(
    {
        "first_name": st.sampled_from(["Anne", "", '<Zoé & "Léa">', "--", "a", "https://x.fr/"]),
        "city": st.sampled_from(["Lyon", "", "a'b", "script"]),
        "total_spent": st.sampled_from([Decimal("12.5"), None]),
        "unsubscribe_url": st.sampled_from([f"{BASE}/u/tok", "https://other.example/u?a=1&b=2"]),
        "preferences_url": st.sampled_from([f"{BASE}/p/tok", "#", "mailto:x@y.fr"]),
    }
)


def click(index: int, target: str) -> str:
    return f"{BASE}/t/c/{index}?to={target}"


@settings(max_examples=300)
@given(st.lists(st.sampled_from(LINK_FRAGMENTS), max_size=12), st.lists(CONTEXTS, min_size=1))
def test_links_written_while_rendering_are_those_the_rendered_page_would_give(
    fragments: list[str], contexts: list[dict[str, object]]
) -> None:
    source = "".join(fragments)
    try:
        renderer = MessageRenderer(message("x", body_html=source), untracked=UNTRACKED)
    except TemplateError:
        return  # does not compile
    for context in contexts:
        try:
            plain = renderer.render(context).html
        except TemplateError:
            with pytest.raises(TemplateError):
                renderer.render(context, click_url=click)
            continue
        got = renderer.render(context, click_url=click).html
        if plain is None:  # no HTML part
            assert got is None
        else:
            assert got == find_links(plain, untracked=UNTRACKED).apply(click)


def test_a_plain_html_part_is_not_read_again_for_each_recipient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    html = (
        '<p>Bonjour {{ first_name | default("") }}</p><a href="https://shop.example/?a=1&amp;b=2">'
        'Voir</a><a title="{{ city }}" href="https://shop.example/{{ city }}">Magasin</a>'
        '<a href="{{ unsubscribe_url }}">Se désabonner</a>'
    )
    renderer = MessageRenderer(message("x", body_html=html), untracked=UNTRACKED)
    read: list[str] = []
    monkeypatch.setattr(links_module, "find_links", lambda page, **_: read.append(page))
    got = renderer.render(
        {"first_name": "Zoé", "city": "Lyon&co", "unsubscribe_url": f"{BASE}/u/tok"},
        click_url=click,
    ).html
    assert read == []
    assert got == (
        "<p>Bonjour Zoé</p>"
        f'<a href="{BASE}/t/c/0?to=https://shop.example/?a=1&amp;b=2">Voir</a>'
        f'<a title="Lyon&amp;co" href="{BASE}/t/c/1?to=https://shop.example/Lyon&amp;co">'
        f'Magasin</a><a href="{BASE}/u/tok">Se désabonner</a>'
    )


@pytest.mark.parametrize(
    "html",
    [
        '{% if first_name %}<a href="https://a.example/">A</a>{% endif %}',  # a statement
        '<a href="https://a.example/">A</a>{{ first_name | safe }}',  # may print HTML
        '<a href="https://a.example/" {{ city }}>A</a>',  # a value where a name goes
    ],
)
def test_other_html_parts_are_read_for_each_recipient(
    html: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer = MessageRenderer(message("x", body_html=html), untracked=UNTRACKED)
    read: list[str] = []
    find = links_module.find_links

    def spy(page: str, **kwargs: tuple[str, ...]) -> links_module.LinkMap:
        read.append(page)
        return find(page, **kwargs)

    monkeypatch.setattr(links_module, "find_links", spy)
    context = {"first_name": "<b>Zoé</b>", "city": "data-notrack"}
    got = renderer.render(context, click_url=click).html
    assert read == [renderer.render(context).html]
    assert got == find(read[0], untracked=UNTRACKED).apply(click)


def test_a_value_refused_by_the_sandbox_in_a_link_is_refused_as_elsewhere() -> None:
    renderer = MessageRenderer(message("x", body_html="<a href=\"{{ ''.__class__ }}\">A</a>"))
    with pytest.raises(TemplateError, match=r"html, line 1: cannot render: .*unsafe"):
        renderer.render({}, click_url=click)
