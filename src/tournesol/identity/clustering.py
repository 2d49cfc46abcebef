"""Records into persons: links in order of strength, with a guard against chaining. Pure.

Plain connected components chain: A links to B, B to C, and A and C, a mother and her
daughter, end up in one customer. Here a link joins two groups only when no member of one
conflicts with a member of the other on strong evidence (``features.conflict``: first names,
birth dates, two mobiles at one address) and no pair across them was rejected by a reviewer.
Links are taken strongest first (deterministic ones, then by match probability), so the best
evidence decides which group a record joins.

A record that links to two groups that cannot be joined, and is tied to its own group by the
model's probability alone (no shared identifier), is *ambiguous* (a record without a birth
date, named like a mother and her daughter at one address): it joins neither, and its links go
to the review queue. Records already together in a customer (``preset``)
stay together: only an unmerge separates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tournesol.identity.features import conflict


@dataclass(frozen=True, slots=True)
class Link:
    """A pair of records judged the same person, and why."""

    a: int
    b: int
    score: float  # match probability
    rule: str  # deterministic, probabilistic, review (accepted by a person)
    reason: str

    @property
    def pair(self) -> tuple[int, int]:
        return (self.a, self.b) if self.a < self.b else (self.b, self.a)


@dataclass(frozen=True, slots=True)
class Refusal:
    link: Link
    reason: str


@dataclass
class Clusters:
    groups: list[list[int]]  # every record exactly once; singletons included
    accepted: list[Link]
    refused: list[Refusal] = field(default_factory=list)
    ambiguous: set[int] = field(default_factory=set)


_RULE_ORDER = {"review": 0, "deterministic": 1, "probabilistic": 2}


class _Groups:
    def __init__(self, nodes: Iterable[int]) -> None:
        self.parent: dict[int, int] = {n: n for n in nodes}
        self.members: dict[int, list[int]] = {n: [n] for n in self.parent}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra].extend(self.members.pop(rb))


def cluster(
    records: Iterable[int],
    links: Sequence[Link],
    profiles: Mapping[int, Mapping[str, Any]],
    *,
    preset: Iterable[Sequence[int]] = (),
    cannot_link: set[tuple[int, int]] | None = None,
    conflict_of: Callable[[Mapping[str, Any], Mapping[str, Any]], str | None] | None = None,
) -> Clusters:
    """Group ``records`` by ``links`` under the guard. ``profiles`` holds every record's
    features (``features.profile``); ``preset`` groups are records already one customer;
    ``cannot_link`` pairs (smaller id first) were rejected by a person."""
    banned = cannot_link or set()
    check = conflict_of or _conflict_reason
    groups = _Groups(records)
    preset_links: list[tuple[int, int]] = []
    for members in preset:
        first = members[0]
        for other in members[1:]:
            groups.union(first, other)
            preset_links.append((first, other))
    accepted: list[Link] = []
    refused: list[Refusal] = []
    for link in sorted(links, key=lambda k: (_RULE_ORDER.get(k.rule, 3), -k.score, k.pair)):
        ra, rb = groups.find(link.a), groups.find(link.b)
        if ra == rb:
            accepted.append(link)
            continue
        reason = _between(groups.members[ra], groups.members[rb], profiles, banned, check)
        if reason is None:
            groups.union(ra, rb)
            accepted.append(link)
        else:
            refused.append(Refusal(link, reason))
    anchored = {r for k in accepted if k.rule != "probabilistic" for r in (k.a, k.b)}
    ambiguous = _ambiguous(groups, refused, profiles, banned, check, preset_links, anchored)
    if not ambiguous:
        return Clusters(sorted(sorted(m) for m in groups.members.values()), accepted, refused)
    # Detach the ambiguous records and regroup the rest by the links that remain.
    final = _Groups(groups.parent)
    for a, b in preset_links:
        final.union(a, b)
    kept: list[Link] = []
    for link in accepted:
        if link.a in ambiguous or link.b in ambiguous:
            refused.append(Refusal(link, "the record fits two persons who cannot be one"))
        else:
            final.union(link.a, link.b)
            kept.append(link)
    return Clusters(sorted(sorted(m) for m in final.members.values()), kept, refused, ambiguous)


def _conflict_reason(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    verdict = conflict(a, b)
    return verdict.reason if verdict.conflict else None


def _between(
    left: list[int],
    right: list[int],
    profiles: Mapping[int, Mapping[str, Any]],
    banned: set[tuple[int, int]],
    check: Callable[[Mapping[str, Any], Mapping[str, Any]], str | None],
) -> str | None:
    for x in left:
        px = profiles[x]
        for y in right:
            if banned and ((x, y) if x < y else (y, x)) in banned:
                return "a reviewer said these records are two persons"
            reason = check(px, profiles[y])
            if reason is not None:
                return reason
    return None


def _ambiguous(
    groups: _Groups,
    refused: list[Refusal],
    profiles: Mapping[int, Mapping[str, Any]],
    banned: set[tuple[int, int]],
    check: Callable[[Mapping[str, Any], Mapping[str, Any]], str | None],
    preset_links: list[tuple[int, int]],
    anchored: set[int],
) -> set[int]:
    """Records joined to their group by probabilistic links only, with a refused link to
    another group they themselves agree with entirely: they could be either person. Records of
    an existing customer, or tied to their group by a deterministic link, stay."""
    locked = anchored | {n for pair in preset_links for n in pair}
    out: set[int] = set()
    for refusal in refused:
        link = refusal.link
        for x, y in ((link.a, link.b), (link.b, link.a)):
            if x in locked or x in out:
                continue
            own = groups.members[groups.find(x)]
            if len(own) < 2:
                continue
            other = groups.members[groups.find(y)]
            if _between([x], other, profiles, banned, check) is None:
                out.add(x)
    return out
