"""The dispatch gate as the journey engine sees it: a :class:`Send` goes in, a
:class:`GateResult` (sent, suppressed with a reason, deferred until an instant) comes out.

The real gate lives with the campaigns (consent and suppressions at send time, contact
points, marketing pressure, contact windows, then one outbox row whose key is the send's
idempotency key): the one sending path of Tournesol. :class:`RecordingGate` sends nothing:
it records each call and answers from a policy; simulations and tests use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from tournesol.campaigns.models import Campaign
from tournesol.campaigns.service import Policies, admit
from tournesol.triggers.definition import JourneyDefinition
from tournesol.triggers.models import JourneyInstance
from tournesol.triggers.rules import GateResult, Send

SENT = GateResult("sent")


class Gate(Protocol):
    """What the engine calls for every :class:`Send`, in the worker's transaction: the gate
    writes what it writes (the outbox row) in ``session``, which the worker commits together
    with the instance's new state, and never commits itself."""

    def send(
        self,
        session: Session,
        *,
        send: Send,
        instance: JourneyInstance,
        journey: JourneyDefinition,
        now: datetime,
    ) -> GateResult: ...


@dataclass(frozen=True, slots=True)
class GateCall:
    """One call of a :class:`RecordingGate`, with the answer it gave."""

    journey: str
    instance_id: int
    customer_id: int
    send: Send
    at: datetime
    result: GateResult


Policy = Callable[[Send, JourneyInstance, datetime], GateResult]


class RecordingGate:
    """A gate that sends nothing and remembers every call (``calls``, in order).

    ``policy`` gives the answer: a function of ``(send, instance, now)``, or a mapping from
    channel to answer (channels it leaves out are sent); by default everything is sent.

    >>> gate = RecordingGate({"sms": GateResult("suppressed", "no_consent")})
    >>> gate.calls, gate.sent_keys
    ([], set())
    """

    def __init__(self, policy: Policy | Mapping[str, GateResult] | None = None) -> None:
        if policy is None:
            self._policy: Policy = lambda send, instance, now: SENT
        elif isinstance(policy, Mapping):
            answers = dict(policy)
            self._policy = lambda send, instance, now: answers.get(send.channel, SENT)
        else:
            self._policy = policy
        self.calls: list[GateCall] = []

    def send(
        self,
        session: Session,
        *,
        send: Send,
        instance: JourneyInstance,
        journey: JourneyDefinition,
        now: datetime,
    ) -> GateResult:
        result = self._policy(send, instance, now)
        self.calls.append(
            GateCall(journey.code, instance.id, instance.customer_id, send, now, result)
        )
        return result

    @property
    def sent(self) -> list[GateCall]:
        """The calls answered ``sent``."""
        return [c for c in self.calls if c.result.outcome == "sent"]

    @property
    def sent_keys(self) -> set[str]:
        """The idempotency keys of the sends answered ``sent``: what an outbox would hold."""
        return {c.send.idempotency_key for c in self.sent}


class DispatchGate:
    """The real gate: each :class:`Send` of a journey goes through
    :func:`tournesol.campaigns.service.admit`, the campaigns' own rules and outbox. The
    action's ``message`` names a triggered campaign (its messages per channel and language,
    its brand, purpose, priority and costs); ``call_center`` is the campaigns' ``phone``
    channel. Webhooks are not available yet: they are answered ``suppressed``
    (``webhook_unavailable``)."""

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        self._campaigns: dict[str, int | None] = {}

    def send(
        self,
        session: Session,
        *,
        send: Send,
        instance: JourneyInstance,
        journey: JourneyDefinition,
        now: datetime,
    ) -> GateResult:
        if send.channel == "webhook":
            return GateResult("suppressed", "webhook_unavailable")
        campaign = self._campaign(session, send.message)
        if campaign is None:
            return GateResult("suppressed", "no_triggered_campaign")
        channel = CHANNEL_OF.get(send.channel, send.channel)
        answer = admit(
            session,
            campaign=campaign,
            customer_id=instance.customer_id,
            channel=channel,
            key=send.idempotency_key,
            now=now,
            policies=self.policies,
        )
        if answer.outcome == "sent":
            return SENT
        if answer.outcome == "deferred":
            return GateResult("deferred", answer.reason, answer.until)
        return GateResult("suppressed", answer.reason)

    def _campaign(self, session: Session, code: str | None) -> Campaign | None:
        if not code:
            return None
        if code not in self._campaigns:
            self._campaigns[code] = session.scalar(
                select(Campaign.id).where(Campaign.code == code, Campaign.kind == "triggered")
            )
        found = self._campaigns[code]
        return None if found is None else session.get(Campaign, found)


# The journey's action channels that the campaigns name otherwise.
CHANNEL_OF: Final[Mapping[str, str]] = {"call_center": "phone"}
