"""E-mail addresses: syntax, domain typos, role and disposable addresses, a match key.

The syntax is email-validator's (RFC 5321/5322 with SMTPUTF8, no quoted local parts, no IP
literals, no special-use domains such as ``.local``), without any DNS query. Before checking,
the text is trimmed (also the spaces around the @-sign and a leading ``mailto:``) and the domain
is lowercased; the local part keeps its case in ``value`` (mail servers may tell case apart)
and is lowercased in ``match_key``.

Domain typos of the big French and international providers are corrected (``gmial.com`` ->
``gmail.com``) with the address as typed kept in ``corrected_from``: an explicit table, then
TLD typos (``.con`` -> ``.com``, ``.fe`` -> ``.fr``), then a guarded one-edit rule against the
big providers' exact domains (see :func:`_near_provider`). Role addresses (``contact@``) and
disposable domains (``yopmail.com``; list built by ``scripts/build_disposable_domains.py``) are
flagged, not rejected.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from tournesol.quality.base import Flag, Severity, blank

FLAGS: tuple[Flag, ...] = (
    Flag(
        "EMAIL_INVALID",
        "email",
        Severity.INVALID,
        "Not a valid e-mail address (syntax, or a domain that cannot receive mail).",
    ),
    Flag(
        "EMAIL_TYPO_FIXED",
        "email",
        Severity.FIXED,
        "A typo in the domain of a big mail provider was corrected (gmial.com -> gmail.com).",
    ),
    Flag(
        "EMAIL_ROLE",
        "email",
        Severity.WARNING,
        "A role address (contact@, info@, noreply@...) rather than a person's mailbox.",
    ),
    Flag(
        "EMAIL_DISPOSABLE",
        "email",
        Severity.WARNING,
        "The domain hands out disposable addresses (yopmail.com, mailinator.com...).",
    ),
)

DATA = Path(__file__).with_name("data") / "disposable_domains.txt.gz"

# Correct domain -> typos seen in customer files. A typo is never itself a real mailbox
# domain: laposte.fr is La Poste's corporate domain, the mailbox service is laposte.net. A
# provider's bare name ("jean@gmail") is completed only for a provider with one domain.
TYPOS: dict[str, tuple[str, ...]] = {
    "gmail.com": (
        "gmial.com", "gmal.com", "gmai.com", "gmil.com", "gamil.com", "gmaill.com",
        "gmali.com", "gnail.com", "gmsil.com", "gmaul.com", "gmail.co", "gmail.cm",
        "gmail.om", "gmail.fr", "gmail", "gmailcom", "gmail.com.com", "gmaim.com",
    ),
    "googlemail.com": ("googlemail.co", "googlemail.fr", "googlmail.com"),
    "hotmail.fr": (
        "hotmial.fr", "hotmai.fr", "hotmal.fr", "hotmil.fr", "hotamil.fr", "homail.fr",
        "hotmaill.fr", "hotmali.fr", "htomail.fr", "hotmail.f", "hotmailfr",
    ),
    "hotmail.com": (
        "hotmial.com", "hotmai.com", "hotmal.com", "hotmil.com", "hotamil.com", "homail.com",
        "hotmaill.com", "hotmail.co", "hotmail.cm", "hotmailcom",
    ),
    "outlook.fr": ("outlok.fr", "outloo.fr", "outook.fr", "outlouk.fr", "outllok.fr"),
    "outlook.com": ("outlok.com", "outloo.com", "outook.com", "outlouk.com", "outlook.co"),
    "live.fr": ("live.f", "livefr"),
    "yahoo.fr": ("yahooo.fr", "yaho.fr", "yahou.fr", "yhaoo.fr", "yaoo.fr", "yhoo.fr"),
    "yahoo.com": ("yahooo.com", "yaho.com", "yhaoo.com", "yhoo.com"),
    "orange.fr": (
        "orage.fr", "oragne.fr", "ornage.fr", "orang.fr", "ornge.fr", "orangefr", "orange",
    ),
    "wanadoo.fr": (
        "wanado.fr", "wanadoo.com", "wandoo.fr", "wanadou.fr", "wanaddo.fr", "wannadoo.fr",
        "wanadoo.f", "wanadoo",
    ),
    "free.fr": ("fre.fr", "freee.fr", "frre.fr", "free.f", "freefr", "free"),
    "sfr.fr": ("sfr.f", "sfrfr", "sfr"),
    "neuf.fr": ("neuf.f", "neuf"),
    "laposte.net": (
        "laposte.fr", "laposte.ne", "lapost.net", "laposte.nt", "lapose.net", "lapote.net",
        "la-poste.net", "laposte.com", "laposte",
    ),
    "icloud.com": ("iclou.com", "iclod.com", "icould.com", "icoud.com", "iclould.com",
                   "icloud.fr", "icloud.co", "icloud"),
    "bbox.fr": ("bbox.f", "bboxfr", "bbox"),
    "aol.com": ("aol.co", "aol.cm"),
}  # fmt: skip
_TYPO_TO_DOMAIN = {typo: good for good, typos in TYPOS.items() for typo in typos}

# Top-level domains that do not exist, and the one that was meant (.co, .cm, .om, .ne are
# real TLDs: only the explicit table above corrects them, for named providers).
TLD_TYPOS = {
    "con": "com", "cmo": "com", "comm": "com", "vom": "com", "xom": "com", "cpm": "com",
    "ocm": "com", "coom": "com", "fe": "fr", "frr": "fr", "ffr": "fr", "rf": "fr",
    "nett": "net", "nte": "net", "ner": "net",
}  # fmt: skip

# The big providers' exact domains, the targets of the one-edit rule.
NEAR_TARGETS = (
    "gmail.com", "googlemail.com", "hotmail.fr", "hotmail.com", "outlook.fr", "outlook.com",
    "yahoo.fr", "yahoo.com", "orange.fr", "wanadoo.fr", "laposte.net", "icloud.com",
)  # fmt: skip
# Real mailbox domains, never "corrected" (whatever they are close to).
OTHER_MAIL_DOMAINS = (
    "live.com", "msn.com", "me.com", "mac.com", "aol.fr", "gmx.fr", "gmx.com", "gmx.de",
    "gmx.net", "mail.com", "email.com", "ymail.com", "rocketmail.com", "numericable.fr",
    "club-internet.fr", "voila.fr", "aliceadsl.fr", "cegetel.net", "noos.fr", "orange.com",
    "sfr.com", "protonmail.com", "proton.me", "pm.me", "fastmail.com", "outlook.be",
    "hotmail.be", "hotmail.co.uk", "yahoo.co.uk", "hotmail.it", "hotmail.de", "hotmail.es",
    "yahoo.es", "yahoo.de", "yahoo.it", "orange.be", "live.be", "live.co.uk", "mailo.com",
    "lycos.fr", "caramail.com",
)  # fmt: skip
KNOWN_DOMAINS = frozenset((*TYPOS, *OTHER_MAIL_DOMAINS))

# Providers that deliver local+tag@ to local@ (sub-addressing), so the tag is left out of the
# match key. Yahoo (which uses "-" aliases), Orange, Free, SFR, La Poste: not known to, kept.
PLUS_ADDRESSING = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "outlook.fr", "hotmail.com",
        "hotmail.fr", "live.com", "live.fr", "msn.com", "icloud.com", "me.com", "mac.com",
        "fastmail.com", "fastmail.fm", "protonmail.com", "protonmail.ch", "proton.me", "pm.me",
    }
)  # fmt: skip
DOTS_IGNORED = frozenset({"gmail.com"})  # Gmail ignores dots in the local part
DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}  # the same mailboxes

# Role local parts (compared lowercased, without +tag, with "-" and "_" read as ".").
ROLE_LOCAL_PARTS = frozenset(
    {
        "contact", "contacts", "info", "infos", "information", "informations", "admin",
        "administration", "administrateur", "noreply", "no.reply", "donotreply",
        "do.not.reply", "ne.pas.repondre", "nepasrepondre", "postmaster", "hostmaster",
        "webmaster", "abuse", "support", "help", "helpdesk", "sales", "vente", "ventes",
        "commercial", "commerciale", "compta", "comptabilite", "facturation", "factures",
        "billing", "accounting", "accueil", "reception", "service.client", "serviceclient",
        "service.clients", "relation.client", "sav", "rh", "drh", "recrutement", "jobs",
        "emploi", "direction", "secretariat", "secretary", "office", "bureau", "mairie",
        "marketing", "communication", "presse", "press", "newsletter", "hello", "bonjour",
        "team", "equipe", "root", "security", "legal", "juridique", "dpo", "rgpd", "privacy",
        "commande", "commandes", "orders", "boutique", "magasin", "shop", "devis",
    }
)  # fmt: skip

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_AROUND_AT = re.compile(r"\s*@\s*")
_DOT_RUNS = re.compile(r"[.,]*,[.,]*|\.{2,}")
# RFC 5322 dot-atom, ASCII: what email-validator accepts as an unquoted ASCII local part.
_DOT_ATOM = re.compile(r"[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+)*\Z")
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_MAX_LENGTH = 254  # RFC 5321 path limit, in UTF-8 octets
_MAX_LOCAL = 64
_TOO_LONG = 512  # longer texts are not read at all


@dataclass(frozen=True, slots=True)
class EmailResult:
    """One e-mail address, checked.

    ``value``: the address with its domain normalized (None when invalid); ``match_key``: the
    lowercased address with provider aliases removed, for identity resolution;
    ``corrected_from``: the address before a typo fix; ``domain``: the normalized domain;
    ``reason``: why an invalid address is invalid.
    """

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    match_key: str | None = None
    corrected_from: str | None = None
    domain: str | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


def normalize_email(text: str | None) -> EmailResult:
    """Check and normalize one e-mail address; never raises.

    Takes the address as found in a file (or None). Returns an :class:`EmailResult`: blank ->
    no value and no flag; invalid -> ``value`` None and ``EMAIL_INVALID`` with the reason.

    >>> r = normalize_email(" mailto:Jean.Dupont+promo @GMIAL.com ")
    >>> r.value, r.flags, r.corrected_from
    ('Jean.Dupont+promo@gmail.com', ('EMAIL_TYPO_FIXED',), 'Jean.Dupont+promo@gmial.com')
    >>> r.match_key
    'jeandupont@gmail.com'
    """
    if blank(text):
        return EmailResult(text, None)
    assert text is not None
    address = _clean(str(text))
    if len(address) > _TOO_LONG:
        return _invalid(text, "The email address is too long.")
    local, at, domain = address.rpartition("@")
    fixed = _fix_domain(domain.lower()) if at else None
    corrected_from = None
    if fixed is not None:
        corrected_from = f"{local}@{domain.lower()}"
        address = f"{local}@{fixed}"
    checked = _validate(address)
    if isinstance(checked, str):
        return _invalid(text, checked)
    value, local_part, domain_name, ascii_domain = checked
    flags: list[str] = []
    if corrected_from is not None:
        flags.append("EMAIL_TYPO_FIXED")
    if _is_role(local_part):
        flags.append("EMAIL_ROLE")
    if _is_disposable(domain_name, ascii_domain):
        flags.append("EMAIL_DISPOSABLE")
    return EmailResult(
        text,  # original
        value,
        tuple(sorted(flags)),
        match_key(local_part, domain_name),
        corrected_from,
        domain_name,  # domain
    )


def match_key(local_part: str, domain: str) -> str:
    """The key two addresses of one mailbox share: lowercased, ``googlemail.com`` read as
    ``gmail.com``, the ``+tag`` dropped where the provider ignores it, dots dropped for Gmail.

    >>> match_key("Jean.Dupont+news", "googlemail.com")
    'jeandupont@gmail.com'
    """
    local, domain = local_part.lower(), domain.lower()
    domain = DOMAIN_ALIASES.get(domain, domain)
    if domain in PLUS_ADDRESSING:
        local = local.split("+", 1)[0] or local
    if domain in DOTS_IGNORED:
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


def _invalid(text: str, reason: str) -> EmailResult:
    return EmailResult(text, None, ("EMAIL_INVALID",), reason=reason)


def _clean(text: str) -> str:
    address = (text if text.isascii() else _ZERO_WIDTH.sub("", text)).strip()
    if address[:7].lower() == "mailto:":
        address = address[7:].split("?", 1)[0].strip()
    if address.isascii() and address.isprintable() and " " not in address:
        return address  # no whitespace at all (ASCII whitespace is a space or unprintable)
    return _AROUND_AT.sub("@", address)


@lru_cache(maxsize=4096)
def _fix_domain(domain: str) -> str | None:
    """The corrected domain when ``domain`` (lowercased) is a known typo, else None."""
    fixed = _DOT_RUNS.sub(".", domain).strip(".")
    head, dot, tld = fixed.rpartition(".")
    if dot and tld in TLD_TYPOS:
        fixed = f"{head}.{TLD_TYPOS[tld]}"
    fixed = _TYPO_TO_DOMAIN.get(fixed, fixed)
    if fixed not in KNOWN_DOMAINS:
        fixed = _near_provider(fixed) or fixed
    return fixed if fixed != domain else None


def _near_provider(domain: str) -> str | None:
    """The big provider's domain that ``domain`` is one edit away from, under guard: same
    TLD, same first letter, the provider's name at least 5 letters, only one provider that
    close, and ``domain`` not a known real mail domain (``ymail.com``, ``email.com``...)."""
    return _near_table().get(domain)


@cache
def _near_table() -> dict[str, str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    found: dict[str, set[str]] = {}
    for target in NEAR_TARGETS:
        name, _, tld = target.partition(".")
        if len(name) < 5:
            continue
        for variant in _one_edit(name, alphabet):
            if variant and variant[0] == name[0] and variant != name:
                found.setdefault(f"{variant}.{tld}", set()).add(target)
    return {
        domain: next(iter(targets))
        for domain, targets in found.items()
        if len(targets) == 1 and domain not in KNOWN_DOMAINS
    }


def _one_edit(word: str, alphabet: str) -> set[str]:
    """Every string one deletion, insertion, substitution or adjacent swap from ``word``."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in alphabet}
    inserts = {a + c + b for a, b in splits for c in alphabet}
    return deletes | swaps | replaces | inserts


