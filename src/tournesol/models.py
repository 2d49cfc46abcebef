"""Every table, imported once so that ``Base.metadata`` is complete (Alembic, tests)."""

import tournesol.reporting.models
import tournesol.triggers.models  # noqa: F401  (the journey tables)
from tournesol.auth.models import ApiKey, AuditLog, User
from tournesol.campaigns.models import (
    Campaign,
    CampaignAttribution,
    CampaignMessage,
    CampaignTarget,
    Outbox,
)
from tournesol.collect.models import CollectedEvent, VisitorLink
from tournesol.consent.models import Consent, ConsentState, Preference, Suppression
from tournesol.customers.models import (
    Brand,
    Customer,
    CustomerNameKey,
    Identifier,
    Organisation,
    OrganisationContact,
    Zone,
)
from tournesol.db import Base
from tournesol.identity.models import (
    IdentityModel,
    IdentityRun,
    MatchProfile,
    MatchReview,
    MergeEvent,
    MergeMove,
)
from tournesol.ingest.models import ImportBatch, Reject, Source, SourceRecord, SourceRecordVersion
from tournesol.interactions.models import Interaction, Product, Transaction, TransactionLine
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore, ScoreModel
from tournesol.segments.models import Segment, SegmentMembership, SegmentSnapshot

__all__ = [
    "ApiKey",
    "AuditLog",
    "Base",
    "Brand",
    "Campaign",
    "CampaignAttribution",
    "CampaignMessage",
    "CampaignTarget",
    "CollectedEvent",
    "Consent",
    "ConsentState",
    "Customer",
    "CustomerFeature",
    "CustomerNameKey",
    "CustomerRfm",
    "CustomerScore",
    "Identifier",
    "IdentityModel",
    "IdentityRun",
    "ImportBatch",
    "Interaction",
    "MatchProfile",
    "MatchReview",
    "MergeEvent",
    "MergeMove",
    "Organisation",
    "OrganisationContact",
    "Outbox",
    "Preference",
    "Product",
    "Reject",
    "ScoreModel",
    "Segment",
    "SegmentMembership",
    "SegmentSnapshot",
    "Source",
    "SourceRecord",
    "SourceRecordVersion",
    "Suppression",
    "Transaction",
    "TransactionLine",
    "User",
    "VisitorLink",
    "Zone",
]
