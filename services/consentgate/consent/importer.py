"""Bulk load of consent changes from a CSV or JSONL file, through the consent service's
write path (``consentgate consent import FILE``; docs/consent-import.md).

Every row becomes a :class:`~consentgate.consent.requests.ChangeRequest` (method IMPORT)
and goes through :meth:`ConsentService.change` (the rules of
:func:`~consentgate.consent.requests.to_change`, not the operator path), then
``service.changelog.submit``: appends are pipelined, with at most ``max_in_flight``
unacknowledged at a time. A bad row never aborts the import: it is written to the rejects
file (JSONL: row, kind, path, reason, raw) and the import goes on. So is a change the
broker did not acknowledge (kind ``not_acknowledged``).

A row without ``change_id`` gets ``import.<sha256 of the file, 12 hex>.<row>``, so importing
the same file again appends the same changes again, which the fold drops as retries (the
timelines stay as they are).

Row numbers are line numbers: the line a record starts on (1 is a CSV file's header).
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
import pydantic
from confluent_kafka import KafkaException
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs, no py.typed

from consentgate.consent.changelog import AppendError, Receipt
from consentgate.consent.requests import ChangeRequest
from consentgate.consent.service import ConsentService
from consentgate.errors import ConsentgateError, ValidationError

__all__ = [
    "COLUMNS",
    "REQUIRED",
    "Format",
    "ImportSummary",
    "ImportUsageError",
    "Importer",
    "derived_change_id",
    "detect_format",
    "scan",
]

Format = Literal["csv", "jsonl"]

COLUMNS = (
    "subject_id",
    "action",
    "purpose",
    "recipient",
    "effective_time",
    "expires_at",
    "notice_version",
    "change_id",
    "backdate_reason",
)
"""The columns (CSV) or keys (JSONL) of a row; ``method`` is always IMPORT."""

REQUIRED = ("subject_id", "action")

_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_KNOWN = frozenset(COLUMNS)
_PROGRESS_EVERY = 2048
_GC_THRESHOLD = (100_000, 50, 100)
"""Collector thresholds during an import. Every row allocates a few dozen objects, and the
appends in flight (a Future with its Condition each) keep many alive: at the default
(700, 10, 10) the collector's passes over them cost about a quarter of the import's CPU."""


class ImportUsageError(ConsentgateError):
    """The file cannot be imported at all (missing, unknown format, bad CSV header)."""


# -- the file ---------------------------------------------------------------------------------


def detect_format(path: Path, given: str | None = None) -> Format:
    """``given`` if set, else by extension: .csv, .jsonl or .ndjson."""
    if given is not None:
        if given not in ("csv", "jsonl"):
            raise ImportUsageError(f"unknown format {given!r} (csv or jsonl)")
        return "csv" if given == "csv" else "jsonl"
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise ImportUsageError(
            f"{path}: cannot tell the format from the extension (.csv, .jsonl, .ndjson); "
            "give --format csv|jsonl"
        )
    return found


def scan(path: Path) -> tuple[str, int]:
    """The file's sha256 (hex) and its number of lines (for the progress bar)."""
    digest = hashlib.sha256()
    lines = 0
    last = b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                lines += chunk.count(b"\n")
                last = chunk
    except OSError as exc:
        raise ImportUsageError(f"{path}: {exc.strerror or exc}") from None
    if last and not last.endswith(b"\n"):
        lines += 1
    return digest.hexdigest(), lines


def derived_change_id(digest: str, row: int) -> str:
    """The change id of a row that names none: stable for the same file content."""
    return f"import.{digest[:12]}.{row}"


@dataclass(frozen=True, slots=True)
class _Bad:
    """A record that is not a row at all (bad JSON, wrong CSV field count)."""

    kind: str
    path: str
    reason: str


Record = tuple[int, str, "dict[str, Any] | _Bad"]
"""(row number, raw text, fields or why there are none)."""


