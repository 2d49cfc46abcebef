"""`tournesol identity`: resolve, explain, review, unmerge, history."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail

if TYPE_CHECKING:
    from tournesol.identity.service import ResolveReport

app = typer.Typer(
    help="Identity resolution: one customer per person, explainable and reversible.",
    no_args_is_help=True,
)
SHOWN = (
    "source", "source_key", "customer_id", "first_name", "last_name", "maiden_name", "gender",
    "birth_date", "email", "phone_mobile", "phone_fixed", "postal_code", "city", "street",
    "loyalty_card", "account_id", "siret", "work_email", "work_phone",
)  # fmt: skip


def _actor(by: str | None) -> str:
    return by or f"cli:{getpass.getuser()}"


@app.command()
def resolve(
    full: bool = typer.Option(
        False, "--full", help="Re-train the model and re-score the whole base."
    ),
) -> None:
    """Match the records not resolved yet (or all, with --full) and merge what is one person;
    grey-zone pairs go to the review queue."""
    from tournesol.identity.service import resolve as run

    _, factory = engine_and_factory()
    with console.status("Resolving identities...") as status:
        report = run(factory, full=full, progress=lambda msg: status.update(f"Resolving: {msg}"))
    print_report(report)


def print_report(report: ResolveReport) -> None:
    table = Table(title=f"Identity resolution ({report.mode}, model v{report.model_version})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("customer records in the base", report.records),
        ("records resolved by this run", report.pending),
        ("pairs scored by the model", report.pairs_scored),
        ("links (same person)", report.links),
        ("links held back by the guards", report.refused),
        ("customers merged", report.merges),
        ("pairs added to the review queue", report.reviews),
        ("customers before", report.customers_before),
        ("customers after", report.customers_after),
    ):
        table.add_row(label, f"{value:,}")
    console.print(table)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    console.print(f"Time: {steps}", highlight=False)


@app.command()
def explain(
    a: str = typer.Argument(..., help="A customer record: its id, or source:key."),
    b: str = typer.Argument(..., help="Another record."),
) -> None:
    """Why two records are, or are not, the same person."""
    from tournesol.db import unit_of_work
    from tournesol.identity.service import IdentityError
    from tournesol.identity.service import explain as run

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            ex = run(session, a, b)
        except IdentityError as exc:
            fail(str(exc), hint="`tournesol export crossref` lists records as source:key")
    _side_by_side(ex.left, ex.right)
    if ex.model_version is None:
        console.print("No model yet: run `tournesol identity resolve` first.")
    else:
        table = Table(title=f"Model v{ex.model_version}: match weight per comparison")
        table.add_column("comparison")
        table.add_column("level")
        table.add_column("weight", justify="right")
        for name, level, weight in ex.comparisons:
            table.add_row(name, level, f"{weight:+.2f}")
        console.print(table)
        console.print(
            f"Total match weight {ex.match_weight:+.2f} (prior included): "
            f"match probability {ex.probability:.4f}",
            highlight=False,
        )
    console.print(f"Deterministic rule: {ex.deterministic or 'no shared strong identifier agreed'}")
    console.print(f"Conflict guard: {ex.conflict or 'nothing conflicts'}")
    if ex.decision is not None:
        console.print(
            f"Decision: [bold]{ex.decision.kind}[/] ({ex.decision.rule}: {ex.decision.reason})"
        )
    same = ex.left["customer_id"] == ex.right["customer_id"]
    console.print(
        f"Today they are {'one customer' if same else 'two customers'} "
        f"({ex.left['customer_id']}{'' if same else ', ' + str(ex.right['customer_id'])})."
    )


def _side_by_side(left: dict[str, Any], right: dict[str, Any], title: str = "") -> None:
    table = Table(title=title or None)
    table.add_column("")
    table.add_column(f"record {left['unique_id']}")
    table.add_column(f"record {right['unique_id']}")
    table.add_column("")
    for col in SHOWN:
        x, y = left.get(col), right.get(col)
        if x is None and y is None:
            continue
        mark = "" if x is None or y is None else ("=" if x == y else "≠")
        table.add_row(col, "" if x is None else str(x), "" if y is None else str(y), mark)
    console.print(table)


@app.command()
def review(
    limit: int = typer.Option(10, help="How many pairs to show."),
    accept: list[int] = typer.Option([], "--accept", help="Accept this review (merge)."),
    reject: list[int] = typer.Option([], "--reject", help="Reject this review (never merge)."),
    interactive: bool = typer.Option(
        False, "--interactive", "-i", help="Ask for a decision on each pair shown."
    ),
    by: str | None = typer.Option(None, help="Who decides (default: cli:<user>)."),
    note: str | None = typer.Option(None, help="A note kept with the decisions."),
) -> None:
    """List the grey-zone pairs with their evidence; accept or reject them."""
    from tournesol.db import unit_of_work
    from tournesol.identity.service import (
        IdentityError,
        count_reviews,
        decide_review,
        review_queue,
    )

    _, factory = engine_and_factory()
    actor = _actor(by)
    for review_id, accepted in [(i, True) for i in accept] + [(i, False) for i in reject]:
        with unit_of_work(factory) as session:
            try:
                console.print(
                    f"review {review_id}: "
                    + decide_review(session, review_id, accept=accepted, actor=actor, note=note)
                )
            except IdentityError as exc:
                fail(str(exc))
    if accept or reject:
        return
    with unit_of_work(factory) as session:
        waiting = count_reviews(session)
        items = review_queue(session, limit=limit)
        if not items:
            console.print("The review queue is empty.")
            return
        console.print(f"{waiting:,} pairs wait for a decision; the {len(items)} most likely:")
        for item in items:
            r = item.review
            _side_by_side(
                item.left,
                item.right,
                title=f"review {r.id}: match probability {r.score:.3f} ({r.reason})",
            )
            if interactive:
                answer = typer.prompt("[a]ccept, [r]eject, [s]kip, [q]uit", default="s")
                if answer.startswith("q"):
                    break
                if answer[:1] in ("a", "r"):
                    console.print(
                        decide_review(
                            session, r.id, accept=answer.startswith("a"), actor=actor, note=note
                        )
                    )
                    session.commit()
    if not interactive:
        console.print(
            "Decide with `tournesol identity review --accept ID` or `--reject ID` "
            "(or go through them with -i); `tournesol identity explain A B` shows the weights."
        )


@app.command()
def unmerge(
    event_id: int = typer.Argument(..., help="The merge event to undo (see `history`)."),
    reason: str | None = typer.Option(None, help="Why (kept with the event)."),
    by: str | None = typer.Option(None, help="Who undoes it (default: cli:<user>)."),
) -> None:
    """Undo a merge: the absorbed customer comes back with exactly its records, identifiers,
    consents and history; the two are never merged again automatically."""
    from tournesol.db import unit_of_work
    from tournesol.identity.service import IdentityError, unmerge_event

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            console.print(unmerge_event(session, event_id, actor=_actor(by), reason=reason))
        except IdentityError as exc:
            fail(str(exc), hint="`tournesol identity history CUSTOMER` lists a customer's merges")


@app.command()
def history(customer_id: int = typer.Argument(..., help="A customer id.")) -> None:
    """The merges that built a customer, or absorbed it."""
    from tournesol.db import unit_of_work
    from tournesol.identity.service import IdentityError
    from tournesol.identity.service import history as events_of

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            events = events_of(session, customer_id)
        except IdentityError as exc:
            fail(str(exc))
        if not events:
            console.print(f"Customer {customer_id} was never merged.")
            return
        table = Table(title=f"Merges of customer {customer_id}")
        for col in (
            "event",
            "when",
            "survivor",
            "absorbed",
            "rule",
            "score",
            "by",
            "why",
            "undone",
        ):
            table.add_column(col)
        for e in events:
            table.add_row(
                str(e.id),
                f"{e.merged_at:%Y-%m-%d %H:%M}",
                str(e.survivor_id),
                str(e.absorbed_id),
                e.rule,
                "" if e.score is None else f"{e.score:.3f}",
                e.actor,
                e.reason,
                "" if e.unmerged_at is None else f"{e.unmerged_at:%Y-%m-%d} by {e.unmerged_by}",
            )
        console.print(table)
