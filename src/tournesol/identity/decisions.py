"""What to do with one scored pair of records: link, review, or nothing. Pure.

1. **Deterministic**: the two share a strong identifier (e-mail, mobile, loyalty card, e-shop
   account, a work e-mail or phone found among the other's) and nothing conflicts: link,
   whatever the model says.
2. **Probabilistic**: match probability at or above the upper threshold, no conflict, and not
   *uncorroborated*: two records that each carry an e-mail or a mobile and share none of them,
   with no birth date on one side to agree on, are the classic namesakes of one household (a
   mother and daughter at one address) and go to review instead.
3. **Review**: from the lower threshold up, or above the upper one when held back by rule 2 or
   by a conflict.
4. Below the lower threshold: nothing.

Conflicts (``features.conflict``) are checked again between whole groups when the links are
clustered (``clustering``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tournesol.identity import features
from tournesol.identity.splink_settings import LOWER_THRESHOLD, UPPER_THRESHOLD

Kind = Literal["link", "review", "none"]
# Below this probability the model says two records are two persons: a group holding such a
# pair is not joined (``clustering``' chaining guard).
DIFFERENT_BELOW = 0.02


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    rule: str  # deterministic, probabilistic, grey_zone, conflict, uncorroborated, none
    reason: str


def corroborated(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Something beyond name and address agrees, or nothing contradicts: both birth dates
    known (their compatibility is the conflict rule's business), one e-mail or mobile shared;
    otherwise both sides must not hold distinct e-mails (by user name) or distinct mobiles."""
    if a.get("birth_date") and b.get("birth_date"):
        return True
    email_a, email_b = a.get("email"), b.get("email")
    if email_a and email_a == email_b:
        return True
    mobile_a, mobile_b = a.get("phone_mobile"), b.get("phone_mobile")
    if mobile_a and mobile_a == mobile_b:
        return True
    if email_a and email_b and email_a.split("@")[0] != email_b.split("@")[0]:
        return False
    return not (mobile_a and mobile_b)


def decide(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    probability: float,
    *,
    upper: float = UPPER_THRESHOLD,
    lower: float = LOWER_THRESHOLD,
) -> Decision:
    rule = features.deterministic(a, b)
    if rule is not None:
        return Decision("link", "deterministic", rule)
    verdict = features.conflict(a, b)
    if probability >= upper:
        if verdict.conflict:
            return Decision("review", "conflict", f"p={probability:.3f} but {verdict.reason}")
        if not corroborated(a, b):
            return Decision(
                "review",
                "uncorroborated",
                f"p={probability:.3f} on name and address only; e-mails or mobiles differ",
            )
        return Decision("link", "probabilistic", f"match probability {probability:.4f}")
    if probability >= lower:
        note = f"; {verdict.reason}" if verdict.conflict else ""
        return Decision("review", "grey_zone", f"match probability {probability:.3f}{note}")
    return Decision("none", "none", f"match probability {probability:.3f}")
