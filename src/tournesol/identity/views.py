"""The review queue: grey-zone pairs of records side by side with their evidence, accepted
(merged now) or rejected (never merged) by a person holding ``identity:review``.

Showing a pair reads two persons' data: each page view writes one ``review.read`` audit row
per customer shown; each decision one ``review.accept`` or ``review.reject`` row."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.identity import service
from tournesol.identity.models import MatchReview
from tournesol.web.deps import SessionDep, render, require

router = APIRouter(include_in_schema=False)

Reviewer = Annotated[Principal, Depends(require(rules.IDENTITY_REVIEW))]
PAGE = 20
# The profile fields shown side by side, in this order.
SHOWN = (
    "first_name",
    "last_name",
    "maiden_name",
    "gender",
    "birth_date",
    "email",
    "phone_mobile",
    "phone_fixed",
    "street",
    "postal_code",
    "city",
    "loyalty_card",
    "account_id",
    "siret",
    "work_email",
    "work_phone",
)


def actor_of(principal: Principal) -> str:
    """How a web user is named in merge events and decisions."""
    return f"web:{principal.name}"[:100]


def _audit_shown(session: Session, who: Principal, items: list[service.ReviewItem]) -> None:
    seen: set[int] = set()
    for item in items:
        for side in (item.left, item.right):
            cid = side.get("customer_id")
            if cid is not None and cid not in seen:
                seen.add(cid)
                auth_service.audit(
                    session,
                    principal=who,
                    action="review.read",
                    customer_id=int(cid),
                    details={"review_id": item.review.id},
                )


@router.get("/identity/review")
def review_page(
    request: Request, session: SessionDep, who: Reviewer, done: str | None = None
) -> Response:
    items = service.review_queue(session, limit=PAGE)
    total = service.count_reviews(session)
    _audit_shown(session, who, items)
    session.commit()
    return render(
        request,
        "identity/review.html",
        {
            "nav": "review",
            "items": items,
            "total": total,
            "shown": SHOWN,
            "done": done,
        },
    )


def _item(session: Session, review_id: int) -> service.ReviewItem:
    review = session.get(MatchReview, review_id)
    if review is None:
        raise HTTPException(404, f"there is no review {review_id}")
    try:
        return service.ReviewItem(
            review,
            service.profile_of(session, review.record_a_id),
            service.profile_of(session, review.record_b_id),
        )
    except service.IdentityError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/identity/review/{review_id}/evidence")
def evidence(request: Request, session: SessionDep, who: Reviewer, review_id: int) -> Response:
    """The model's weight per comparison, the deterministic rule and the conflict guard: a
    fragment for htmx, or a page of its own without JavaScript."""
    item = _item(session, review_id)
    explanation = service.explain(
        session, str(item.review.record_a_id), str(item.review.record_b_id)
    )
    template = "identity/_evidence.html" if request.headers.get("hx-request") else None
    if template:
        return render(request, template, {"item": item, "explanation": explanation})
    _audit_shown(session, who, [item])
    session.commit()
    return render(
        request,
        "identity/evidence.html",
        {"nav": "review", "item": item, "explanation": explanation, "shown": SHOWN},
    )


@router.post("/identity/review/{review_id}")
def decide(
    request: Request,
    session: SessionDep,
    who: Reviewer,
    review_id: int,
    decision: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
) -> Response:
    """Accept or reject; htmx gets the item's replacement, a plain form a redirect."""
    if decision not in ("accept", "reject"):
        raise HTTPException(400, "decision must be accept or reject")
    item = _item(session, review_id)
    try:
        outcome = service.decide_review(
            session,
            review_id,
            accept=decision == "accept",
            actor=actor_of(who),
            note=note.strip()[:1000] or None,
        )
    except service.IdentityError as exc:
        session.rollback()
        raise HTTPException(409, str(exc)) from None
    auth_service.audit(
        session,
        principal=who,
        action=f"review.{decision}",
        customer_id=item.left.get("customer_id"),
        reason=note,
        details={
            "review_id": review_id,
            "records": [item.review.record_a_id, item.review.record_b_id],
            "customers": [item.left.get("customer_id"), item.right.get("customer_id")],
        },
    )
    session.commit()
    if request.headers.get("hx-request"):
        now = service.profile_of(session, item.review.record_a_id).get("customer_id")
        return render(
            request,
            "identity/_decided.html",
            {
                "item": item,
                "decision": decision,
                "outcome": outcome,
                "customer_id": now,
                "remaining": service.count_reviews(session),
            },
        )
    return RedirectResponse(f"/identity/review?done={decision}", status_code=303)