def _jsonl_records(f: BinaryIO) -> Iterator[Record]:
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, _text(line), _Bad("bad_json", "-", f"not JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            yield number, _text(line), _Bad("bad_json", "-", "not a JSON object")
            continue
        fields = {k: v for k, v in obj.items() if v is not None and v != ""}
        unknown = fields.keys() - _KNOWN
        if unknown:
            name = sorted(unknown)[0]
            reason = f"unknown field {name!r} (known: {', '.join(COLUMNS)})"
            yield number, _text(line), _Bad("invalid", name, reason)
            continue
        yield number, _text(line), fields


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r\n")


class _CsvRecords:
    """A CSV file's header (checked on opening) and its rows, each with its raw lines."""

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self._f = f
        self._buf: list[str] = []
        self._undecodable = False
        self._reader = csv.reader(self._lines())
        try:
            header = next(self._reader, None)
        except csv.Error as exc:
            raise ImportUsageError(f"{path}: unreadable CSV header: {exc}") from None
        if header is None:
            header = []
        self._line = len(self._buf) + 1
        self._buf.clear()
        if self._undecodable:
            raise ImportUsageError(f"{path}: the CSV header is not UTF-8")
        self.header = [name.strip().lower() for name in header]
        if not self.header and self._line == 1:  # an empty file: nothing to import
            return
        unknown = [n for n in self.header if n not in _KNOWN]
        missing = [n for n in REQUIRED if n not in self.header]
        dupes = sorted({n for n in self.header if self.header.count(n) > 1})
        problems = [
            *(f"unknown column {n!r}" for n in unknown),
            *(f"missing column {n!r}" for n in missing),
            *(f"column {n!r} given twice" for n in dupes),
        ]
        if problems:
            raise ImportUsageError(
                f"{path}: bad CSV header: {'; '.join(problems)} (columns: {', '.join(COLUMNS)})"
            )

    def _lines(self) -> Iterator[str]:
        buf = self._buf
        first = True
        for raw in self._f:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", "replace")
                self._undecodable = True
            if first:
                line = line.removeprefix("\ufeff")
                first = False
            buf.append(line)
            yield line

    def __iter__(self) -> Iterator[Record]:
        header = self.header
        width = len(header)
        buf = self._buf
        reader = self._reader
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                bad: _Bad | None = _Bad("bad_csv", "-", f"unreadable CSV: {exc}")
                values = []
            else:
                bad = None
            number = self._line
            self._line += len(buf)
            raw = "".join(buf).rstrip("\r\n")
            buf.clear()
            if self._undecodable:
                self._undecodable = False
                bad = _Bad("bad_csv", "-", "not UTF-8")
            if bad is not None:
                yield number, raw, bad
                continue
            if not values:  # a blank line
                continue
            if len(values) != width:
                yield (
                    number,
                    raw,
                    _Bad("bad_csv", "-", f"{len(values)} fields, the header has {width}"),
                )
                continue
            yield number, raw, {k: v for k, v in zip(header, values, strict=True) if v}


# -- the import -------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    file: Path
    format: Format
    digest: str
    rejects: Path
    rows: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    """By ``kind`` or ``kind:path`` (e.g. ``rejected:effective_time``)."""
    append_failed: int = 0
    elapsed: float = 0.0
    interrupted: bool = False

    @property
    def accepted_total(self) -> int:
        return sum(self.accepted.values())

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def rate(self) -> float:
        """Accepted (acknowledged) changes per second."""
        return self.accepted_total / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0: every row appended; 1: some rejected or not acknowledged; 130: interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.rejected_total else 0

    def render(self) -> str:
        def counts(c: Counter[str]) -> str:
            return ", ".join(f"{k} {n:,}" for k, n in sorted(c.items(), key=lambda x: -x[1]))

        lines = [
            f"import {self.file} ({self.format}, sha256 {self.digest[:12]})"
            + (": INTERRUPTED" if self.interrupted else ""),
            f"  rows read   {self.rows:>12,}",
            f"  accepted    {self.accepted_total:>12,}"
            + (f"  ({counts(self.accepted)})" if self.accepted else ""),
            f"  rejected    {self.rejected_total:>12,}"
            + (f"  ({counts(self.rejected)}) -> {self.rejects}" if self.rejected else ""),
        ]
        if self.append_failed:
            lines.append(
                f"  NOT ACKNOWLEDGED by the broker: {self.append_failed:,} (in the rejects)"
            )
        lines.append(f"  elapsed     {self.elapsed:>12.1f} s  ({self.rate:,.0f} changes/s)")
        return "\n".join(lines)


Pending = tuple[int, str, str, "Future[Receipt]"]
"""(row number, raw text, action, the append's future)."""


class Importer:
    """Imports files through ``service`` (its rules, clock and changelog)."""

    def __init__(
        self,
        service: ConsentService,
        *,
        actor: str,
        max_in_flight: int = 50_000,
        progress: bool = False,
        ack_timeout: float = 60.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.service = service
        self.actor = actor
        self.max_in_flight = max_in_flight
        self.progress = progress
        self.ack_timeout = ack_timeout

    def run(self, path: Path, rejects: Path, fmt: str | None = None) -> ImportSummary:
        """Import ``path``; rejected rows go to ``rejects`` (truncated first)."""
        chosen = detect_format(path, fmt)
        if not path.is_file():
            raise ImportUsageError(f"{path}: no such file")
        digest, lines = scan(path)
        summary = ImportSummary(path, chosen, digest, rejects)
        started = time.monotonic()
        with _gc_threshold(*_GC_THRESHOLD), path.open("rb") as f:
            records: Iterator[Record]
            if chosen == "csv":
                csv_records = _CsvRecords(f, path)  # the header is checked here
                records = iter(csv_records)
                lines -= 1
            else:
                records = _jsonl_records(f)
            with (
                rejects.open("wb") as out,
                tqdm(
                    total=max(lines, 0),
                    unit=" rows",
                    unit_scale=True,
                    file=sys.stderr,
                    disable=not self.progress,
                    dynamic_ncols=True,
                ) as bar,
            ):
                self._run(records, digest, summary, out, bar)
        summary.elapsed = time.monotonic() - started
        return summary

    def _run(
        self,
        records: Iterator[Record],
        digest: str,
        summary: ImportSummary,
        out: BinaryIO,
        bar: Any,
    ) -> None:
        run = _Run(self, digest, summary, out)
        rows = 0
        try:
            for row, raw, fields in records:
                rows += 1
                if rows % _PROGRESS_EVERY == 0:
                    bar.update(_PROGRESS_EVERY)
                    run.collect_done()
                run.row(row, raw, fields)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            summary.rows = rows
            bar.update(rows % _PROGRESS_EVERY)
            run.drain()


class _Run:
    """One import's per-row path: request, service rules, submit; then the receipts."""

    def __init__(self, importer: Importer, digest: str, summary: ImportSummary, out: BinaryIO):
        service = importer.service
        self.change_of = service.change
        self.submit = service.changelog.submit
        self.actor = importer.actor
        self.ack_timeout = importer.ack_timeout
        self.limit = importer.max_in_flight
        self.prefix = f"import.{digest[:12]}."
        self.summary = summary
        self.out = out
        self.pending: deque[Pending] = deque()

    def row(self, row: int, raw: str, fields: dict[str, Any] | _Bad) -> None:
        if isinstance(fields, _Bad):
            self.reject(row, raw, fields.kind, fields.path, fields.reason)
            return
        action = fields.get("action")
        if type(action) is str:
            fields["action"] = action.upper()
        if "change_id" not in fields:
            fields["change_id"] = self.prefix + str(row)
        fields["method"] = "IMPORT"
        try:
            request = ChangeRequest.model_validate(fields)
        except pydantic.ValidationError as exc:
            path, reason = _pydantic_reason(exc)
            self.reject(row, raw, "invalid", path, reason)
            return
        try:
            change = self.change_of(request, actor=self.actor, operator=False)
        except ValidationError as exc:  # Rejected, by the rules of to_change
            self.reject(row, raw, "rejected", exc.path or "-", str(exc))
            return
        try:
            future = self.submit(change)
        except (ConsentgateError, KafkaException) as exc:
            self.not_acknowledged(row, raw, str(exc))
            return
        pending = self.pending
        pending.append((row, raw, change.action.value, future))
        if len(pending) >= self.limit:
            self.collect(pending.popleft())

    def reject(self, row: int, raw: str, kind: str, path: str, reason: str) -> None:
        self.summary.rejected[kind if path in ("", "-") else f"{kind}:{path}"] += 1
        record = {"row": row, "kind": kind, "path": path, "reason": reason, "raw": raw}
        self.out.write(orjson.dumps(record) + b"\n")

    def not_acknowledged(self, row: int, raw: str, why: str) -> None:
        self.summary.append_failed += 1
        self.reject(row, raw, "not_acknowledged", "-", f"not acknowledged: {why}")

    def collect(self, item: Pending) -> None:
        row, raw, action, future = item
        try:
            future.result(self.ack_timeout)
        except AppendError as exc:
            self.not_acknowledged(row, raw, str(exc))
        except TimeoutError:
            self.not_acknowledged(
                row, raw, f"no answer from the broker in {self.ack_timeout:.0f} s"
            )
        else:
            self.summary.accepted[action] += 1

    def collect_done(self) -> None:
        """Collect the acknowledged appends at the head (keeps the counts current)."""
        pending = self.pending
        while pending and pending[0][3].done():
            self.collect(pending.popleft())

    def drain(self) -> None:
        pending = self.pending
        while pending:
            self.collect(pending.popleft())


@contextlib.contextmanager
def _gc_threshold(*threshold: int) -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(*threshold)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _pydantic_reason(exc: pydantic.ValidationError) -> tuple[str, str]:
    errors = exc.errors()
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"]) or "-"
    reason = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        reason = f"{path} is required"
    elif first["type"] == "extra_forbidden":
        reason = f"unknown field {path!r}"
    if "input" in first and first["type"] != "missing":
        reason += f" (got {first['input']!r})"
    if len(errors) > 1:
        reason += f"; and {len(errors) - 1} more: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[1:]
        )
    return path, reason
