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
from typing import Protocol

from sqlalchemy.orm import Session

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
