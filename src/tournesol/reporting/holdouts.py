"""The global holdout: a persistent control group that receives no marketing at all, to
measure what the whole programme (every campaign and journey together) causes.

- **Versions.** :func:`regenerate` starts a new version with a share (1 % to 15 %, 5 % by
  default) and a new random salt, and ends the previous one; nothing else ever changes the
  group. Each version keeps its assignments, for the reports of its period.
- **Units.** People who share a household or an e-mail address are drawn together, so that
  a letter to the household or a message to the shared address never reaches the control
  half of it: the unit is the postal address when there is one (the household), else the
  e-mail address, else the customer alone (:func:`unit_of`). The draw is
  ``control_bucket(unit, salt) < share`` (campaigns.rules): stable, independent of anything
  else.
- **Stored.** :func:`assign` writes every active customer's arm with its date, once per
  version: a customer keeps their arm for the version's life, whatever changes on their
  record. A customer not stored yet (created since) is drawn by the same rule when a plan or
  the gate meets them (:func:`holdout_of`), and stored at the next :func:`assign`.
- **Exempt.** Only marketing is held back: the purposes exempt from marketing pressure
  (``transactional`` by default) go to everyone. The plan records each held-out customer as
  a control row of the campaign (reason ``global_holdout``) with the time the message would
  have been sent; the dispatch gate answers ``suppressed`` (``global_holdout``), which the
  journey logs with its time.

Functions take the session and never commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from tournesol.campaigns.rules import control_bucket
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Customer
from tournesol.db import Dialect, chunked
from tournesol.reporting.models import HoldoutAssignment, HoldoutGroup

DEFAULT_SHARE: Final = 0.05
MIN_SHARE: Final = 0.01
MAX_SHARE: Final = 0.15
REASON: Final = "global_holdout"
_ASSIGNMENTS: Final = cast(Table, HoldoutAssignment.__table__)
_ADDRESS_LINES: Final = tuple(f"address_line{i}" for i in range(1, 7))


class HoldoutError(ValueError):
    """A share out of bounds, or no global holdout where one is needed."""


@dataclass(frozen=True, slots=True)
class Holdout:
    """The active version, as plans and the gate read it once."""

    id: int
    version: int
    share: float
    salt: str

    def draws(self, unit: str) -> bool:
        """Whether a unit (see :func:`unit_of`) is held out in this version: the same
        SHA-256 rule as a campaign's control group, with the version's salt."""
        return control_bucket(unit, self.salt) < self.share


def unit_of(customer_id: int, email: str | None, address: str | None) -> str:
    """The randomization unit: the household (its postal address, the lines joined by ``|``)
    when known, else the e-mail address, else the customer. Hashed: no personal data in the
    table.

    >>> unit_of(7, None, None)
    'customer:7'
    >>> unit_of(7, "Ana@Exemple.fr", None) == unit_of(8, "ana@exemple.fr ", None)
    True
    """
    if address:
        return "household:" + contact_hash("postal", address)[:40]
    if email:
        return "email:" + contact_hash("email", email)[:40]
    return f"customer:{customer_id}"


def address_of(lines: Sequence[str | None]) -> str | None:
    """The household's address from the six AFNOR lines, when it has a street or locality
    line and a postcode-town line (as the campaigns read it), else None."""
    if len(lines) != 6:
        raise ValueError("six address lines are expected")
    if (lines[3] or lines[4]) and lines[5]:
        return "|".join(line or "" for line in lines)
    return None


def active(session: Session) -> Holdout | None:
    """The current version, or None when no global holdout was ever generated."""
    row = session.scalars(
        select(HoldoutGroup).where(HoldoutGroup.ended_at.is_(None)).order_by(HoldoutGroup.id)
    ).first()
    if row is None:
        return None
    return Holdout(row.id, row.version, float(row.share), row.salt)


def regenerate(
    session: Session,
    *,
    now: datetime,
    actor: str,
    share: float = DEFAULT_SHARE,
    salt: str | None = None,
) -> tuple[Holdout, int]:
    """End the current version (if any), start a new one with ``share`` and a new salt
    (random unless given: tests), and store every active customer's arm. Returns the new
    version and the number of customers assigned."""
    if not MIN_SHARE <= share <= MAX_SHARE:
        raise HoldoutError(
            f"the global holdout's share must be between {MIN_SHARE:.0%} and {MAX_SHARE:.0%}"
            f" (got {share:.2%})"
        )
    session.execute(
        update(HoldoutGroup).where(HoldoutGroup.ended_at.is_(None)).values(ended_at=now)
    )
    version = (session.scalar(select(func.max(HoldoutGroup.version))) or 0) + 1
    row = HoldoutGroup(
        version=version,
        share=share,
        salt=salt or secrets.token_hex(16),
        created_at=now,
        created_by=actor[:200],
    )
    session.add(row)
    session.flush()
    holdout = Holdout(row.id, row.version, float(row.share), row.salt)
    return holdout, assign(session, holdout=holdout, now=now)


def assign(session: Session, *, holdout: Holdout | None = None, now: datetime) -> int:
    """Store the arm of every active customer who has none in the version (the active one by
    default), drawn by unit. Returns how many were stored."""
    holdout = holdout or active(session)
    if holdout is None:
        raise HoldoutError("no global holdout yet: run `tournesol holdout regenerate` first")
    dialect = Dialect.of(session)
    conn = session.connection()
    known = select(HoldoutAssignment.customer_id).where(HoldoutAssignment.group_id == holdout.id)
    c = cast(Table, Customer.__table__)
    query = (
        select(c.c.id, c.c.email, *(c.c[name] for name in _ADDRESS_LINES))
        .where(c.c.status == "active", c.c.id.not_in(known))
        .order_by(c.c.id)
    )
    stored = 0
    for part in conn.execute(query.execution_options(yield_per=20_000)).partitions():
        rows = []
        for customer_id, email, *lines in part:
            unit = unit_of(customer_id, email, address_of(lines))
            rows.append((holdout.id, customer_id, unit, holdout.draws(unit), now))
        dialect.copy_rows(
            conn, _ASSIGNMENTS, ("group_id", "customer_id", "unit", "held_out", "assigned_at"),
            rows,
        )  # fmt: skip
        stored += len(rows)
    return stored


def stored_arms(session: Session, holdout: Holdout, ids: Sequence[int]) -> dict[int, bool]:
    """The stored arms of these customers (sorted ids) in the version: held out or not."""
    dialect = Dialect.of(session)
    a = _ASSIGNMENTS
    found: dict[int, bool] = {}
    for part in chunked(list(ids), dialect.max_params - 10):
        rows = dialect.driver_rows(
            session.connection(),
            select(a.c.customer_id, a.c.held_out).where(
                a.c.group_id == holdout.id, dialect.around(a.c.customer_id, list(part))
            ),
        )
        found.update((customer_id, bool(held)) for customer_id, held in rows)
    return found


def holdout_of(
    holdout: Holdout,
    stored: Mapping[int, bool],
    customer_id: int,
    email: str | None,
    address: str | None,
) -> bool:
    """Whether a customer is held out: their stored arm, else the draw of their unit now."""
    found = stored.get(customer_id)
    if found is not None:
        return found
    return holdout.draws(unit_of(customer_id, email, address))


def summary(session: Session, holdout: Holdout) -> dict[str, int]:
    """Customers assigned in the version, and those held out."""
    a = HoldoutAssignment
    total, held = session.execute(
        select(func.count(), func.count().filter(a.held_out.is_(True))).where(
            a.group_id == holdout.id
        )
    ).one()
    return {"assigned": int(total or 0), "held_out": int(held or 0)}
