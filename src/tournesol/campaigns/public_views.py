"""Public routes reached from messages, without sign-in: the open pixel, click redirects, the
unsubscribe page and RFC 8058 one-click unsubscribe, the preference center, and the SMS
provider's callbacks (delivery reports, incoming replies).

Every route acts on what its signed token names (``channels.links``) and nothing else: a token
carries ids, never an address, and the pages show masked contact points only. The customer
acts on their own data here: no staff audit row is written. Pages are in the customer's
language (French or English), else the browser's; they set no cookie, are never cached and
send no Referer (the token is in the URL). The pixel answers its image and a click its
redirect even when the database cannot record them: a mail client never shows an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from tournesol.campaigns import feedback, setup
from tournesol.channels import sms
from tournesol.channels.base import Key
from tournesol.channels.links import BadLink, LinkSigner, Subscription
from tournesol.consent.rules import ConsentRuleError
from tournesol.db import utcnow
from tournesol.reporting import hygiene
from tournesol.web.deps import SessionDep
from tournesol.web.i18n import LANGUAGES, best_language, translations

router = APIRouter(include_in_schema=False)
log = logging.getLogger("tournesol.campaigns.public")

PIXEL: Final = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
"""A transparent 1x1 GIF (43 bytes)."""
ONE_CLICK: Final = ("List-Unsubscribe", "One-Click")
FREQUENCIES: Final = (1, 2, 3, 5, 7)
"""The weekly maxima the preference center offers (besides no maximum)."""
_PRIVATE: Final = {
    "Cache-Control": "no-store, private",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
_TWIML_EMPTY: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@dataclass(frozen=True, slots=True)
class _Links:
    signer: LinkSigner
    form_key: bytes


def _links(request: Request) -> _Links:
    """The link signer and the key of the pages' form tokens, made once per application."""
    links: _Links | None = getattr(request.app.state, "public_links", None)
    if links is None:
        settings = request.app.state.settings
        newest = setup.link_secrets(settings)[-1]
        form_key = hashlib.sha256(f"tournesol.public.form:{newest}".encode()).digest()
        links = _Links(setup.link_signer(settings), form_key)
        request.app.state.public_links = links
    return links


def form_token(request: Request, token: str) -> str:
    """The CSRF token of the forms of a link's page: an HMAC of the link token (the pages
    have no session to keep one in; a third party without the link cannot make it)."""
    digest = hmac.new(_links(request).form_key, token.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _form_ok(request: Request, token: str, form: FormData) -> bool:
    given = form.get("csrf_token")
    return isinstance(given, str) and hmac.compare_digest(given, form_token(request, token))


def _proof(request: Request) -> dict[str, str]:
    """What the consent proof keeps of a request: the user agent and a keyed hash of the
    client's address (never the address itself)."""
    proof = {"user_agent": request.headers.get("user-agent", "")[:300]}
    if request.client is not None and request.client.host:
        key = _links(request).form_key
        proof["ip_hash"] = hmac.new(key, request.client.host.encode(), hashlib.sha256).hexdigest()
    return proof


def _id(value: Key) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _language(request: Request, preferred: str | None) -> str:
    """The customer's language when the pages have it, else the browser's."""
    if preferred:
        base = preferred.strip().lower().replace("_", "-").split("-", 1)[0]
        if base in LANGUAGES:
            return base
    return best_language(request.headers.get("accept-language"))


def _page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    language: str,
    status: int = 200,
) -> HTMLResponse:
    """A public page in ``language``: no session, no cookie, not cached, no Referer."""
    tr = translations(language)
    values: dict[str, Any] = {
        "request": request,
        "lang": language,
        "_": tr.gettext,
        "gettext": tr.gettext,
        "ngettext": tr.ngettext,
    }
    values.update(context)
    response: HTMLResponse = request.app.state.templates.TemplateResponse(
        request, template, values, status_code=status
    )
    response.headers.update(_PRIVATE)
    return response


def _notice(request: Request, kind: str, status: int, language: str | None = None) -> HTMLResponse:
    """One of the short pages that explain why nothing happened (``damaged``, ``gone``,
    ``expired``)."""
    return _page(
        request,
        "public/notice.html",
        {"kind": kind},
        language=language or _language(request, None),
        status=status,
    )


def _rollback(session: Session, what: str, exc: Exception) -> None:
    session.rollback()
    log.warning("%s not recorded (%s)", what, type(exc).__name__)


# --- opens and clicks ------------------------------------------------------------------------


def _signals(request: Request) -> hygiene.Signals:
    """What engagement hygiene reads of a request: its user agent (``""`` when it sent none),
    its method, and whether it came from a privacy proxy's network, decided here from the
    client's address, which goes no further (never stored, never logged)."""
    host = request.client.host if request.client is not None else None
    return hygiene.Signals(
        user_agent=request.headers.get("user-agent", ""),
        method=request.method,
        privacy_proxy=hygiene.privacy_proxy(host),
    )


