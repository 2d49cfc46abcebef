"""How well identity resolution grouped records into customers, against a known truth.

The demo generator knows which person each record belongs to (``truth.csv``). Given the
customer each record landed in, :func:`score` counts pairs of records:

- a pair is *true* when both records belong to one person, *predicted* when both landed in one
  customer, *correct* when both;
- precision = correct / predicted (1.0 with no predicted pair: nothing was merged wrongly),
  recall = correct / true (1.0 with no true pair), F1 their harmonic mean;
- the wrong merges that matter most are counted apart: predicted pairs of two different persons
  of one household (twins excepted), of two twins, and of two homonyms (same first and last
  name). A pair can be counted both as household and homonym (a father and son of the same
  name).

Pairs are counted, never listed: a group of n records holds n(n-1)/2 pairs, and the records a
customer and a person have in common form the contingency table the other counts come from, so
scoring takes time linear in the number of records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """The truth about one customer record: its person, the person's household, whether the
    person is a twin, and the person's homonym group (persons sharing a first and last name;
    None or empty when the person has no homonym)."""

    person_id: str
    household_id: str
    is_twin: bool
    homonym_group: str | None


@dataclass(slots=True)
class IdentityScores:
    """Pairwise scores of an assignment of records to customers (module docstring)."""

    records: int
    persons: int
    customers: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    precision: float
    recall: float
    f1: float
    persons_split: int  # persons whose records landed in more than one customer
    customers_mixing_persons: int  # customers holding records of more than one person
    household_pairs_merged: int  # predicted pairs of two persons of one household, not twins
    twin_pairs_merged: int  # predicted pairs of two twins
    homonym_pairs_merged: int  # predicted pairs of two persons of one homonym group

    def to_json(self) -> dict[str, Any]:
        """The scores as a JSON-ready dict, one key per field."""
        return asdict(self)


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _cross_pairs(counts: Iterable[int]) -> int:
    """Pairs of records of different persons among persons holding ``counts`` records each."""
    total = squares = 0
    for n in counts:
        total += n
        squares += n * n
    return (total * total - squares) // 2


def score(assignment: Mapping[K, int], truth: Mapping[K, TruthRecord]) -> IdentityScores:
    """Score ``assignment`` (record key -> customer id) against ``truth`` (record key -> its
    truth). Records of the truth missing from the assignment (rejected at import) are left out;
    a record of the assignment without truth is an error (ValueError).

    >>> truth = {
    ...     "a": TruthRecord("P1", "H1", False, None),
    ...     "b": TruthRecord("P1", "H1", False, None),
    ...     "c": TruthRecord("P2", "H1", False, None),
    ... }
    >>> s = score({"a": 1, "b": 1, "c": 1}, truth)
    >>> (s.precision, s.recall, s.household_pairs_merged)
    (0.3333333333333333, 1.0, 2)
    """
    missing = [key for key in assignment if key not in truth]
    if missing:
        shown = ", ".join(repr(k) for k in missing[:5])
        raise ValueError(f"{len(missing)} assigned records have no truth, e.g. {shown}")

    cells: Counter[tuple[int, str]] = Counter()  # (customer, person) -> records in common
    customer_sizes: Counter[int] = Counter()
    person_sizes: Counter[str] = Counter()
    person_truth: dict[str, TruthRecord] = {}
    for key, customer in assignment.items():
        record = truth[key]
        person = record.person_id
        cells[customer, person] += 1
        customer_sizes[customer] += 1
        person_sizes[person] += 1
        person_truth.setdefault(person, record)

    true_pairs = sum(_pairs(n) for n in person_sizes.values())
    predicted_pairs = sum(_pairs(n) for n in customer_sizes.values())
    correct_pairs = sum(_pairs(n) for n in cells.values())

    customers_per_person: Counter[str] = Counter(person for _, person in cells)
    by_customer: defaultdict[int, list[tuple[str, int]]] = defaultdict(list)
    for (customer, person), n in cells.items():
        by_customer[customer].append((person, n))
    mixed = {c: members for c, members in by_customer.items() if len(members) > 1}

    household = twins = homonyms = 0
    for members in mixed.values():
        households: defaultdict[str, list[int]] = defaultdict(list)
        twin_sets: defaultdict[str, list[int]] = defaultdict(list)
        groups: defaultdict[str, list[int]] = defaultdict(list)
        for person, n in members:
            t = person_truth[person]
            if t.household_id:
                households[t.household_id].append(n)
                if t.is_twin:
                    twin_sets[t.household_id].append(n)
            if t.homonym_group:
                groups[t.homonym_group].append(n)
        household += sum(_cross_pairs(ns) for ns in households.values())
        twins += sum(_cross_pairs(ns) for ns in twin_sets.values())
        homonyms += sum(_cross_pairs(ns) for ns in groups.values())

    precision = correct_pairs / predicted_pairs if predicted_pairs else 1.0
    recall = correct_pairs / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return IdentityScores(
        records=len(assignment),
        persons=len(person_sizes),
        customers=len(customer_sizes),
        true_pairs=true_pairs,
        predicted_pairs=predicted_pairs,
        correct_pairs=correct_pairs,
        precision=precision,
        recall=recall,
        f1=f1,
        persons_split=sum(1 for n in customers_per_person.values() if n > 1),
        customers_mixing_persons=len(mixed),
        household_pairs_merged=household - twins,
        twin_pairs_merged=twins,
        homonym_pairs_merged=homonyms,
    )
