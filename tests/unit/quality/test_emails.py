"""E-mail addresses: syntax (email-validator), typo fixes, role and disposable flags, match key."""

from __future__ import annotations

import gzip

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.quality import emails
from tournesol.quality.base import Severity
from tournesol.quality.emails import normalize_email

FIXED = {f.code for f in emails.FLAGS if f.severity is Severity.FIXED}
TYPO = ("EMAIL_TYPO_FIXED",)
ROLE = ("EMAIL_ROLE",)
DISPOSABLE = ("EMAIL_DISPOSABLE",)
INVALID = ("EMAIL_INVALID",)


@pytest.mark.parametrize(
    ("text", "value", "flags", "key"),
    [
        # plain addresses: domain lowercased, the local part keeps its case in the value
        ("jean.dupont@orange.fr", "jean.dupont@orange.fr", (), "jean.dupont@orange.fr"),
        ("Jean.Dupont@ORANGE.FR", "Jean.Dupont@orange.fr", (), "jean.dupont@orange.fr"),
        ("  marie@free.fr\t", "marie@free.fr", (), "marie@free.fr"),
        ("marie @ free.fr", "marie@free.fr", (), "marie@free.fr"),
        ("mailto:marie@free.fr", "marie@free.fr", (), "marie@free.fr"),
        ("MAILTO: marie@free.fr?subject=Bonjour", "marie@free.fr", (), "marie@free.fr"),
        ("marie\u200b@free.fr", "marie@free.fr", (), "marie@free.fr"),
        ("o'neil@exemple.fr", "o'neil@exemple.fr", (), "o'neil@exemple.fr"),
        # internationalized addresses (RFC 6531/6532): accepted, domain kept in Unicode
        ("élodie@orange.fr", "élodie@orange.fr", (), "élodie@orange.fr"),
        ("jean@xn--bcher-kva.ch", "jean@bücher.ch", (), "jean@bücher.ch"),
        # typos of the big providers (explicit table)
        ("Jean@GMIAL.com", "Jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@gmal.com", "jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@gmail.fr", "jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@hotmial.fr", "jean@hotmail.fr", TYPO, "jean@hotmail.fr"),
        ("jean@hotmai.fr", "jean@hotmail.fr", TYPO, "jean@hotmail.fr"),
        ("jean@hotmail.co", "jean@hotmail.com", TYPO, "jean@hotmail.com"),
        ("jean@orage.fr", "jean@orange.fr", TYPO, "jean@orange.fr"),
        ("jean@oragne.fr", "jean@orange.fr", TYPO, "jean@orange.fr"),
        ("jean@yahooo.fr", "jean@yahoo.fr", TYPO, "jean@yahoo.fr"),
        ("jean@yaho.fr", "jean@yahoo.fr", TYPO, "jean@yahoo.fr"),
        ("jean@fre.fr", "jean@free.fr", TYPO, "jean@free.fr"),
        ("jean@wanado.fr", "jean@wanadoo.fr", TYPO, "jean@wanadoo.fr"),
        ("jean@wanadoo.com", "jean@wanadoo.fr", TYPO, "jean@wanadoo.fr"),
        # laposte.fr is La Poste's corporate domain; the public mailboxes are laposte.net
        ("jean@laposte.fr", "jean@laposte.net", TYPO, "jean@laposte.net"),
        ("jean@laposte.ne", "jean@laposte.net", TYPO, "jean@laposte.net"),
        ("jean@icloud.fr", "jean@icloud.com", TYPO, "jean@icloud.com"),
        ("jean@gmail", "jean@gmail.com", TYPO, "jean@gmail.com"),
        # TLDs that do not exist
        ("jean@gmail.con", "jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@gmail.cmo", "jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@hotmail.fe", "jean@hotmail.fr", TYPO, "jean@hotmail.fr"),
        ("jean@free.frr", "jean@free.fr", TYPO, "jean@free.fr"),
        ("jean@boulangerie-martin.con", "jean@boulangerie-martin.com", TYPO, None),
        ("jean@gmial.con", "jean@gmail.com", TYPO, "jean@gmail.com"),
        # punctuation typos in the domain
        ("jean@gmail,com", "jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@gmail..com", "jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@orange.fr.", "jean@orange.fr", TYPO, "jean@orange.fr"),
        # the guarded one-edit rule (same TLD and first letter, one provider that close)
        ("jean@gmaik.com", "jean@gmail.com", TYPO, "jean@gmail.com"),
        ("jean@outlookk.fr", "jean@outlook.fr", TYPO, "jean@outlook.fr"),
        ("jean@lapostr.net", "jean@laposte.net", TYPO, "jean@laposte.net"),
        # ... which leaves real domains alone
        ("jean@ymail.com", "jean@ymail.com", (), "jean@ymail.com"),
        ("jean@email.com", "jean@email.com", (), "jean@email.com"),
        ("jean@mail.com", "jean@mail.com", (), "jean@mail.com"),
        ("jean@gmx.fr", "jean@gmx.fr", (), "jean@gmx.fr"),
        ("jean@orange.com", "jean@orange.com", (), "jean@orange.com"),
        ("jean@yahoo.com", "jean@yahoo.com", (), "jean@yahoo.com"),
        # match key: + tags and Gmail dots, googlemail.com is gmail.com
        ("Jean.Dupont+promo@gmail.com", "Jean.Dupont+promo@gmail.com", (), "jeandupont@gmail.com"),
        ("j.dupont@googlemail.com", "j.dupont@googlemail.com", (), "jdupont@gmail.com"),
        ("jean+news@hotmail.fr", "jean+news@hotmail.fr", (), "jean@hotmail.fr"),
        ("jean+news@outlook.com", "jean+news@outlook.com", (), "jean@outlook.com"),
        ("jean+news@icloud.com", "jean+news@icloud.com", (), "jean@icloud.com"),
        ("jean+news@proton.me", "jean+news@proton.me", (), "jean@proton.me"),
        ("jean+news@orange.fr", "jean+news@orange.fr", (), "jean+news@orange.fr"),
        ("jean.dupont@hotmail.fr", "jean.dupont@hotmail.fr", (), "jean.dupont@hotmail.fr"),
        # role addresses (a person may still read them: a warning, not a rejection)
        ("contact@boulangerie-martin.fr", "contact@boulangerie-martin.fr", ROLE, None),
        ("info@exemple.fr", "info@exemple.fr", ROLE, None),
        ("no-reply@exemple.fr", "no-reply@exemple.fr", ROLE, None),
        ("noreply@exemple.fr", "noreply@exemple.fr", ROLE, None),
        ("Service.Client@exemple.fr", "Service.Client@exemple.fr", ROLE, None),
        ("service_client@exemple.fr", "service_client@exemple.fr", ROLE, None),
        ("compta@exemple.fr", "compta@exemple.fr", ROLE, None),
        ("accueil@mairie-lyon.fr", "accueil@mairie-lyon.fr", ROLE, None),
        # email-validator lowercases RFC 2142 mailbox names such as postmaster
        ("Postmaster@Exemple.FR", "postmaster@exemple.fr", ROLE, "postmaster@exemple.fr"),
        ("contactez.moi@exemple.fr", "contactez.moi@exemple.fr", (), None),
        # disposable domains (npm disposable-email-domains), wildcard entries included
        ("jean@yopmail.com", "jean@yopmail.com", DISPOSABLE, None),
        ("jean@mailinator.com", "jean@mailinator.com", DISPOSABLE, None),
        ("jean@shop.33mail.com", "jean@shop.33mail.com", DISPOSABLE, None),
        ("contact@yopmail.fr", "contact@yopmail.fr", (*DISPOSABLE, *ROLE), None),
        # invalid: value None, the original kept
        ("nc@nc", None, INVALID, None),
        ("jean@gmail@orange.fr", None, INVALID, None),
        ("jean.dupont", None, INVALID, None),
        ("jean@", None, INVALID, None),
        ("@gmail.com", None, INVALID, None),
        ("jean dupont@gmail.com", None, INVALID, None),
        ("jean..dupont@gmail.com", None, INVALID, None),
        (".jean@gmail.com", None, INVALID, None),
        ("jean@@gmail.com", None, INVALID, None),
        ("jean@localhost", None, INVALID, None),
        ("jean@site.local", None, INVALID, None),
        ("jean@[192.168.0.1]", None, INVALID, None),
        ('"jean dupont"@gmail.com', None, INVALID, None),
        ("Jean Dupont <jean@gmail.com>", None, INVALID, None),
        ("pas d'email", None, INVALID, None),
        ("jean@" + "a" * 64 + ".fr", None, INVALID, None),  # a DNS label has 63 octets at most
        ("x" * 64 + "@" + "d" * 60 + ".example" * 20 + ".fr", None, INVALID, None),  # > 254
        ("0612345678", None, INVALID, None),
    ],
)
def test_normalize_email(
    text: str, value: str | None, flags: tuple[str, ...], key: str | None
) -> None:
    result = normalize_email(text)
    assert result.original == text
    assert result.value == value
    assert result.flags == tuple(sorted(flags))
    if key is not None:
        assert result.match_key == key
    if value is None:
        assert result.match_key is None and result.reason
    else:
        assert result.domain == value.rpartition("@")[2]


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_blank_is_absent_not_invalid(text: str | None) -> None:
    result = normalize_email(text)
    assert (result.original, result.value, result.flags) == (text, None, ())


