"""Roles and what they may do (pure). A route asks for a permission; a role grants a set.

Personal data (names, contact points, addresses, histories of one person) is behind
``customers:read``: the analyst and agency roles never hold it, so they only ever see
aggregates. API keys carry scopes, which are the same permission names.
"""

from __future__ import annotations

from typing import Final

CUSTOMERS_READ: Final = "customers:read"  # one person's data: search, 360 view, API detail
CUSTOMERS_WRITE: Final = "customers:write"  # interactions, consents, preferences
IDENTITY_REVIEW: Final = "identity:review"  # accept / reject grey-zone pairs (personal data)
IDENTITY_UNMERGE: Final = "identity:unmerge"
QUALITY_READ: Final = "quality:read"  # the data quality report (aggregates)
AGGREGATES_READ: Final = "aggregates:read"  # counts, distributions, no one person's data
CAMPAIGNS_DESIGN: Final = "campaigns:design"
AUDIT_READ: Final = "audit:read"
USERS_ADMIN: Final = "users:admin"
EVENTS_WRITE: Final = "events:write"  # event collection (the Segment-compatible endpoints)

PERMISSIONS: Final = (
    CUSTOMERS_READ,
    CUSTOMERS_WRITE,
    IDENTITY_REVIEW,
    IDENTITY_UNMERGE,
    QUALITY_READ,
    AGGREGATES_READ,
    CAMPAIGNS_DESIGN,
    AUDIT_READ,
    USERS_ADMIN,
    EVENTS_WRITE,
)

# Which permissions reveal one person's data: never granted to analyst or agency.
PERSONAL: Final = frozenset({CUSTOMERS_READ, CUSTOMERS_WRITE, IDENTITY_REVIEW, IDENTITY_UNMERGE})

ROLES: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset(PERMISSIONS),
    "marketer": frozenset(
        {
            CUSTOMERS_READ,
            CUSTOMERS_WRITE,
            IDENTITY_REVIEW,
            IDENTITY_UNMERGE,
            QUALITY_READ,
            AGGREGATES_READ,
            CAMPAIGNS_DESIGN,
        }
    ),
    "advisor": frozenset({CUSTOMERS_READ, CUSTOMERS_WRITE}),
    "analyst": frozenset({QUALITY_READ, AGGREGATES_READ}),
    "agency": frozenset({CAMPAIGNS_DESIGN, AGGREGATES_READ}),
}

ROLE_DESCRIPTIONS: Final[dict[str, str]] = {
    "admin": "everything, including users, API keys and the audit log",
    "marketer": "customer pages, identity review and unmerge, quality, segments, campaigns",
    "advisor": "customer pages: search, 360 view, log a contact, update consents",
    "analyst": "aggregates only (quality report, counts): no personal data",
    "agency": "campaign design without personal data",
}

assert all(not (ROLES[r] & PERSONAL) for r in ("analyst", "agency"))


def permissions_of(role: str) -> frozenset[str]:
    """The permissions of ``role``; raises ValueError on an unknown role."""
    try:
        return ROLES[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}") from None


def check_scopes(scopes: list[str]) -> list[str]:
    """Validated API key scopes; raises ValueError naming an unknown one."""
    unknown = [s for s in scopes if s not in PERMISSIONS]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}: one of {', '.join(PERMISSIONS)}")
    if not scopes:
        raise ValueError("an API key needs at least one scope")
    return sorted(set(scopes))