@router.get("/t/o/{token}.gif")
def open_pixel(request: Request, session: SessionDep, token: str) -> Response:
    """The open pixel: records the open (flagged when a machine loaded it: a privacy or
    image proxy, a bot, a prefetch), answers a transparent GIF whatever the token (a mail
    client never shows a broken image)."""
    try:
        outbox_id = _id(_links(request).signer.read_open(token))
    except (BadLink, setup.SetupError):
        outbox_id = None
    if outbox_id is not None:
        try:
            feedback.record_open(
                session, outbox_id=outbox_id, at=utcnow(), signals=_signals(request)
            )
            session.commit()
        except SQLAlchemyError as exc:
            _rollback(session, "open", exc)
    return Response(PIXEL, media_type="image/gif", headers=_PRIVATE)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
def click(request: Request, session: SessionDep, token: str) -> Response:
    """A tracked link: records the click (flagged when a bot is suspected), redirects (302)
    to the URL signed in the token and nowhere else; a damaged token gets a page that says
    so (400). A HEAD, what link scanners send, is recorded as a flagged click and answered
    the same way: the redirect names the target, nothing here fetches it."""
    try:
        link = _links(request).signer.read_click(token)
    except BadLink:
        return _notice(request, "damaged", 400)
    outbox_id = _id(link.outbox_id)
    if outbox_id is not None:
        try:
            feedback.record_click(
                session,
                outbox_id=outbox_id,
                index=link.index,
                url=link.url,
                at=utcnow(),
                signals=_signals(request),
            )
            session.commit()
        except SQLAlchemyError as exc:
            _rollback(session, "click", exc)
    return RedirectResponse(link.url, status_code=302, headers={"Cache-Control": "no-store"})


# --- unsubscribe -----------------------------------------------------------------------------


def _read_unsubscribe(request: Request, token: str) -> Subscription | None:
    try:
        return _links(request).signer.read_unsubscribe(token)
    except BadLink:
        return None


def _unsubscribe_page(
    request: Request, session: Session, token: str, subscription: Subscription, *, done: bool
) -> HTMLResponse:
    try:
        view = feedback.preference_view(session, subscription)
    except feedback.UnknownSubscriber:
        return _notice(request, "gone", 410)
    choice = view.choice(subscription.channel)
    preferences = _links(request).signer.make_preferences(subscription)
    return _page(
        request,
        "public/unsubscribe.html",
        {
            "token": token,
            "form_token": form_token(request, token),
            "brand_name": view.brand_name,
            "channel": subscription.channel,
            "contact": choice.contact if choice is not None else None,
            "done": done,
            "preferences_url": f"/p/{preferences}",
        },
        language=_language(request, view.language),
    )


@router.get("/u/{token}")
def unsubscribe_page(request: Request, session: SessionDep, token: str) -> Response:
    """The unsubscribe page: asks, with a button. Following the link changes nothing (mail
    scanners follow links)."""
    subscription = _read_unsubscribe(request, token)
    if subscription is None:
        return _notice(request, "damaged", 400)
    return _unsubscribe_page(request, session, token, subscription, done=False)


@router.post("/u/{token}")
async def unsubscribe(request: Request, session: SessionDep, token: str) -> Response:
    """Unsubscribe: the RFC 8058 one-click POST of a mail client (body
    ``List-Unsubscribe=One-Click``, answered in plain text) or the page's form (its form
    token checked; answered with a confirmation and a link to the preference center)."""
    subscription = _read_unsubscribe(request, token)
    if subscription is None:
        return _notice(request, "damaged", 400)
    form = await request.form()
    one_click = form.get(ONE_CLICK[0]) == ONE_CLICK[1]
    if not one_click and not _form_ok(request, token, form):
        return _notice(request, "expired", 403)
    proof = _proof(request)
    method = "one_click" if one_click else "link"

    def work() -> Response:
        feedback.unsubscribe(session, subscription, at=utcnow(), method=method, proof=proof)
        session.commit()
        if one_click:
            return PlainTextResponse("unsubscribed\n", headers=_PRIVATE)
        return _unsubscribe_page(request, session, token, subscription, done=True)

    return await run_in_threadpool(work)


# --- preference center -----------------------------------------------------------------------


def _read_preferences(request: Request, token: str) -> Subscription | None:
    try:
        return _links(request).signer.read_preferences(token)
    except BadLink:
        return None


