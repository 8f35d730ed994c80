"""The consent service's HTTP API (FastAPI): record consent, read a subject's timeline.

Every write goes through :class:`~consentgate.consent.service.ConsentService` (the rules of
:mod:`consentgate.consent.requests`) and is one append to consent-changes; the answer, 202,
names where each change landed (topic, partition, offset). consent-state follows by the
fold, so a write is visible in ``GET .../timeline`` once the fold has folded it.

- ``POST /v1/subjects/{subject_id}/grants | withdrawals | erasure | gpc | tcf``
- ``GET /v1/subjects/{subject_id}/timeline``
- ``GET /healthz`` (the process runs), ``/readyz`` (the changes topic answers a metadata
  request), ``/metrics`` (Prometheus text; a private registry).

Auth: ``Authorization: Bearer <token>`` on every ``/v1`` call; the operator token (if set)
also opens the backdating path of a withdrawal. Tokens are compared in constant time and
never logged. Errors a client can cause are 4xx: 401, 404, 422 (FastAPI's
``detail: [{loc, msg, type}]``, also for the service's own rejections), and 503 with
``Retry-After`` when the broker does not acknowledge (retry with the same ``change_id``).
Blocking work (the append waits for the broker's ack, a read loads a consent-state
partition) runs in the threadpool; the event loop never waits on Kafka.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pydantic
from confluent_kafka import KafkaException
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentgate.consent.changelog import AppendError, ChangeLog, Receipt
from consentgate.consent.cli import render_state
from consentgate.consent.requests import CHANGE_ID_PATTERN, ChangeRequest
from consentgate.consent.service import ConsentService
from consentgate.consent.state_reader import StateReader, SubjectState
from consentgate.errors import ConsentgateError, ValidationError
from consentgate.models.consent import (
    ConsentAction,
    ConsentChange,
    PurposeId,
    RecipientId,
)
from consentgate.policy.model import Policy

__all__ = [
    "Accepted",
    "ChangeReceipt",
    "ErasureBody",
    "GpcBody",
    "GrantBody",
    "TcfBody",
    "WithdrawalBody",
    "changelog_ready",
    "create_app",
]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What a 503 asks the client to wait before retrying (with the same change_id)."""
APPEND_TIMEOUT = 35.0
"""Seconds a write waits for the broker's acknowledgement (the producer gives up at 30)."""
READ_TIMEOUT = 30.0
"""Seconds a timeline read may take (loading the subject's consent-state partition)."""
READY_TIMEOUT = 2.0
"""Seconds the readiness probe waits for the changes topic's metadata."""
MAX_TC_STRING = 10_000
"""Longest TC string the body accepts (as :data:`consentgate.consent.tcf.MAX_TC_STRING_LENGTH`)."""


