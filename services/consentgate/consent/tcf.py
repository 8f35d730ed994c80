"""The TCF adapter: IAB TCF v2.2 TC strings, read as consent to our grant keys.

A consent management platform (CMP) on the site records the subject's choices as a TC string.
:func:`decode` reads its core segment (the only one that matters here) into a
:class:`TcSignal`; :func:`grant_states` maps that signal, through the policy's ``tcf`` section,
onto the grant keys the policy's sinks use: a key is granted if every TCF purpose mapped to
its purpose has consent and, for a partner key, the recipient's vendor (GVL id) has consent
too. Keys the mapping does not cover are left out: the TC string says nothing about them.

Pure: no I/O. Anything wrong with the string or the mapping is a :class:`TcfError` naming why
in one line; nothing the decoding library raises escapes as anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import iab_tcf

from consentgate.consent.intervals import GrantKey
from consentgate.errors import ValidationError
from consentgate.policy.model import Policy

__all__ = ["MAX_TC_STRING_LENGTH", "TcSignal", "TcfError", "decode", "grant_states"]

MAX_TC_STRING_LENGTH = 10_000
"""Longest TC string accepted, in characters (a full bitfield of 65,535 vendors is ~11k)."""

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_LANGUAGE = re.compile(rb"[A-Z]{2}")


class TcfError(ValidationError):
    """A TC string that cannot be used, or a policy that cannot map it.

    ``path`` is ``tcf_string`` (or the field of it at fault) or ``policy.tcf``; ``value`` the
    offending value.
    """

    def __init__(self, message: str, *, path: str = "tcf_string", value: object = None) -> None:
        super().__init__(message, path=path, value=value)


@dataclass(frozen=True, slots=True)
class TcSignal:
    """What the core segment of a TC string says (timestamps aware, UTC, whole seconds)."""

    version: int
    policy_version: int
    created: datetime
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_language: str
    vendor_list_version: int
    purpose_consents: frozenset[int]
    vendor_consents: frozenset[int]
    is_service_specific: bool


def decode(tc_string: str) -> TcSignal:
    """The core segment of ``tc_string``; TcfError if it is not a usable TCF v2 string."""
    if not isinstance(tc_string, str):
        raise TcfError(
            f"a TC string must be a str, not {type(tc_string).__name__}", value=tc_string
        )
    if not tc_string:
        raise TcfError("the TC string is empty", value=tc_string)
    if len(tc_string) > MAX_TC_STRING_LENGTH:
        raise TcfError(
            f"the TC string is {len(tc_string)} characters long (at most {MAX_TC_STRING_LENGTH})",
            value=tc_string[:64] + "...",
        )
    segments = tc_string.split(".")
    for i, segment in enumerate(segments):
        # The library's base64 decoding silently drops characters outside the alphabet;
        # a length of 4n+1 cannot come from any byte string.
        if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
            raise TcfError(f"segment {i} of the TC string is not valid base64url", value=tc_string)
    try:
        version = iab_tcf.version(iab_tcf.base64_decode(segments[0]))
    except Exception as exc:  # the library is untyped: anything it raises
        raise TcfError(f"the TC string cannot be decoded: {_why(exc)}", value=tc_string) from exc
    if version == 1:
        raise TcfError("TCF v1 strings are not supported", path="tcf_string.version", value=1)
    if version != 2:
        raise TcfError(f"unknown TCF version {version}", path="tcf_string.version", value=version)
    try:
        signal = _signal(iab_tcf.decode_v2(segments[0]), tc_string)
    except TcfError:
        raise
    except Exception as exc:  # the library is untyped: anything it raises
        raise TcfError(f"the TC string cannot be decoded: {_why(exc)}", value=tc_string) from exc
    return signal


def grant_states(signal: TcSignal, policy: Policy) -> list[tuple[GrantKey, bool]]:
    """Each grant key of ``policy`` the TCF mapping covers, with whether ``signal`` grants it.

    Keys in policy order (each sink's purpose, then its extra purposes), without duplicates.
    TcfError if the policy has no ``tcf`` section or the string predates the policy's
    ``min_policy_version`` (TCF v2.0/v2.1 strings, policy version < 4, by default).
    """
    tcf = policy.tcf
    if tcf is None:
        raise TcfError("the policy has no tcf mapping", path="policy.tcf")
    if signal.policy_version < tcf.min_policy_version:
        raise TcfError(
            f"TCF policy version {signal.policy_version} is older than v2.2 "
            f"(needs >= {tcf.min_policy_version})",
            path="tcf_string.policy_version",
            value=signal.policy_version,
        )
    keys: dict[GrantKey, None] = {}
    for sink in policy.sinks:
        for purpose in (sink.purpose, *sink.extra_purposes):
            keys[(purpose, sink.recipient)] = None
    states: list[tuple[GrantKey, bool]] = []
    for purpose, recipient in keys:
        tcf_purposes = tcf.purposes.get(purpose)
        if tcf_purposes is None or (recipient is not None and recipient not in tcf.vendors):
            continue
        granted = signal.purpose_consents.issuperset(tcf_purposes) and (
            recipient is None or tcf.vendors[recipient] in signal.vendor_consents
        )
        states.append(((purpose, recipient), granted))
    return states


def _signal(core: Any, tc_string: str) -> TcSignal:
    """The signal of the ConsentV2 the library read, after checking it read real bits.

    The library reads past the end of its input as zero bits (and as True flags), so a
    truncated string decodes "successfully" into nonsense: compare how far it read with how
    many bits there were (its reader's state; iab-tcf is pinned to 0.2.2).
    """
    reader = core._reader  # no public way to ask how many bits were read
    if reader._pointer > len(reader._consent):
        raise TcfError(
            f"the TC string is truncated: its core segment has {len(reader._consent)} bits, "
            "fewer than its own fields declare",
            value=tc_string,
        )
    language = core.consent_language
    if not _LANGUAGE.fullmatch(language):
        raise TcfError(
            f"the consent language {language.decode('latin-1')!r} is not two letters A-Z",
            path="tcf_string.consent_language",
            value=tc_string,
        )
    return TcSignal(
        version=core.version,
        policy_version=core.tcf_policy_version,
        created=core.created.replace(tzinfo=UTC),
        last_updated=core.last_updated.replace(tzinfo=UTC),
        cmp_id=core.cmp_id,
        cmp_version=core.cmp_version,
        consent_language=language.decode("ascii"),
        vendor_list_version=core.vendor_list_version,
        purpose_consents=frozenset(i for i, on in core.purposes_consent.items() if on),
        vendor_consents=_vendor_consents(core, tc_string),
        is_service_specific=bool(core.is_service_specific),
    )


def _vendor_consents(core: Any, tc_string: str) -> frozenset[int]:
    """The vendor ids with consent, from the bitfield or the range entries."""
    max_id: int = core.max_consent_vendor_id
    if not core.is_consent_range_encoding:
        return frozenset(i for i, on in core.consented_vendors.items() if on)
    ranges: list[tuple[int, int]] = sorted(core.consented_vendors_range)
    for start, end in ranges:
        if not 1 <= start <= end <= max_id:
            raise TcfError(
                f"vendor consent range {start}-{end} is not within 1..{max_id}",
                path="tcf_string.vendor_consents",
                value=tc_string,
            )
    # Merge before expanding: overlapping ranges must not cost more than max_id ids.
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return frozenset(i for start, end in merged for i in range(start, end + 1))


def _why(exc: Exception) -> str:
    """One line saying what the library raised."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