def _preferences_page(
    request: Request,
    session: Session,
    token: str,
    subscription: Subscription,
    *,
    saved: list[str] | None = None,
    error: str | None = None,
) -> HTMLResponse:
    try:
        view = feedback.preference_view(session, subscription)
    except feedback.UnknownSubscriber:
        return _notice(request, "gone", 410)
    return _page(
        request,
        "public/preferences.html",
        {
            "token": token,
            "form_token": form_token(request, token),
            "view": view,
            "brand_name": view.brand_name,
            "saved": saved,
            "error": error,
            "languages": LANGUAGES,
            # the customer's own maximum stays on offer, whatever it is
            "frequencies": sorted(
                {*FREQUENCIES} | ({view.max_per_week} if view.max_per_week is not None else set())
            ),
        },
        language=_language(request, view.language),
        status=400 if error else 200,
    )


@router.get("/p/{token}")
def preferences_page(request: Request, session: SessionDep, token: str) -> Response:
    """The preference center: the customer's consents per channel for the brand, language
    and weekly maximum, with a form to change them (works without JavaScript)."""
    subscription = _read_preferences(request, token)
    if subscription is None:
        return _notice(request, "damaged", 400)
    return _preferences_page(request, session, token, subscription)


@router.post("/p/{token}")
async def save_preferences(request: Request, session: SessionDep, token: str) -> Response:
    """Save the preference center's form (``channel_<name>`` = yes/no, ``language``,
    ``max_per_week``) and show the page again with what changed."""
    subscription = _read_preferences(request, token)
    if subscription is None:
        return _notice(request, "damaged", 400)
    form = await request.form()
    if not _form_ok(request, token, form):
        return _notice(request, "expired", 403)
    channels = {
        channel: form.get(f"channel_{channel}") == "yes"
        for channel in feedback.PREFERENCE_CHANNELS
        if form.get(f"channel_{channel}") in ("yes", "no")
    }
    language = str(form.get("language") or "").strip() or None
    cap_text = str(form.get("max_per_week") or "").strip()
    proof = _proof(request)

    def work() -> Response:
        if language is not None and language not in LANGUAGES:
            return _preferences_page(request, session, token, subscription, error="language")
        if cap_text and not cap_text.isdigit():
            return _preferences_page(request, session, token, subscription, error="max_per_week")
        try:
            changes = feedback.update_preferences(
                session,
                subscription,
                channels=channels,
                language=language,
                max_per_week=int(cap_text) if cap_text else None,
                at=utcnow(),
                proof=proof,
            )
        except feedback.UnknownSubscriber:
            return _notice(request, "gone", 410)
        except ConsentRuleError as exc:
            session.rollback()
            return _preferences_page(request, session, token, subscription, error=exc.field)
        session.commit()
        return _preferences_page(request, session, token, subscription, saved=changes)

    return await run_in_threadpool(work)


# --- SMS provider callbacks ------------------------------------------------------------------


async def _signed_form(request: Request, path: str) -> dict[str, str] | None:
    """The callback's form fields when its ``X-Twilio-Signature`` matches (signed over the
    public URL of ``path`` with the SMS auth token), else None."""
    token = request.app.state.settings.sms_auth_token
    signature = request.headers.get("x-twilio-signature")
    if not token or not signature:
        if not token:
            log.warning("SMS callback refused: TOURNESOL_SMS_AUTH_TOKEN is not set")
        return None
    form = await request.form()
    fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    url = request.app.state.settings.public_url.rstrip("/") + path
    return fields if sms.valid_signature(url, fields, signature, token) else None


@router.post("/t/sms/status")
async def sms_status(request: Request, session: SessionDep) -> Response:
    """The SMS provider's delivery report: moves the message to delivered or failed. 403
    when the signature does not match, 400 when it is not a status callback."""
    fields = await _signed_form(request, "/t/sms/status")
    if fields is None:
        return PlainTextResponse("the signature does not match\n", status_code=403)
    try:
        sid, state = sms.parse_status_callback(fields)
    except ValueError:
        return PlainTextResponse("not a status callback\n", status_code=400)

    def work() -> None:
        feedback.sms_status(session, sid=sid, state=state, at=utcnow())
        session.commit()

    await run_in_threadpool(work)
    return Response(status_code=204)


@router.post("/t/sms/inbound")
async def sms_inbound(request: Request, session: SessionDep) -> Response:
    """An incoming SMS: a STOP reply unsubscribes its number. Answers empty TwiML (no reply
    is sent from here); 403 when the signature does not match."""
    fields = await _signed_form(request, "/t/sms/inbound")
    if fields is None:
        return PlainTextResponse("the signature does not match\n", status_code=403)
    sender = fields.get("From", "")
    body = fields.get("Body", "")

    def work() -> None:
        feedback.sms_inbound(session, from_number=sender, body=body, at=utcnow())
        session.commit()

    await run_in_threadpool(work)
    return Response(_TWIML_EMPTY, media_type="application/xml")