# -- request bodies ---------------------------------------------------------------------------
def _utc(value: datetime) -> datetime:
    """``value`` in UTC; a time that has no UTC equivalent (year 0 or 10000) is invalid."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


ApiTime = Annotated[pydantic.AwareDatetime, pydantic.AfterValidator(_utc)]
ChangeId = Annotated[
    str,
    pydantic.StringConstraints(pattern=CHANGE_ID_PATTERN),
    pydantic.Field(description="idempotency key: a retry carries the same one"),
]
NoticeVersion = Annotated[str, pydantic.StringConstraints(max_length=128)]
Reason = Annotated[str, pydantic.StringConstraints(min_length=3, max_length=500)]
SubjectId = Annotated[
    str, Path(min_length=1, max_length=256, description="the data subject (1-256 characters)")
]


class _Body(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class GrantBody(_Body):
    purpose: PurposeId
    recipient: RecipientId | None = None
    effective_time: ApiTime | None = pydantic.Field(
        default=None, description="default now; a grant may start later, never earlier"
    )
    expires_at: ApiTime | None = None
    notice_version: NoticeVersion | None = None
    method: Literal["WEB_FORM", "API"] = "API"
    change_id: ChangeId | None = None


class WithdrawalBody(_Body):
    purpose: PurposeId
    recipient: RecipientId | None = None
    notice_version: NoticeVersion | None = None
    method: Literal["WEB_FORM", "API"] = "API"
    change_id: ChangeId | None = None
    effective_time: ApiTime | None = pydantic.Field(
        default=None, description="default now; earlier only with the operator token"
    )
    backdate_reason: Reason | None = pydantic.Field(
        default=None, description="why the withdrawal is backdated (operator path; logged)"
    )


class ErasureBody(_Body):
    change_id: ChangeId | None = None


class GpcBody(_Body):
    change_id: ChangeId | None = None


class TcfBody(_Body):
    tc_string: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=MAX_TC_STRING)]
    change_id: ChangeId | None = None


# -- responses -----------------------------------------------------------------------------
class ChangeReceipt(pydantic.BaseModel):
    change_id: str
    action: ConsentAction
    purpose: str | None
    recipient: str | None
    effective_time: datetime
    recorded_time: datetime
    topic: str
    partition: int
    offset: int


class Accepted(pydantic.BaseModel):
    changes: list[ChangeReceipt]


class Problem(pydantic.BaseModel):
    detail: str
    change_id: str | None = None


class FieldError(pydantic.BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Invalid(pydantic.BaseModel):
    detail: list[FieldError]


_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong bearer token"},
    422: {"model": Invalid, "description": "invalid or refused request (field path in loc)"},
    503: {
        "model": Problem,
        "description": "not acknowledged by the broker: retry with the same change_id",
    },
}


# -- auth -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # "client" | "operator"

    @property
    def operator(self) -> bool:
        return self.name == "operator"

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


_TOKEN = re.compile(r"[\x21-\x7e]{16,4096}")
"""A token: 16 or more visible ASCII characters (what fits a Bearer header as is)."""


class _Tokens:
    def __init__(self, token: str, operator_token: str | None) -> None:
        for name, value in (("API", token), ("operator", operator_token)):
            if value is not None and not _TOKEN.fullmatch(value):
                raise ValueError(
                    f"the {name} token must be 16 to 4096 visible ASCII characters (no spaces)"
                )
        if operator_token is not None and hmac.compare_digest(
            token.encode(), operator_token.encode()
        ):
            raise ValueError("the operator token must differ from the API token")
        self._tokens = [("client", token.encode())]
        if operator_token:
            self._tokens.append(("operator", operator_token.encode()))

    def caller(self, presented: str) -> Caller | None:
        given = presented.encode("utf-8", "surrogateescape")
        found = None
        for name, token in self._tokens:  # compare with every token: no early exit
            if hmac.compare_digest(given, token):
                found = Caller(name)
        return found


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")


# -- metrics ----------------------------------------------------------------------------------
class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "consentgate_api_requests",
            "HTTP requests by endpoint (route template) and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.changes = Counter(
            "consentgate_api_changes_accepted",
            "changes appended to consent-changes, by action and method",
            ["action", "method"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "consentgate_api_rejections",
            "refused requests (422), by field",
            ["field"],
            registry=self.registry,
        )
        self.append_seconds = Histogram(
            "consentgate_api_append_seconds",
            "time from append to the broker's acknowledgement of every change of a request",
            registry=self.registry,
        )
        self.append_failures = Counter(
            "consentgate_api_append_failures",
            "writes answered 503 (not acknowledged by the broker)",
            registry=self.registry,
        )


_FIELDS = frozenset(
    {
        "body",
        "subject_id",
        "sec-gpc",
        "gpc",
        "tc_string",
        "policy",
        *GrantBody.model_fields,
        *WithdrawalBody.model_fields,
        *TcfBody.model_fields,
    }
)


def _field_label(loc: Sequence[object]) -> str:
    """A bounded metric label for the field at ``loc`` (extra keys are the client's own)."""
    names = [p for p in loc if isinstance(p, str) and p not in ("body", "path", "header")]
    name = names[0] if names else "body"
    return name if name in _FIELDS else "other"


class _CountRequests:
    """Pure ASGI middleware: one count per HTTP request, by route template and status."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path_format", None) or "other"
            self.counter.labels(endpoint, str(status)).inc()


# -- errors -----------------------------------------------------------------------------------
def _text(value: object) -> str:
    """``value`` as text that always encodes as UTF-8 (lone surrogates escaped)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _loc_part(part: object) -> str | int:
    return part if isinstance(part, int) else _text(part)


def _invalid(errors: Sequence[dict[str, Any]]) -> JSONResponse:
    detail = [
        {
            "loc": [_loc_part(p) for p in e.get("loc", ())],
            "msg": _text(e.get("msg", "")),
            "type": _text(e.get("type", "value_error")),
        }
        for e in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _rejected_loc(exc: ValidationError) -> list[str | int]:
    """``["body", ...]``: the request field ``exc.path`` names (a TcfError's ``tcf_string``
    is the body's ``tc_string``)."""
    parts = [p for p in (exc.path or "").split(".") if p]
    if parts and parts[0] == "body":  # a rule over the whole change (to_change's fallback)
        parts = parts[1:]
    if parts and parts[0] == "tcf_string":
        parts[0] = "tc_string"
    return ["body", *parts]


def _unavailable(detail: str, change_id: str | None = None) -> JSONResponse:
    body = Problem(detail=detail, change_id=change_id).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class _AppendFailed(Exception):
    """The append was not acknowledged: 503 (the request's change id is safe to retry)."""

    def __init__(self, reason: str, change_id: str) -> None:
        super().__init__(reason)
        self.change_id = change_id


class _ReadFailed(Exception):
    """consent-state could not be read: 503."""


# -- readiness --------------------------------------------------------------------------------
def changelog_ready(changelog: ChangeLog, timeout: float = READY_TIMEOUT) -> bool:
    """Whether the changelog's producer gets the changes topic's metadata from the cluster."""
    producer = getattr(changelog, "_producer", None)  # ChangeLog has no public probe
    if producer is None:
        return False
    try:
        meta = producer.list_topics(changelog.topic, timeout=timeout)
    except KafkaException:
        return False
    found = meta.topics.get(changelog.topic)
    return found is not None and found.error is None and bool(found.partitions)


# -- the app ----------------------------------------------------------------------------------
class _Reads:
    """One StateReader, made on first use, used by one request at a time (it blocks)."""

    def __init__(self, factory: Callable[[], StateReader] | None) -> None:
        self.factory = factory
        self.reader: StateReader | None = None
        self.lock = threading.Lock()

    def read(self, subject_id: str) -> SubjectState:
        if self.factory is None:
            raise _ReadFailed("timeline reads are not configured on this instance")
        if not self.lock.acquire(timeout=READ_TIMEOUT):
            raise _ReadFailed("consent-state reads are busy; retry")
        try:
            try:
                if self.reader is None:
                    self.reader = self.factory()
                return self.reader.read(subject_id, READ_TIMEOUT)
            except (ConsentgateError, KafkaException, TimeoutError) as exc:
                log.warning("consent-state read failed: %s", exc)
                self._drop()
                raise _ReadFailed("consent-state cannot be read right now; retry") from exc
        finally:
            self.lock.release()

    def _drop(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # best effort: the reader is being replaced anyway
                log.debug("closing a failed StateReader", exc_info=True)

    def close(self) -> None:
        if self.lock.acquire(timeout=READ_TIMEOUT):
            try:
                self._drop()
            finally:
                self.lock.release()


class _Api:
    """What the routes share: the service, the tokens, the reads and the metrics."""

    def __init__(
        self,
        service: ConsentService,
        reads: _Reads,
        tokens: _Tokens,
        ready_check: Callable[[], bool],
    ) -> None:
        self.service = service
        self.reads = reads
        self.tokens = tokens
        self.ready_check = ready_check
        self.metrics = _Metrics()
        self.topic: str = service.changelog.topic

    def record(self, changes: list[ConsentChange], change_id: str) -> Accepted:
        """Append ``changes`` (blocking: run it in the threadpool)."""
        started = time.monotonic()
        try:
            receipts = self.service.record(changes, APPEND_TIMEOUT)
        except (AppendError, KafkaException, TimeoutError) as exc:
            self.metrics.append_failures.inc()
            log.warning("append of change %s failed: %s", change_id, exc)
            raise _AppendFailed(str(exc), change_id) from exc
        self.metrics.append_seconds.observe(time.monotonic() - started)
        for change in changes:
            self.metrics.changes.labels(change.action.value, change.method.value).inc()
        return Accepted(
            changes=[_receipt(c, r, self.topic) for c, r in zip(changes, receipts, strict=True)]
        )

    async def write(self, build: Callable[[], list[ConsentChange]], change_id: str) -> Accepted:
        """Build the changes and append them, off the event loop (both may block)."""

        def run() -> Accepted:
            return self.record(build(), change_id)

        return await run_in_threadpool(run)

    async def change(
        self, subject_id: str, action: ConsentAction, fields: dict[str, Any], caller: Caller
    ) -> Accepted:
        """One grant, withdrawal or erasure through the service's rules."""
        change_id = fields.get("change_id") or str(uuid.uuid4())

        def build() -> list[ConsentChange]:
            request = ChangeRequest(
                subject_id=subject_id, action=action, **{**fields, "change_id": change_id}
            )
            return [self.service.change(request, actor=caller.actor, operator=caller.operator)]

        return await self.write(build, change_id)

    def count_rejections(self, errors: Sequence[dict[str, Any]]) -> None:
        for e in errors:
            self.metrics.rejections.labels(_field_label(e.get("loc", ()))).inc()


def _api(request: Request) -> _Api:
    api: _Api = request.app.state.api
    return api


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    caller = None if credentials is None else _api(request).tokens.caller(credentials.credentials)
    if caller is None:
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return caller


Authenticated = Annotated[Caller, Depends(_caller)]
Shared = Annotated[_Api, Depends(_api)]


def create_app(
    service: ConsentService,
    reader_factory: Callable[[], StateReader] | None,
    *,
    token: str,
    operator_token: str | None = None,
    ready_check: Callable[[], bool] | None = None,
    console: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    """The API over ``service``; reads use one StateReader from ``reader_factory`` (None:
    timeline reads answer 503). ``ready_check`` (blocking; default: the changelog's producer
    gets the changes topic's metadata) decides ``/readyz``. ValueError for unusable tokens.
    ``console`` mounts the web console (:func:`consentgate.console.mount_console`).
    """
    changelog = service.changelog
    reads = _Reads(reader_factory)
    api = _Api(
        service,
        reads,
        _Tokens(token, operator_token),
        ready_check or (lambda: changelog_ready(changelog)),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(reads.close)

    app = FastAPI(
        title="consentgate consent API",
        version="1",
        description="Record consent (grants, withdrawals, erasure, GPC, TCF) and read it back.",
        lifespan=lifespan,
    )
    app.state.api = api
    _document_policy_names(app, service.policy)
    app.add_middleware(_CountRequests, counter=api.metrics.requests)
    _add_error_handlers(app, api)
    _add_change_routes(app)
    _add_signal_routes(app)
    _add_read_routes(app)
    if console is not None:
        console(app)
    return app


def _document_policy_names(app: FastAPI, policy: Policy) -> None:
    """List the policy's purposes and recipients as ``enum`` in the OpenAPI document.

    The bodies validate only the id patterns; the service refuses names the policy does
    not declare (422 ``rejected``). The document says which names exist, so that clients and
    schema-driven fuzzers know the valid values.
    """
    purposes = sorted(policy.purposes)
    recipients = [r.id for r in policy.recipients]
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = generate().get("components", {}).get("schemas", {})
            for name in (GrantBody.__name__, WithdrawalBody.__name__):
                properties = schemas.get(name, {}).get("properties", {})
                if "purpose" in properties:
                    properties["purpose"]["enum"] = purposes
                for branch in properties.get("recipient", {}).get("anyOf", []):
                    if branch.get("type") == "string" and recipients:
                        branch["enum"] = recipients
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook


def _add_error_handlers(app: FastAPI, api: _Api) -> None:
    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        api.count_rejections(errors)
        return _invalid(errors)

    @app.exception_handler(ValidationError)  # Rejected, TcfError: the service's rules
    async def rejected(_: Request, exc: ValidationError) -> JSONResponse:
        error = {"loc": _rejected_loc(exc), "msg": str(exc), "type": "rejected"}
        api.count_rejections([error])
        return _invalid([error])

    @app.exception_handler(pydantic.ValidationError)
    async def model_invalid(_: Request, exc: pydantic.ValidationError) -> JSONResponse:
        # a model built from a valid body refused it (a rule the body does not mirror)
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        api.count_rejections(errors)
        return _invalid(errors)

    @app.exception_handler(_AppendFailed)
    async def append_failed(_: Request, exc: _AppendFailed) -> JSONResponse:
        return _unavailable(
            "the consent change was not acknowledged by the broker; retry with change_id "
            f"{exc.change_id!r} (the same id makes the retry safe)",
            exc.change_id,
        )

    @app.exception_handler(_ReadFailed)
    async def read_failed(_: Request, exc: _ReadFailed) -> JSONResponse:
        return _unavailable(str(exc))


def _write_route(path: str, summary: str, tag: str = "consent") -> dict[str, Any]:
    return {
        "path": f"/v1/subjects/{{subject_id:path}}/{path}",
        "status_code": 202,
        "response_model": Accepted,
        "responses": _WRITE_RESPONSES,
        "tags": [tag],
        "summary": summary,
    }


def _add_change_routes(app: FastAPI) -> None:
    @app.post(**_write_route("grants", "grant a purpose (for a recipient)"))
    async def grant(
        subject_id: SubjectId, body: GrantBody, caller: Authenticated, api: Shared
    ) -> Accepted:
        return await api.change(subject_id, ConsentAction.GRANT, body.model_dump(), caller)

    @app.post(
        **_write_route(
            "withdrawals", "withdraw a purpose (backdated: operator token and backdate_reason)"
        )
    )
    async def withdraw(
        subject_id: SubjectId, body: WithdrawalBody, caller: Authenticated, api: Shared
    ) -> Accepted:
        return await api.change(subject_id, ConsentAction.WITHDRAW, body.model_dump(), caller)

    @app.post(**_write_route("erasure", "erase the subject: every grant ends"))
    async def erase(
        subject_id: SubjectId,
        caller: Authenticated,
        api: Shared,
        body: Annotated[ErasureBody | None, Body()] = None,
    ) -> Accepted:
        fields = {"change_id": body.change_id if body else None}
        return await api.change(subject_id, ConsentAction.ERASE, fields, caller)


def _add_signal_routes(app: FastAPI) -> None:
    @app.post(
        **_write_route(
            "gpc", "record a Global Privacy Control opt-out (Sec-GPC: 1 or a JSON body)", "signals"
        )
    )
    async def gpc(
        subject_id: SubjectId,
        caller: Authenticated,
        api: Shared,
        body: Annotated[GpcBody | None, Body()] = None,
        sec_gpc: Annotated[
            str | None, Header(description="1: the GPC signal (the only value the spec defines)")
        ] = None,
    ) -> Accepted:
        if sec_gpc is not None and sec_gpc.strip() != "1":
            raise _request_invalid(
                ("header", "sec-gpc"),
                "Sec-GPC must be 1 (the only value the GPC spec defines)",
                "value_error",
            )
        if sec_gpc is None and body is None:
            raise _request_invalid(
                ("body",), "a GPC signal needs the Sec-GPC: 1 header or a JSON body", "missing"
            )
        change_id = (body.change_id if body else None) or str(uuid.uuid4())

        def build() -> list[ConsentChange]:
            return api.service.gpc(subject_id, change_id=change_id, actor=caller.actor)

        return await api.write(build, change_id)

    @app.post(
        **_write_route(
            "tcf",
            "record an IAB TCF v2.2 TC string (the grants and withdrawals it maps to)",
            "signals",
        )
    )
    async def tcf(
        subject_id: SubjectId, body: TcfBody, caller: Authenticated, api: Shared
    ) -> Accepted:
        change_id = body.change_id or str(uuid.uuid4())

        def build() -> list[ConsentChange]:
            return api.service.tcf(
                subject_id, body.tc_string, change_id=change_id, actor=caller.actor
            )

        return await api.write(build, change_id)


def _add_read_routes(app: FastAPI) -> None:
    @app.get(
        "/v1/subjects/{subject_id:path}/timeline",
        responses={
            401: _WRITE_RESPONSES[401],
            404: {"model": Problem, "description": "no consent record for the subject"},
            422: _WRITE_RESPONSES[422],
            503: {"model": Problem, "description": "consent-state cannot be read: retry"},
        },
        tags=["consent"],
        summary="the subject's consent timeline from consent-state",
    )
    async def timeline(subject_id: SubjectId, caller: Authenticated, api: Shared) -> dict[str, Any]:
        state = await run_in_threadpool(api.reads.read, subject_id)
        if state.status == "missing":
            raise HTTPException(404, "no consent record for this subject in consent-state")
        return render_state(state)

    @app.get("/healthz", tags=["ops"], summary="200 while the process runs")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="200 once the changes topic answers a metadata request; 503 otherwise",
        responses={503: {"model": Problem, "description": "not ready"}},
    )
    async def readyz(api: Shared) -> JSONResponse:
        if await run_in_threadpool(api.ready_check):
            return JSONResponse({"status": "ready"})
        return _unavailable(f"the changes topic {api.topic} is not reachable")

    @app.get(
        "/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse
    )
    async def metrics(api: Shared) -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(api.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )


def _request_invalid(loc: tuple[str, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def _receipt(change: ConsentChange, receipt: Receipt, topic: str) -> ChangeReceipt:
    return ChangeReceipt(
        change_id=receipt.change_id,
        action=change.action,
        purpose=change.purpose,
        recipient=change.recipient,
        effective_time=change.effective_time,
        recorded_time=change.recorded_time,
        topic=topic,
        partition=receipt.partition,
        offset=receipt.offset,
    )