def test_typo_fix_keeps_the_address_as_typed() -> None:
    result = normalize_email(" Jean.Dupont@GMIAL.com ")
    assert result.corrected_from == "Jean.Dupont@gmial.com"
    assert normalize_email("jean@gmail.com").corrected_from is None


def test_typo_table_is_consistent() -> None:
    """No typo is a real provider domain, and every correction is a valid domain."""
    typos = {typo for typos in emails.TYPOS.values() for typo in typos}
    assert not typos & set(emails.TYPOS)
    assert not typos & set(emails.OTHER_MAIL_DOMAINS)
    for domain in emails.TYPOS:
        assert normalize_email(f"a@{domain}").flags == ()
    assert not set(emails.TLD_TYPOS) & {"co", "cm", "om", "ne", "fr", "com", "net"}


def test_one_edit_rule_never_targets_a_known_domain() -> None:
    table = emails._near_table()
    assert table, "the one-edit table is built"
    assert not set(table) & emails.KNOWN_DOMAINS
    assert all(variant[0] == target[0] for variant, target in table.items())
    assert set(table.values()) <= set(emails.NEAR_TARGETS)


def test_disposable_list_is_loaded_from_the_committed_file() -> None:
    exact, wildcards = emails._disposable_domains()
    assert len(exact) > 100_000 and "yopmail.com" in exact and "33mail.com" in wildcards
    big = {"gmail.com", "orange.fr", "free.fr", "sfr.fr", "laposte.net", "hotmail.fr"}
    assert not big & exact
    header = gzip.decompress(emails.DATA.read_bytes()).decode("utf-8").splitlines()[:3]
    assert "disposable-email-domains" in header[0] and "sha512-" in header[2]


