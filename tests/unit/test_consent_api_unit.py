"""The consent HTTP API over a fake changelog: auth, validation (422 with the field path),
the backdating rules, GPC and TCF, the OpenAPI document, 503 on a failed append, reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentgate.consent.api import create_app
from consentgate.consent.changelog import AppendError, Receipt
from consentgate.consent.gpc import gpc_keys
from consentgate.consent.service import ConsentService
from consentgate.consent.state_reader import SubjectState
from consentgate.consent.timeline import Timeline, apply
from consentgate.errors import ConsentgateError
from consentgate.models.consent import ConsentChange
from consentgate.policy.load import load_policy
from consentgate.router.config import DEFAULT_POLICY
from consentgate.serde import Serde
from tests.unit.tcf_encode import encode

pytestmark = pytest.mark.unit

TOKEN = "client-token-0123456789"
OPERATOR = "operator-token-0123456789"
CLIENT = {"Authorization": f"Bearer {TOKEN}"}
OPS = {"Authorization": f"Bearer {OPERATOR}"}
TOPIC = "consent.changes.test"
POLICY = load_policy(DEFAULT_POLICY)
SERDE = Serde()


class FakeChangeLog:
    """Stands in for ChangeLog: encodes each change (as the real one would) and numbers it."""

    topic = TOPIC

    def __init__(self) -> None:
        self.appended: list[ConsentChange] = []
        self.fail: Exception | None = None
        self.on_loop: list[bool] = []

    def append(self, changes: Sequence[ConsentChange], timeout: float = 35.0) -> list[Receipt]:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        if self.fail is not None:
            raise self.fail
        receipts = []
        for change in changes:
            SERDE.encode(change)
            receipts.append(Receipt(change.change_id, change.subject_id, 0, len(self.appended)))
            self.appended.append(change)
        return receipts


class FakeReader:
    def __init__(self, states: dict[str, SubjectState], fail: Exception | None = None) -> None:
        self.states = states
        self.fail = fail

    def read(self, subject_id: str, timeout: float = 60.0) -> SubjectState:
        if self.fail is not None:
            raise self.fail
        return self.states.get(subject_id, SubjectState(subject_id, 0, "missing", None))

    def close(self) -> None:
        pass


@pytest.fixture
def changelog() -> FakeChangeLog:
    return FakeChangeLog()


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader({})


@pytest.fixture
def ready() -> list[bool]:
    return [True]


@pytest.fixture
def client(changelog: FakeChangeLog, reader: FakeReader, ready: list[bool]) -> Iterator[TestClient]:
    service = ConsentService(POLICY, changelog)  # type: ignore[arg-type]  # a fake
    app = create_app(
        service,
        lambda: reader,  # type: ignore[arg-type,return-value]
        token=TOKEN,
        operator_token=OPERATOR,
        ready_check=lambda: ready[0],
    )
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


def past(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def future(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def only_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    for error in detail:
        assert set(error) == {"loc", "msg", "type"}
    first: dict[str, Any] = detail[0]
    return first


# -- auth -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["missing", "wrong", "basic", "no-scheme", "longer"],
)
def test_writes_and_reads_need_the_bearer_token(
    client: TestClient, changelog: FakeChangeLog, headers: dict[str, str]
) -> None:
    for response in (
        client.post("/v1/subjects/s1/grants", json={"purpose": "analytics"}, headers=headers),
        client.post("/v1/subjects/s1/erasure", headers=headers),
        client.post("/v1/subjects/s1/gpc", headers={**headers, "Sec-GPC": "1"}),
        client.get("/v1/subjects/s1/timeline", headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert TOKEN not in response.text
    assert changelog.appended == []


def test_a_missing_token_is_401_before_the_body_is_judged(client: TestClient) -> None:
    response = client.post("/v1/subjects/s1/grants", json={"purpose": "no such", "x": 1})
    assert response.status_code == 401


def test_ops_endpoints_need_no_token(client: TestClient, ready: list[bool]) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    ready[0] = False
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert TOPIC in not_ready.json()["detail"]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "consentgate_api_requests_total" in metrics.text


@pytest.mark.parametrize(
    ("token", "operator"),
    [("", None), ("short", None), ("with space 0123456789", None), (TOKEN, TOKEN)],
)
def test_unusable_tokens_are_refused(token: str, operator: str | None) -> None:
    service = ConsentService(POLICY, FakeChangeLog())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token"):
        create_app(service, None, token=token, operator_token=operator)


# -- grants -----------------------------------------------------------------------------------
def test_a_grant_is_appended_and_answered_202_with_its_receipt(
    client: TestClient, changelog: FakeChangeLog
) -> None:
    body = {
        "purpose": "partner_sharing",
        "recipient": "kaede-trading",
        "notice_version": "2025-04",
        "method": "WEB_FORM",
        "change_id": "form-123",
        "expires_at": future(days=30),
    }
    response = client.post("/v1/subjects/alice/grants", json=body, headers=CLIENT)
    assert response.status_code == 202, response.text
    (receipt,) = response.json()["changes"]
    (change,) = changelog.appended
    assert receipt == {
        "change_id": "form-123",
        "action": "GRANT",
        "purpose": "partner_sharing",
        "recipient": "kaede-trading",
        "effective_time": receipt["effective_time"],
        "recorded_time": receipt["recorded_time"],
        "topic": TOPIC,
        "partition": 0,
        "offset": 0,
    }
    assert datetime.fromisoformat(receipt["effective_time"]) == change.effective_time
    assert change.subject_id == "alice"
    assert change.actor == "api:client"
    assert change.method == "WEB_FORM"
    assert change.notice_version == "2025-04"
    assert changelog.on_loop == [False]  # the blocking append ran off the event loop


def test_a_grant_without_change_id_gets_one_and_method_api(
    client: TestClient, changelog: FakeChangeLog
) -> None:
    response = client.post("/v1/subjects/bob/grants", json={"purpose": "analytics"}, headers=CLIENT)
    assert response.status_code == 202
    (change,) = changelog.appended
    assert change.change_id == response.json()["changes"][0]["change_id"]
    assert change.method == "API"


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({}, ["body", "purpose"], "missing"),
        ({"purpose": "Not A Purpose"}, ["body", "purpose"], "string_pattern_mismatch"),
        ({"purpose": "analytics", "recipient": "_x"}, ["body", "recipient"], None),
        ({"purpose": "analytics", "method": "IMPORT"}, ["body", "method"], "literal_error"),
        ({"purpose": "analytics", "method": "GPC"}, ["body", "method"], "literal_error"),
        ({"purpose": "analytics", "change_id": "-x"}, ["body", "change_id"], None),
        ({"purpose": "analytics", "change_id": "x" * 129}, ["body", "change_id"], None),
        (
            {"purpose": "analytics", "effective_time": "2030-01-01T00:00:00"},
            ["body", "effective_time"],
            "timezone_aware",
        ),
        (
            {"purpose": "analytics", "effective_time": "0001-01-01T00:00:00+01:00"},
            ["body", "effective_time"],
            "value_error",
        ),
        ({"purpose": "analytics", "notice_version": "v" * 129}, ["body", "notice_version"], None),
        ({"purpose": "analytics", "surprise": 1}, ["body", "surprise"], "extra_forbidden"),
        ({"purpose": "analytics", "backdate_reason": "abc"}, ["body", "backdate_reason"], None),
        ({"purpose": "marketing"}, ["body", "purpose"], "rejected"),
        ({"purpose": "partner_sharing", "recipient": "acme"}, ["body", "recipient"], "rejected"),
        (
            {"purpose": "analytics", "effective_time": past(hours=1)},
            ["body", "effective_time"],
            "rejected",
        ),
        (
            {"purpose": "analytics", "effective_time": future(days=400)},
            ["body", "effective_time"],
            "rejected",
        ),
        ({"purpose": "analytics", "expires_at": past(days=1)}, ["body"], "rejected"),
    ],
    ids=[
        "no-purpose",
        "purpose-pattern",
        "recipient-pattern",
        "method-import",
        "method-gpc",
        "change-id-pattern",
        "change-id-long",
        "naive-time",
        "time-out-of-range",
        "notice-long",
        "extra-field",
        "reason-on-grant",
        "unknown-purpose",
        "unknown-recipient",
        "backdated-grant",
        "too-far-ahead",
        "expires-before-effective",
    ],
)
def test_an_invalid_grant_is_422_with_the_field_path(
    client: TestClient,
    changelog: FakeChangeLog,
    body: dict[str, Any],
    loc: list[str],
    kind: str | None,
) -> None:
    error = only_error(client.post("/v1/subjects/s1/grants", json=body, headers=CLIENT))
    assert error["loc"] == loc
    if kind is not None:
        assert error["type"] == kind
    assert error["msg"]
    assert changelog.appended == []


def test_a_rejection_names_the_policy_in_its_message(client: TestClient) -> None:
    error = only_error(
        client.post("/v1/subjects/s1/grants", json={"purpose": "marketing"}, headers=CLIENT)
    )
    assert "unknown purpose 'marketing'" in error["msg"]
    error = only_error(
        client.post(
            "/v1/subjects/s1/grants",
            json={"purpose": "analytics", "effective_time": past(minutes=5)},
            headers=CLIENT,
        )
    )
    assert "cannot take effect before it is recorded" in error["msg"]


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/v1/subjects//grants", "string_too_short"), (f"/v1/subjects/{'s' * 257}/grants", None)],
)
def test_a_subject_id_must_have_1_to_256_characters(
    client: TestClient, path: str, kind: str | None
) -> None:
    error = only_error(client.post(path, json={"purpose": "analytics"}, headers=CLIENT))
    assert error["loc"] == ["path", "subject_id"]
    if kind:
        assert error["type"] == kind
    ok = client.post(
        f"/v1/subjects/{'s' * 256}/grants", json={"purpose": "analytics"}, headers=CLIENT
    )
    assert ok.status_code == 202


def test_a_subject_id_may_contain_a_slash(client: TestClient, changelog: FakeChangeLog) -> None:
    response = client.post(
        "/v1/subjects/tenant%2F42/grants", json={"purpose": "analytics"}, headers=CLIENT
    )
    assert response.status_code == 202, response.text
    assert changelog.appended[0].subject_id == "tenant/42"


@pytest.mark.parametrize(
    "content",
    [
        b'{"purpose": "analytics", "notice_version": "\\ud800"}',
        b'{"purpose": "analytics", "\\udc00": 1}',
        b'{"purpose": ',
        b"\xff\xfe\x00",
        b"[" * 50_000,
        b"null",
        b'"analytics"',
    ],
    ids=["surrogate-value", "surrogate-key", "truncated", "not-utf8", "deep", "null", "string"],
)
def test_malformed_bodies_are_4xx_never_5xx(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/v1/subjects/s1/grants",
        content=content,
        headers={**CLIENT, "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    response.json()


# -- withdrawals ------------------------------------------------------------------------------
def test_a_withdrawal_is_accepted(client: TestClient, changelog: FakeChangeLog) -> None:
    response = client.post(
        "/v1/subjects/s1/withdrawals",
        json={"purpose": "partner_sharing", "recipient": "minato-bank", "change_id": "w-1"},
        headers=CLIENT,
    )
    assert response.status_code == 202, response.text
    (change,) = changelog.appended
    assert (change.action, change.change_id, change.recipient) == ("WITHDRAW", "w-1", "minato-bank")


def test_a_backdated_withdrawal_needs_the_operator_token(
    client: TestClient, changelog: FakeChangeLog
) -> None:
    body = {"purpose": "analytics", "effective_time": past(days=2), "backdate_reason": "phone call"}
    error = only_error(client.post("/v1/subjects/s1/withdrawals", json=body, headers=CLIENT))
    assert error["loc"] == ["body", "effective_time"]
    assert error["type"] == "rejected"
    assert "operator" in error["msg"]
    assert changelog.appended == []


def test_a_backdated_withdrawal_needs_a_reason_even_for_the_operator(
    client: TestClient, changelog: FakeChangeLog
) -> None:
    body = {"purpose": "analytics", "effective_time": past(days=2)}
    error = only_error(client.post("/v1/subjects/s1/withdrawals", json=body, headers=OPS))
    assert error["loc"] == ["body", "backdate_reason"]
    assert changelog.appended == []


def test_the_operator_may_backdate_a_withdrawal_with_a_reason(
    client: TestClient, changelog: FakeChangeLog, caplog: pytest.LogCaptureFixture
) -> None:
    when = past(days=2)
    body = {
        "purpose": "analytics",
        "effective_time": when,
        "backdate_reason": "subject withdrew by phone on that day",
        "change_id": "backdate-1",
    }
    with caplog.at_level("WARNING", logger="consentgate.consent.service"):
        response = client.post("/v1/subjects/s1/withdrawals", json=body, headers=OPS)
    assert response.status_code == 202, response.text
    (change,) = changelog.appended
    assert change.effective_time < change.recorded_time
    assert change.effective_time == datetime.fromisoformat(when).replace(
        microsecond=datetime.fromisoformat(when).microsecond // 1000 * 1000
    )
    assert change.actor == "api:operator"
    assert "backdated" in caplog.text and "subject withdrew by phone" in caplog.text
    assert OPERATOR not in caplog.text and TOKEN not in caplog.text


def test_a_reason_without_backdating_is_refused(client: TestClient) -> None:
    body = {"purpose": "analytics", "backdate_reason": "no reason really"}
    error = only_error(client.post("/v1/subjects/s1/withdrawals", json=body, headers=OPS))
    assert error["loc"] == ["body", "backdate_reason"]


def test_the_operator_cannot_backdate_a_grant(client: TestClient) -> None:
    body = {"purpose": "analytics", "effective_time": past(days=1)}
    error = only_error(client.post("/v1/subjects/s1/grants", json=body, headers=OPS))
    assert error["loc"] == ["body", "effective_time"]


# -- erasure, GPC, TCF ------------------------------------------------------------------------
def test_an_erasure_needs_no_body(client: TestClient, changelog: FakeChangeLog) -> None:
    assert client.post("/v1/subjects/s1/erasure", headers=CLIENT).status_code == 202
    response = client.post("/v1/subjects/s2/erasure", json={"change_id": "erase-2"}, headers=CLIENT)
    assert response.status_code == 202
    assert [(c.action, c.subject_id) for c in changelog.appended] == [
        ("ERASE", "s1"),
        ("ERASE", "s2"),
    ]
    assert changelog.appended[1].change_id == "erase-2"
    error = only_error(
        client.post("/v1/subjects/s3/erasure", json={"purpose": "analytics"}, headers=CLIENT)
    )
    assert error["loc"] == ["body", "purpose"]


def test_gpc_by_header(client: TestClient, changelog: FakeChangeLog) -> None:
    response = client.post("/v1/subjects/s1/gpc", headers={**CLIENT, "Sec-GPC": "1"})
    assert response.status_code == 202, response.text
    keys = gpc_keys(POLICY)
    assert len(response.json()["changes"]) == len(keys) > 0
    assert {(c.purpose, c.recipient) for c in changelog.appended} == set(keys)
    assert {(c.action, c.method) for c in changelog.appended} == {("WITHDRAW", "GPC")}


def test_gpc_by_body_with_a_change_id(client: TestClient, changelog: FakeChangeLog) -> None:
    response = client.post("/v1/subjects/s1/gpc", json={"change_id": "gpc-7"}, headers=CLIENT)
    assert response.status_code == 202, response.text
    ids = [c["change_id"] for c in response.json()["changes"]]
    assert ids == [c.change_id for c in changelog.appended]
    assert all(i.startswith("gpc-7.partner_sharing.") for i in ids)


def test_gpc_needs_the_header_or_a_body(client: TestClient, changelog: FakeChangeLog) -> None:
    error = only_error(client.post("/v1/subjects/s1/gpc", headers=CLIENT))
    assert error["loc"] == ["body"]
    error = only_error(client.post("/v1/subjects/s1/gpc", headers={**CLIENT, "Sec-GPC": "0"}))
    assert error["loc"] == ["header", "sec-gpc"]
    error = only_error(
        client.post("/v1/subjects/s1/gpc", json={"change_id": "g", "x": 1}, headers=CLIENT)
    )
    assert error["loc"] == ["body", "x"]
    assert changelog.appended == []


def test_a_tc_string_becomes_grants_and_withdrawals(
    client: TestClient, changelog: FakeChangeLog
) -> None:
    tc = encode(purpose_consents=frozenset({1, 3, 4, 8, 9}), vendor_consents=frozenset({9001}))
    response = client.post(
        "/v1/subjects/s1/tcf", json={"tc_string": tc, "change_id": "cmp-1"}, headers=CLIENT
    )
    assert response.status_code == 202, response.text
    got = {(c.purpose, c.recipient): c.action for c in changelog.appended}
    assert got[("analytics", None)] == "GRANT"
    assert got[("partner_sharing", "kaede-trading")] == "GRANT"
    assert got[("partner_sharing", "minato-bank")] == "WITHDRAW"
    assert {c.method for c in changelog.appended} == {"TCF"}
    assert all(c.tcf_string == tc for c in changelog.appended)


@pytest.mark.parametrize("tc", ["not a tc string", "AAAA", "Bxxxxxxxxxxx"])
def test_an_invalid_tc_string_is_422_at_tc_string(
    client: TestClient, changelog: FakeChangeLog, tc: str
) -> None:
    error = only_error(client.post("/v1/subjects/s1/tcf", json={"tc_string": tc}, headers=CLIENT))
    assert error["loc"][:2] == ["body", "tc_string"]
    assert error["type"] == "rejected"
    assert changelog.appended == []


def test_a_tc_string_is_required(client: TestClient) -> None:
    error = only_error(client.post("/v1/subjects/s1/tcf", json={}, headers=CLIENT))
    assert error["loc"] == ["body", "tc_string"]


# -- the broker -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "failure",
    [AppendError("consent change x: Local: Message timed out"), TimeoutError()],
    ids=["append-error", "timeout"],
)
def test_an_unacknowledged_append_is_503_with_retry_after(
    client: TestClient, changelog: FakeChangeLog, failure: Exception
) -> None:
    changelog.fail = failure
    response = client.post(
        "/v1/subjects/s1/grants",
        json={"purpose": "analytics", "change_id": "retry-me"},
        headers=CLIENT,
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["change_id"] == "retry-me"
    assert "retry-me" in response.json()["detail"]
    # without a change id the answer names the one the service chose, for the retry
    response = client.post("/v1/subjects/s1/gpc", headers={**CLIENT, "Sec-GPC": "1"})
    assert response.status_code == 503
    assert response.json()["change_id"]


# -- reads ------------------------------------------------------------------------------------
def _present(subject: str, changes: list[ConsentChange]) -> SubjectState:
    timeline: Timeline | None = None
    for change in changes:
        timeline = apply(timeline, change)
    return SubjectState(subject, 1, "present", timeline)


def test_the_timeline_read(
    client: TestClient, reader: FakeReader, changelog: FakeChangeLog
) -> None:
    for action in ("grants", "withdrawals"):
        client.post(f"/v1/subjects/carol/{action}", json={"purpose": "analytics"}, headers=CLIENT)
    reader.states["carol"] = _present("carol", changelog.appended)
    reader.states["gone"] = SubjectState("gone", 2, "erased", None)
    response = client.get("/v1/subjects/carol/timeline", headers=CLIENT)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["status"] == "present"
    (grant,) = data["grants"]
    (interval,) = grant["intervals"]
    assert interval["end"] is not None
    assert [c["change_id"] for c in data["changes"]] == [c.change_id for c in changelog.appended]
    erased = client.get("/v1/subjects/gone/timeline", headers=OPS)
    assert erased.status_code == 200
    assert erased.json() == {"subject_id": "gone", "partition": 2, "status": "erased"}
    missing = client.get("/v1/subjects/nobody/timeline", headers=CLIENT)
    assert missing.status_code == 404
    assert isinstance(missing.json()["detail"], str)


def test_a_failed_read_is_503(client: TestClient, reader: FakeReader) -> None:
    reader.fail = ConsentgateError("consent-state topic consent.state.v1 not found")
    response = client.get("/v1/subjects/carol/timeline", headers=CLIENT)
    assert response.status_code == 503
    assert "Retry-After" in response.headers


def test_reads_without_a_reader_factory_are_503() -> None:
    service = ConsentService(POLICY, FakeChangeLog())  # type: ignore[arg-type]
    with TestClient(create_app(service, None, token=TOKEN, ready_check=lambda: True)) as client:
        assert client.get("/v1/subjects/a/timeline", headers=CLIENT).status_code == 503
        # without an operator token the operator path is closed
        body = {"purpose": "analytics", "effective_time": past(days=1), "backdate_reason": "abc"}
        assert client.post("/v1/subjects/a/withdrawals", json=body, headers=OPS).status_code == 401


# -- the document and the metrics -------------------------------------------------------------
def test_the_openapi_document_lists_every_endpoint(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    subject = "/v1/subjects/{subject_id}"
    operations = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert operations == {
        (f"{subject}/grants", "post"),
        (f"{subject}/withdrawals", "post"),
        (f"{subject}/erasure", "post"),
        (f"{subject}/gpc", "post"),
        (f"{subject}/tcf", "post"),
        (f"{subject}/timeline", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    grants = doc["paths"][f"{subject}/grants"]["post"]
    assert {"202", "401", "422", "503"} <= set(grants["responses"])
    assert grants["security"] == [{"HTTPBearer": []}]
    (param,) = [p for p in grants["parameters"] if p["name"] == "subject_id"]
    assert (param["schema"]["minLength"], param["schema"]["maxLength"]) == (1, 256)
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in doc["paths"]["/healthz"]["get"]
    body = doc["components"]["schemas"]["GrantBody"]
    assert body["additionalProperties"] is False
    assert body["properties"]["purpose"]["enum"] == sorted(POLICY.purposes)
    (named,) = [b for b in body["properties"]["recipient"]["anyOf"] if b.get("type") == "string"]
    assert named["enum"] == [r.id for r in POLICY.recipients]
    gpc = doc["paths"][f"{subject}/gpc"]["post"]
    assert any(p["name"] == "sec-gpc" and p["in"] == "header" for p in gpc["parameters"])


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_metrics_count_requests_changes_rejections_and_append_time(
    client: TestClient, changelog: FakeChangeLog
) -> None:
    client.post("/v1/subjects/s1/grants", json={"purpose": "analytics"}, headers=CLIENT)
    client.post("/v1/subjects/s1/grants", json={"purpose": "marketing"}, headers=CLIENT)
    client.post("/v1/subjects/s1/grants", json={"purpose": "analytics", "zzz": 1}, headers=CLIENT)
    client.post("/v1/subjects/s1/gpc", headers={**CLIENT, "Sec-GPC": "1"})
    client.post("/v1/subjects/s1/grants", json={"purpose": "analytics"})
    text = client.get("/metrics").text
    grants = "/v1/subjects/{subject_id}/grants"
    requests = "consentgate_api_requests_total"
    assert metric(text, requests, endpoint=grants, status="202") == 1
    assert metric(text, requests, endpoint=grants, status="422") == 2
    assert metric(text, requests, endpoint=grants, status="401") == 1
    changes = "consentgate_api_changes_accepted_total"
    assert metric(text, changes, action="GRANT", method="API") == 1
    assert metric(text, changes, action="WITHDRAW", method="GPC") == len(gpc_keys(POLICY))
    assert metric(text, "consentgate_api_rejections_total", field="purpose") == 1
    assert metric(text, "consentgate_api_rejections_total", field="other") == 1  # "zzz"
    assert metric(text, "consentgate_api_append_seconds_count") == 2
    assert "s1" not in text  # no subject ids in labels


def test_each_app_has_its_own_registry(changelog: FakeChangeLog) -> None:
    make: Callable[[], Any] = lambda: create_app(  # noqa: E731
        ConsentService(POLICY, changelog),  # type: ignore[arg-type]
        None,
        token=TOKEN,
        ready_check=lambda: True,
    )
    with TestClient(make()) as one, TestClient(make()) as two:
        one.post("/v1/subjects/s1/grants", json={"purpose": "analytics"}, headers=CLIENT)
        text = two.get("/metrics").text
    assert metric(text, "consentgate_api_changes_accepted_total") == 0
