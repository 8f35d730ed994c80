"""What a caller may ask of the consent service, and the one rule set that turns a request
into a :class:`ConsentChange` (pure: the clock and the policy are arguments).

The service, never the caller, sets ``recorded_time`` (its own clock, strictly increasing
per process so that two changes of one writer never tie). ``effective_time`` defaults to
``recorded_time``; a caller may set it only forwards for a GRANT (a grant that took effect
before it was recorded would cover events nobody consented to: rejected), and backwards
for a WITHDRAW only on the operator path, with a reason, which the service logs. An ERASE
is effective when recorded, or earlier on the operator path. Purposes and recipients must
be declared in the policy; anything else is rejected, never stored.

``change_id`` is the caller's idempotency key (a retry carries the same one): the fold keeps
the first change with an id and drops any later one with the same intent, whatever its
times (see :func:`consentgate.consent.timeline.apply`).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import pydantic

from consentgate.errors import ValidationError
from consentgate.models.consent import (
    ConsentAction,
    ConsentChange,
    ConsentMethod,
    PurposeId,
    RecipientId,
)
from consentgate.policy.model import Policy

__all__ = [
    "CHANGE_ID_PATTERN",
    "ChangeRequest",
    "MonotonicClock",
    "Rejected",
    "to_change",
]

CHANGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_FUTURE = timedelta(days=366)
_MS = timedelta(milliseconds=1)
"""How far ahead a change may be scheduled (a typo in a year is rejected, not stored)."""

CallerMethod = Literal["WEB_FORM", "API", "IMPORT", "CLI"]
"""Methods a caller may name; GPC and TCF changes come only from their own adapters."""


class Rejected(ValidationError):
    """The request is refused; ``path`` names the field, the message says why."""


Reason = Annotated[str, pydantic.StringConstraints(min_length=3, max_length=500)]


class ChangeRequest(pydantic.BaseModel):
    """One grant, withdrawal or erasure, as a caller sends it."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    subject_id: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=256)]
    action: ConsentAction
    purpose: PurposeId | None = None
    recipient: RecipientId | None = None
    effective_time: pydantic.AwareDatetime | None = None
    expires_at: pydantic.AwareDatetime | None = None
    notice_version: Annotated[str, pydantic.StringConstraints(max_length=128)] | None = None
    method: CallerMethod = "API"
    change_id: Annotated[str, pydantic.StringConstraints(pattern=CHANGE_ID_PATTERN)] | None = None
    backdate_reason: (
        Annotated[str, pydantic.StringConstraints(min_length=3, max_length=500)] | None
    ) = None


class MonotonicClock:
    """The service's clock: UTC wall time at millisecond precision, strictly increasing per
    subject, and never ahead of the wall clock for long. Thread-safe.

    ``now(subject)`` is later than every time handed out to that subject before (the order
    of one subject's changes from one writer is the order they were made in: two of them
    never tie), and otherwise the wall clock: at many changes per millisecond it does not
    run ahead (a clock strictly increasing across all subjects gains 1 ms per change, so a
    withdrawal would take effect seconds late and a grant sent with the caller's "now"
    would look backdated). ``now()`` without a subject is later than every time handed out.
    A wall clock stepping back is held at its latest reading.
    """

    def __init__(self) -> None:
        self._wall = datetime.min.replace(tzinfo=UTC)  # latest wall reading
        self._ahead = self._wall  # latest time handed out
        self._seen: dict[str, datetime] = {}  # subjects given a time > the wall, or = it
        self._lock = threading.Lock()

    def now(self, subject: str | None = None) -> datetime:
        with self._lock:
            t = datetime.now(UTC)
            t = t.replace(microsecond=t.microsecond - t.microsecond % 1000)
            if t > self._wall:
                self._wall = t
            else:
                t = self._wall  # the wall clock stepped back (or the same millisecond)
            if subject is None and t <= self._ahead:
                t = self._ahead + _MS
            if t > self._ahead:
                self._seen.clear()  # every time handed out is behind t
                self._ahead = t
            if subject is None:
                return t
            last = self._seen.get(subject)
            if last is not None and t <= last:
                t = last + _MS
                self._ahead = max(self._ahead, t)
            self._seen[subject] = t
            return t


def to_change(
    request: ChangeRequest,
    *,
    policy: Policy,
    recorded_time: datetime,
    actor: str | None = None,
    operator: bool = False,
    method: ConsentMethod | None = None,
    tcf_string: str | None = None,
) -> ConsentChange:
    """The change ``request`` becomes, recorded at ``recorded_time``; :class:`Rejected` if
    the rules refuse it. ``operator`` opens the backdating path (with a reason)."""
    action = request.action
    _check_names(request, policy)
    try:
        effective = recorded_time if request.effective_time is None else _ms(request.effective_time)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 has no UTC datetime
        raise Rejected("effective_time is out of range", path="effective_time") from None
    if effective > recorded_time + MAX_FUTURE:
        raise Rejected("effective_time is more than a year ahead", path="effective_time")
    if effective < recorded_time:
        if action is ConsentAction.GRANT:
            raise Rejected(
                "a grant cannot take effect before it is recorded (backdated grants would "
                "cover events nobody consented to)",
                path="effective_time",
            )
        if not operator:
            raise Rejected(
                f"a backdated {action.value.lower()} needs the operator path",
                path="effective_time",
            )
        if request.backdate_reason is None:
            raise Rejected("a backdated change needs a backdate_reason", path="backdate_reason")
        if effective < recorded_time - policy.defaults.history_horizon:
            raise Rejected(
                "a change cannot be backdated beyond the history horizon "
                f"({policy.defaults.history_horizon_days} days): "
                "the fold keeps no history that old",
                path="effective_time",
            )
    elif action is ConsentAction.ERASE and effective > recorded_time:
        raise Rejected("an erasure takes effect when it is recorded", path="effective_time")
    if request.backdate_reason is not None and effective >= recorded_time:
        raise Rejected(
            "backdate_reason given but the change is not backdated", path="backdate_reason"
        )
    try:
        return ConsentChange(
            change_id=request.change_id or str(uuid.uuid4()),
            subject_id=request.subject_id,
            action=action,
            purpose=request.purpose,
            recipient=request.recipient,
            effective_time=effective,
            recorded_time=recorded_time,
            expires_at=request.expires_at,
            notice_version=request.notice_version,
            method=method or ConsentMethod(request.method),
            actor=actor,
            tcf_string=tcf_string,
        )
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"]) or "body"
        raise Rejected(first["msg"].removeprefix("Value error, "), path=path) from None


def _check_names(request: ChangeRequest, policy: Policy) -> None:
    if request.action is ConsentAction.ERASE:
        return
    if request.purpose is None:
        raise Rejected(f"a {request.action.value} needs a purpose", path="purpose")
    if request.purpose not in policy.purposes:
        raise Rejected(
            f"unknown purpose {request.purpose!r} (the policy declares "
            f"{', '.join(sorted(policy.purposes))})",
            path="purpose",
        )
    if request.recipient is not None:
        try:
            policy.recipient(request.recipient)
        except KeyError:
            raise Rejected(f"unknown recipient {request.recipient!r}", path="recipient") from None


def _ms(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)