def test_flags_are_declared() -> None:
    codes = [f.code for f in emails.FLAGS]
    assert len(codes) == len(set(codes)) and all(f.field == "email" for f in emails.FLAGS)


def _reference(address: str) -> tuple[str, str, str, str] | None:
    try:
        r = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return None
    return r.normalized, r.local_part, r.domain, r.ascii_domain


_ATEXT = st.sampled_from(list("abcXYZ019_-+=!#$%&'*/?^`{|}~.@ é"))
_DOMAIN = st.sampled_from(["gmail.com", "ORANGE.fr", "x.local", "bücher.ch", "a-.fr", "b.c", ""])


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.emails(),
        st.text(max_size=40),
        st.tuples(st.text(_ATEXT, max_size=70), _DOMAIN).map("@".join),
    )
)
def test_fast_path_agrees_with_email_validator(address: str) -> None:
    """The ASCII fast path gives exactly email-validator's answer."""
    fast = emails._validate(address)
    assert (None if isinstance(fast, str) else fast) == _reference(address)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.emails(), st.emails().map(str.upper)))
def test_never_raises_keeps_the_original_and_is_idempotent(text: str) -> None:
    result = normalize_email(text)
    assert result.original == text
    assert all(code in {f.code for f in emails.FLAGS} for code in result.flags)
    if result.value is not None:
        again = normalize_email(result.value)
        assert again.value == result.value
        assert not set(again.flags) & FIXED
        assert again.match_key == result.match_key


def test_long_and_odd_inputs() -> None:
    for text in ("a" * 10_000, "@" * 10_000, "\x00@\x00.fr", "😀@😀.fr", "a@" + "b." * 200 + "fr"):
        result = normalize_email(text)
        assert result.value is None and result.flags == INVALID