def _validate(address: str) -> tuple[str, str, str, str] | str:
    """(normalized address, local part, domain, ASCII domain), or why the address is invalid.

    The common case (an ASCII dot-atom local part) is checked here and the domain once per
    distinct domain by email-validator; anything else goes through email-validator whole.
    Both paths give the same answer (tests/unit/quality/test_emails.py checks it)."""
    local, at, domain = address.partition("@")
    if at and len(local) <= _MAX_LOCAL and _DOT_ATOM.match(local):
        checked = _check_domain(domain)
        if checked is not None:
            name, ascii_name, domain_octets = checked
            # the dot-atom is ASCII: one octet per character
            if len(local) + 1 + domain_octets <= _MAX_LENGTH:
                if local.lower() in _CASE_INSENSITIVE:
                    local = local.lower()
                return f"{local}@{name}", local, name, ascii_name
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return result.normalized, result.local_part, result.domain, result.ascii_domain


@lru_cache(maxsize=4096)
def _check_domain(domain: str) -> tuple[str, str, int] | None:
    """(normalized, ASCII) form of a domain email-validator accepts and the UTF-8 length of
    the longest of the three forms, else None."""
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    forms = (domain, result.domain, result.ascii_domain)
    return result.domain, result.ascii_domain, max(len(d.encode()) for d in forms)


def _is_role(local_part: str) -> bool:
    local = local_part.lower().split("+", 1)[0].replace("-", ".").replace("_", ".")
    return local in ROLE_LOCAL_PARTS


@lru_cache(maxsize=4096)
def _is_disposable(domain: str, ascii_domain: str) -> bool:
    exact, wildcards = _disposable_domains()
    if domain in exact or ascii_domain in exact:
        return True
    labels = ascii_domain.split(".")
    return any(".".join(labels[i:]) in wildcards for i in range(len(labels) - 1))


@cache
def _disposable_domains() -> tuple[frozenset[str], frozenset[str]]:
    """(exact domains, domains whose every subdomain is disposable), read once."""
    exact: set[str] = set()
    wildcards: set[str] = set()
    with gzip.open(DATA, "rt", encoding="utf-8") as lines:
        for line in lines:
            domain = line.strip()
            if not domain or domain.startswith("#"):
                continue
            if domain.startswith("*."):
                wildcards.add(domain[2:])
            else:
                exact.add(domain)
    return frozenset(exact), frozenset(wildcards)
