"""Campaigns: definitions, eligibility, marketing pressure and arbitration, outbox, execution."""
