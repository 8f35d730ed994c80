"""A test-only encoder of IAB TCF v2 core segments (TC strings without the other segments).

Bit layout per the IAB "Transparency and Consent String and Global Vendor List Format" v2:
Version 6, Created 36 and LastUpdated 36 (deciseconds since the epoch), CmpId 12, CmpVersion
12, ConsentScreen 6, ConsentLanguage 12 (two 6-bit letters, A = 0), VendorListVersion 12,
TcfPolicyVersion 6, IsServiceSpecific 1, UseNonStandardTexts 1, SpecialFeatureOptIns 12,
PurposesConsent 24, PurposesLITransparency 24, PurposeOneTreatment 1, PublisherCC 12; then the
vendor consent section and the vendor legitimate interest section, each MaxVendorId 16,
IsRangeEncoding 1 and a bitfield of MaxVendorId bits (or NumEntries 12 and per entry IsARange
1, StartOrOnlyVendorId 16 [, EndVendorId 16]); then NumPubRestrictions 12 (always 0 here).
Padded with zero bits to whole bytes, base64url without padding.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

__all__ = ["CREATED", "TcCore", "bits_to_base64url", "core_bits", "encode"]

CREATED = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)


@dataclass(frozen=True)
class TcCore:
    """Every field of a core segment; the defaults are a plausible v2.2 string."""

    version: int = 2
    created: datetime = CREATED
    last_updated: datetime | None = None
    """None: the same as ``created``."""
    cmp_id: int = 7
    cmp_version: int = 3
    consent_screen: int = 1
    consent_language: str = "JA"
    vendor_list_version: int = 120
    policy_version: int = 4
    is_service_specific: bool = True
    use_non_standard_texts: bool = False
    special_feature_optins: frozenset[int] = frozenset()
    purpose_consents: frozenset[int] = frozenset()
    purpose_li_transparency: frozenset[int] = frozenset()
    purpose_one_treatment: bool = False
    publisher_cc: str = "JP"
    vendor_consents: frozenset[int] = frozenset()
    vendor_li: frozenset[int] = frozenset()
    range_encoding: bool = False
    """Encode both vendor sections as range entries instead of bitfields."""


class _Bits:
    def __init__(self) -> None:
        self.out: list[str] = []

    def int(self, value: int, width: int) -> None:
        assert 0 <= value < 1 << width, (value, width)
        self.out.append(format(value, f"0{width}b"))

    def bool(self, value: bool) -> None:
        self.int(int(value), 1)

    def time(self, value: datetime) -> None:
        self.int(round(value.timestamp() * 10), 36)

    def letters(self, value: str) -> None:
        assert len(value) == 2 and value.isascii() and value.isupper(), value
        for letter in value:
            self.int(ord(letter) - ord("A"), 6)

    def bitfield(self, ids: Iterable[int], width: int) -> None:
        on = set(ids)
        assert all(1 <= i <= width for i in on), (on, width)
        self.out.append("".join("1" if i in on else "0" for i in range(1, width + 1)))

    def vendors(self, ids: frozenset[int], *, ranges: bool) -> None:
        max_id = max(ids, default=0)
        self.int(max_id, 16)
        self.bool(ranges)
        if not ranges:
            self.bitfield(ids, max_id)
            return
        entries = _runs(sorted(ids))
        self.int(len(entries), 12)
        for start, end in entries:
            self.bool(start != end)
            self.int(start, 16)
            if start != end:
                self.int(end, 16)

    def text(self) -> str:
        return "".join(self.out)


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def core_bits(core: TcCore) -> str:
    """The core segment of ``core`` as a string of '0'/'1', before byte padding."""
    b = _Bits()
    b.int(core.version, 6)
    b.time(core.created)
    b.time(core.last_updated or core.created)
    b.int(core.cmp_id, 12)
    b.int(core.cmp_version, 12)
    b.int(core.consent_screen, 6)
    b.letters(core.consent_language)
    b.int(core.vendor_list_version, 12)
    b.int(core.policy_version, 6)
    b.bool(core.is_service_specific)
    b.bool(core.use_non_standard_texts)
    b.bitfield(core.special_feature_optins, 12)
    b.bitfield(core.purpose_consents, 24)
    b.bitfield(core.purpose_li_transparency, 24)
    b.bool(core.purpose_one_treatment)
    b.letters(core.publisher_cc)
    b.vendors(core.vendor_consents, ranges=core.range_encoding)
    b.vendors(core.vendor_li, ranges=core.range_encoding)
    b.int(0, 12)  # NumPubRestrictions
    return b.text()


def bits_to_base64url(bits: str) -> str:
    """'0'/'1' text, zero-padded to whole bytes, as unpadded base64url."""
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def encode(core: TcCore | None = None, **fields: Any) -> str:
    """The TC string (core segment only) of ``core``, with ``fields`` replaced."""
    return bits_to_base64url(core_bits(replace(core or TcCore(), **fields)))
