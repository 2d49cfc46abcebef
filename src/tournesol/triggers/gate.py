"""The dispatch gate as the journey engine sees it: a :class:`Send` goes in, a
:class:`GateResult` (sent, suppressed with a reason, deferred until an instant) comes out.

The real gate lives with the campaigns (consent and suppressions at send time, contact
points, marketing pressure, contact windows, then one outbox row whose key is the send's
idempotency key): the one sending path of Tournesol. :class:`RecordingGate` sends nothing:
it records each call and answers from a policy; simulations and tests use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from tournesol.campaigns.models import Campaign
from tournesol.campaigns.service import UNCHECKED_CHANNELS, AdmitRequest, Policies, admit_many
from tournesol.triggers.definition import JourneyDefinition
from tournesol.triggers.models import JourneyInstance
from tournesol.triggers.rules import GateResult, Send

SENT = GateResult("sent")


class Ask(NamedTuple):
    """One :class:`Send` for the gate, with the instance and journey it comes from."""

    send: Send
    instance: JourneyInstance
    journey: JourneyDefinition


class Gate(Protocol):
    """What the engine calls with the :class:`Send` effects of a pass, in the worker's
    transaction: the gate writes what it writes (the outbox rows) in ``session``, which the
    worker commits together with the instances' new states, and never commits itself.

    ``send_many`` answers every ask, in order, as if they were asked one after the other
    (two messages to one customer count in each other's pressure); ``send`` is one ask."""

    def send(
        self,
        session: Session,
        *,
        send: Send,
        instance: JourneyInstance,
        journey: JourneyDefinition,
        now: datetime,
    ) -> GateResult: ...

    def send_many(
        self, session: Session, asks: Sequence[Ask], *, now: datetime
    ) -> list[GateResult]: ...


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

    def send_many(
        self, session: Session, asks: Sequence[Ask], *, now: datetime
    ) -> list[GateResult]:
        return [
            self.send(session, send=a.send, instance=a.instance, journey=a.journey, now=now)
            for a in asks
        ]

    @property
    def sent(self) -> list[GateCall]:
        """The calls answered ``sent``."""
        return [c for c in self.calls if c.result.outcome == "sent"]

    @property
    def sent_keys(self) -> set[str]:
        """The idempotency keys of the sends answered ``sent``: what an outbox would hold."""
        return {c.send.idempotency_key for c in self.sent}


class DispatchGate:
    """The real gate: the :class:`Send` effects of a journey go through
    :func:`tournesol.campaigns.service.admit_many`, the campaigns' own rules and outbox. The
    action's ``message`` names a triggered campaign (its messages per channel and language,
    its brand, purpose, priority and costs); ``call_center`` is the campaigns' ``phone``
    channel. A webhook needs no campaign: its outbox row holds the URL, and the dispatcher
    posts it (docs/journeys.md). Tasks and webhooks carry the journey, the step and the
    action's properties in the row's payload."""

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
        return self.send_many(session, [Ask(send, instance, journey)], now=now)[0]

    def send_many(
        self, session: Session, asks: Sequence[Ask], *, now: datetime
    ) -> list[GateResult]:
        answers: list[GateResult | None] = [None] * len(asks)
        requests: list[AdmitRequest] = []
        where: list[int] = []
        for index, (send, instance, journey) in enumerate(asks):
            campaign = self._campaign(session, send.message)
            if campaign is None and (send.channel != "webhook" or send.message):
                answers[index] = GateResult("suppressed", "no_triggered_campaign")
                continue
            channel = CHANNEL_OF.get(send.channel, send.channel)
            payload = None
            if channel in UNCHECKED_CHANNELS:
                payload = {
                    "journey": journey.code, "step": send.step, "visit": send.visit,
                    "instance_id": instance.id, **send.properties,
                }  # fmt: skip
            requests.append(
                AdmitRequest(
                    campaign, instance.customer_id, channel, send.idempotency_key, payload,
                    send.purpose if channel == "webhook" else None,
                )
            )  # fmt: skip
            where.append(index)
        if requests:
            admitted = admit_many(session, requests, now=now, policies=self.policies)
            for index, answer in zip(where, admitted, strict=True):
                if answer.outcome == "sent":
                    answers[index] = SENT
                elif answer.outcome == "deferred":
                    answers[index] = GateResult("deferred", answer.reason, answer.until)
                else:
                    answers[index] = GateResult("suppressed", answer.reason)
        return [answer or SENT for answer in answers]

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
