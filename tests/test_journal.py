"""The request journal: what the middleware records, and the entries built when it is read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.clock import VirtualClock
from mock_runbase.control_spec import QueryCheck, load_control_spec
from mock_runbase.errors import RunbaseError
from mock_runbase.journal import MAX_BODY, JournalMiddleware, note_answer
from mock_runbase.journal_records import Exchange, JournalFilter, status_matches
from mock_runbase.spec import compile_schema
from mock_runbase.store import MemoryStore
from tests.conftest import KEY, OTHER_KEY, Mock


def exchange(**changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "at_ms": 1_780_315_200_000,
        "method": "POST",
        "path": "/v1/runs",
        "query": b"a=1&b=%20",
        "headers": [(b"host", b"mock.test"), (b"authorization", b"Bearer sk-test-alice")],
        "body": b'{"model": "x"}',
        "status": 200,
        "duration_s": 0.0123456,
        "error_code": None,
        "run_id": "run_1",
        "account": "acct_1",
        "model": "openai/gpt-image-2",
        "run_status": "pending",
        "retry_after": None,
        "wall_at_ms": 1_780_315_200_250,
    }
    return Exchange(**{**fields, **changes})


class Recorder:
    """The middleware around ``app``, recording into a MemoryStore; accounts from a dict."""

    def __init__(self, app: ASGIApp, accounts: dict[str, str] | None = None) -> None:
        self.store = MemoryStore(None)
        self.accounts = accounts if accounts is not None else {}
        clock = VirtualClock()
        self.middleware = JournalMiddleware(
            app,
            clock=lambda: clock,
            record=self.store.record,
            account_of=lambda header: self.accounts.get(header or ""),
        )

    def call(
        self, path: str = "/v1/runs/run_9", body: list[bytes] | None = None, **scope: Any
    ) -> None:
        """One request (``body`` in chunks); ``scope`` adds to or replaces scope keys."""
        chunks = list(body or [b""])

        async def receive() -> Message:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message: Message) -> None:
            pass

        full_scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": b"",
            "headers": [(b"authorization", b"Bearer sk-test-alice")],
            **scope,
        }
        asyncio.run(self.middleware(full_scope, receive, send))

    def entries(self) -> list[dict[str, Any]]:
        return [entry.view() for entry in asyncio.run(self.store.journal(JournalFilter()))]


def answering(content: Any, *, noted: bool = True, read_body: bool = False) -> ASGIApp:
    """An app answering ``content`` as JSON, telling the journal about it when ``noted``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if read_body:
            while (await receive()).get("more_body"):
                pass
        body = repr(content).encode()
        if noted:
            note_answer(scope, content, len(body))
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


# --- an entry is built from the raw exchange when the journal is read ------------------------


def test_an_entry_decodes_and_redacts_the_raw_exchange() -> None:
    entry = exchange().entry(7)
    assert entry.view() == {
        "seq": 7,
        "at": "2026-06-01T12:00:00.000Z",
        "method": "POST",
        "path": "/v1/runs",
        "query": "a=1&b=%20",
        "headers": {"host": "mock.test", "authorization": "Bearer ****lice"},
        "body": '{"model": "x"}',
        "status": 200,
        "errorCode": None,
        "runId": "run_1",
        "durationMs": 12.346,
        "keyLast4": "lice",
        "account": "acct_1",
        "dropped": False,
        "model": "openai/gpt-image-2",
        "runStatus": "pending",
        "retryAfter": None,
        "wallAt": "2026-06-01T12:00:00.250Z",
    }


def test_an_entry_of_a_dropped_exchange_without_a_key() -> None:
    entry = exchange(status=None, headers=[(b"x-other", b"\xc3\xa9")], body=b"\xff").entry(1)
    assert (entry.status, entry.dropped, entry.key_last4) == (None, True, None)
    assert entry.headers == {"x-other": "Ã©"}  # header bytes are latin-1, as before
    assert entry.body == "\ufffd"


def test_the_last_authorization_header_is_the_one_journaled() -> None:
    headers = [(b"authorization", b"Bearer sk-first"), (b"authorization", b"Bearer sk-last1")]
    entry = exchange(headers=headers).entry(1)
    assert (entry.headers["authorization"], entry.key_last4) == ("Bearer ****ast1", "ast1")


def test_entries_are_numbered_in_order_and_cleared_by_account() -> None:
    store = MemoryStore(None, journal_size=2)

    async def scenario() -> list[tuple[int, str | None]]:
        for account in ("a", "b", "a"):
            await store.record(exchange(account=account))
        await store.clear_journal("a")
        return [(e.seq, e.account) for e in await store.journal(JournalFilter())]

    assert asyncio.run(scenario()) == [(2, "b")]  # bounded: the first entry fell out


# --- what the middleware records -------------------------------------------------------------


def test_the_journal_takes_error_code_and_run_id_from_the_answer_noted() -> None:
    recorder = Recorder(answering({"error": {"code": "nope", "message": "m"}, "id": "run_x"}))
    recorder.call(path="/v1/runs")  # no run id in the path: the answer's
    recorder.call(path="/v1/runs", path_params={"run_id": "run_path"})  # the path's wins
    assert [(e["errorCode"], e["runId"]) for e in recorder.entries()] == [
        ("nope", "run_x"),
        ("nope", "run_path"),
    ]


def test_the_journal_never_reads_answers() -> None:
    recorder = Recorder(answering({"error": {"code": "nope", "message": "m"}}, noted=False))
    recorder.call()
    [entry] = recorder.entries()
    assert (entry["status"], entry["errorCode"]) == (404, None)


def test_an_answer_longer_than_the_journal_ever_read_carries_no_error_code() -> None:
    long_message = "m" * MAX_BODY
    recorder = Recorder(answering({"error": {"code": "nope", "message": long_message}}))
    recorder.call()
    assert recorder.entries()[0]["errorCode"] is None


def test_the_request_body_is_kept_up_to_max_body_over_several_chunks() -> None:
    recorder = Recorder(answering({}, read_body=True))
    recorder.call(body=[b"a" * (MAX_BODY - 10), b"b" * 20, b"c" * 5])
    body = recorder.entries()[0]["body"]
    assert body == "a" * (MAX_BODY - 10) + "b" * 10


def test_the_account_is_the_one_at_the_time_of_the_request() -> None:
    accounts = {"Bearer sk-test-alice": "acct_then"}
    recorder = Recorder(answering({}), accounts)
    recorder.call()
    accounts["Bearer sk-test-alice"] = "acct_now"
    assert recorder.entries()[0]["account"] == "acct_then"


def test_an_exchange_that_fails_before_answering_is_recorded_as_dropped() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    recorder = Recorder(failing)
    with pytest.raises(RuntimeError):
        recorder.call(path_params={"run_id": "run_9"})
    [entry] = recorder.entries()
    assert (entry["status"], entry["dropped"], entry["runId"]) == (None, True, "run_9")


def test_the_mocks_own_calls_are_not_recorded() -> None:
    recorder = Recorder(answering({}))
    recorder.call(path="/_mock/requests")
    assert recorder.entries() == []


# --- through the whole app -------------------------------------------------------------------


def journal(mock: Mock, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = mock.client.get("/_mock/requests", params=params).json()[
        "requests"
    ]
    return entries


def test_polls_of_a_failed_run_carry_its_error_code(mock: Mock) -> None:
    run_id = mock.create(scenario="fail").json()["id"]
    mock.advance(60)
    assert mock.get(run_id).json()["status"] == "failed"
    create, poll = journal(mock)
    assert (create["runId"], create["errorCode"]) == (run_id, None)
    assert (poll["runId"], poll["errorCode"]) == (run_id, "generation_failed")


def test_rejections_carry_their_code(mock: Mock) -> None:
    mock.create(resolution="9K")
    mock.create(prompt="p" * 70_000)  # the message quotes 40 characters of it: a short answer
    mock.client.delete("/v1/runs")
    assert [(e["status"], e["errorCode"]) for e in journal(mock)] == [
        (400, "invalid_input"),
        (400, "invalid_input"),
        (405, "method_not_allowed"),
    ]


def test_duplicate_keys_count_as_the_last_one_sent(mock: Mock) -> None:
    headers = [("Authorization", f"Bearer {KEY}"), ("Authorization", f"Bearer {OTHER_KEY}")]
    mock.client.get("/v1/runs/run_x", headers=headers)
    [entry] = journal(mock)
    assert entry["keyLast4"] == OTHER_KEY[-4:]
    assert entry["account"] == mock.account(OTHER_KEY)["account"]


def test_the_journal_names_the_model_of_each_create_and_poll(mock: Mock) -> None:
    created = mock.create_run("google/veo-3", {"prompt": "a journal test"}).json()
    mock.get(created["id"])
    mock.create_run("no/such-model", {"prompt": "x"})
    entries = mock.client.get("/_mock/requests").json()["requests"]
    assert [(e["method"], e["model"]) for e in entries] == [
        ("POST", "google/veo-3"),
        ("GET", "google/veo-3"),
        ("POST", None),  # model_not_found names no model the mock knows
    ]


def test_the_journal_keeps_the_status_each_answer_showed_and_a_429s_retry_after(
    mock: Mock,
) -> None:
    run_id = mock.create(scenario="fail").json()["id"]
    mock.advance(60)
    mock.get(run_id)
    mock.client.get(
        f"/v1/runs/{run_id}",
        headers={"Authorization": f"Bearer {KEY}", "X-Mock-Scenario": "rate-limit"},
    )
    entries = journal(mock)
    assert [(e["status"], e["runStatus"], e["retryAfter"]) for e in entries] == [
        (200, "pending", None),
        (200, "failed", None),
        (429, None, "1"),
    ]


def test_each_entry_has_the_machines_time_beside_the_mocks(mock: Mock) -> None:
    before = datetime.now(UTC)
    mock.advance(3600)  # the virtual clock moves; the machine's does not
    mock.create()
    [entry] = journal(mock)
    wall = datetime.fromisoformat(entry["wallAt"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= wall <= datetime.now(UTC) + timedelta(seconds=1)
    assert entry["at"] == mock.client.get("/_mock/clock").json()["now"]


# --- what is left out: the mock's own pages and probes ---------------------------------------


def test_the_mocks_own_pages_and_probes_are_not_journaled(mock: Mock) -> None:
    for path in ("/healthz", "/docs", "/docs/assets/swagger-ui.css", "/openapi.yaml",
                 "/favicon.ico", "/_mock/clock", "/_mock/ui"):  # fmt: skip
        mock.client.get(path)
    mock.client.head("/healthz")
    assert journal(mock) == []


def test_the_apps_own_mistakes_and_downloads_are_journaled(mock: Mock) -> None:
    for path in ("/v2/runs", "/healthzz", "/docsx", "/files/generated/none.png", "/_mockery"):
        mock.client.get(path)
    assert [(e["path"], e["status"]) for e in journal(mock)] == [
        ("/v2/runs", 404),
        ("/healthzz", 404),
        ("/docsx", 404),
        ("/files/generated/none.png", 404),
        ("/_mockery", 404),
    ]


# --- the query: every filter validated, unknown ones refused ----------------------------------


def refusal(response: Any) -> str:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    message: str = response.json()["error"]["message"]
    return message


def test_an_unknown_query_parameter_is_400_naming_it_and_the_known_ones(mock: Mock) -> None:
    mock.get("run_x")
    message = refusal(mock.client.get("/_mock/requests", params={"sinse": "x"}))
    assert message == (
        "unknown query parameter 'sinse' (did you mean 'since'?); "
        "known: account, code, key, method, path, run, since, status"
    )
    message = refusal(mock.client.get("/_mock/requests", params={"limit": "x"}))
    assert message == (
        "unknown query parameter 'limit'; known: account, code, key, method, path, run, since, "
        "status"
    )
    assert "(did you mean 'status'?)" in refusal(
        mock.client.get("/_mock/ui/state", params={"stauts": "4xx"})
    )
    assert "(did you mean 'limit'?)" in refusal(
        mock.client.get("/_mock/runs", params={"limt": "1"})
    )


def test_clearing_takes_no_filter_and_a_refused_clear_clears_nothing(mock: Mock) -> None:
    mock.get("run_x")
    message = refusal(mock.client.delete("/_mock/requests", params={"status": "4xx"}))
    assert message == "unknown query parameter 'status'; known: account"
    assert len(journal(mock)) == 1


def test_since_takes_iso_8601_timestamps_with_or_without_milliseconds(mock: Mock) -> None:
    mock.get("run_a")  # at 12:00:00.000Z
    mock.advance(5)
    mock.get("run_b")  # at 12:00:05.000Z
    for since in ("2026-06-01T12:00:05.000Z", "2026-06-01T12:00:05Z",
                  "2026-06-01T14:00:05+02:00", "2026-06-01T07:00:04.0001-05:00"):  # fmt: skip
        assert [e["runId"] for e in journal(mock, since=since)] == ["run_b"], since
    assert len(journal(mock, since="2026-06-01T12:00:00Z")) == 2
    assert journal(mock, since="2026-06-01T12:00:05.0001Z") == []  # after run_b, if by 0.1 ms


@pytest.mark.parametrize(
    "since",
    ["2026-06-01", "12:00:00", "2026-06-01T12:00:00", "1780315200000", "yesterday",
     "2026-02-30T12:00:00Z", "2026-06-01T12:00:00.000 02:00", "0000-01-01T00:00:00Z",
     "2026-06-30T23:59:60Z"],
)  # fmt: skip
def test_a_bad_since_is_400_naming_it_and_the_accepted_forms(mock: Mock, since: str) -> None:
    message = refusal(mock.client.get("/_mock/requests", params={"since": since}))
    assert message.startswith(f"since: {since!r} is not accepted; expected an ISO 8601 date")
    assert "`2026-06-01T12:00:00.000Z`" in message and "`+` is `%2B`" in message


def test_status_takes_a_code_a_class_errors_or_dropped(mock: Mock) -> None:
    mock.create()
    mock.get("run_missing")
    mock.client.post("/v1/runs", content=b"{", headers={"Authorization": f"Bearer {KEY}"})

    def statuses(status: str) -> list[int | None]:
        return [e["status"] for e in journal(mock, status=status)]

    assert statuses("404") == [404]
    assert statuses("4xx") == [404, 400]
    assert statuses("2xx") == [200]
    assert statuses("5xx") == []
    assert statuses("errors") == [404, 400]
    assert statuses("dropped") == []


@pytest.mark.parametrize("status", ["4x", "4XX", "600", "99", "error", "all", ""])
def test_a_bad_status_is_400_naming_it_and_the_accepted_forms(mock: Mock, status: str) -> None:
    for path in ("/_mock/requests", "/_mock/ui/state"):
        message = refusal(mock.client.get(path, params={"status": status}))
        assert message == (
            f"status: {status!r} is not accepted; expected an HTTP status (`429`), a class of "
            "them (`2xx`, `4xx`, `5xx`), `errors` (4xx, 5xx and dropped connections) or "
            "`dropped` (connections closed without an answer)"
        )


def test_path_is_a_prefix_of_the_path_starting_with_a_slash(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    mock.get(run_id)
    mock.get(run_id, prefix="/api/v1")
    assert len(journal(mock, path="/v1/runs")) == 2  # the create and the poll
    assert [e["method"] for e in journal(mock, path=f"/v1/runs/{run_id}")] == ["GET"]
    assert len(journal(mock, path="/api/v1")) == 1
    for path in ("v1/runs", "http://localhost:8080/v1/runs", "/v1/runs?x=1", ""):
        message = refusal(mock.client.get("/_mock/requests", params={"path": path}))
        assert message == (
            f"path: {path!r} is not accepted; expected a path starting with `/`, such as "
            "`/v1/runs` (no scheme, host or query string)"
        )


def test_an_empty_key_is_400_not_a_filter_that_matches_nothing(mock: Mock) -> None:
    mock.get("run_x")
    message = refusal(mock.client.get("/_mock/requests", params={"key": ""}))
    assert message.startswith("key: ")


# --- the query's forms, over their whole space ------------------------------------------------

QUERY = load_control_spec().query("/_mock/requests", "get")
SINCE = QUERY.declared["since"]
STATUS = QUERY.declared["status"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SINCE_VALID = compile_schema({"components": {}}, SINCE)


def selection(**query: str) -> JournalFilter:
    return JournalFilter.from_query(QUERY.parse(query.items()), None)


@st.composite
def date_times(draw: st.DrawFn) -> str:
    """RFC 3339 date-times at the edges of every field (invalid days included)."""
    number = lambda low, high: draw(st.integers(low, high))  # noqa: E731
    fraction = draw(st.text("0123456789", max_size=12))
    sign = draw(st.sampled_from("+-"))
    zone = draw(st.just("Z") | st.just(f"{sign}{number(0, 23):02d}:{number(0, 59):02d}"))
    return (
        f"{number(0, 9999):04d}-{number(1, 12):02d}-{number(1, 31):02d}"
        f"T{number(0, 23):02d}:{number(0, 59):02d}:{number(0, 60):02d}"
        + (f".{fraction}" if fraction else "")
        + zone
    )


@given(date_times())
def test_every_since_the_schema_accepts_is_a_moment_the_journal_can_filter_on(text: str) -> None:
    if SINCE_VALID.is_valid(text):  # what the document accepts, the code can use
        assert selection(since=text).since_ms is not None
        return
    with pytest.raises(RunbaseError) as refused:  # year 0, second 60, 30 February: a 400
        selection(since=text)
    assert refused.value.status == 400
    assert refused.value.message.startswith(f"since: {text!r} is not accepted; expected ")


@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59),
    form=st.sampled_from(["milliseconds", "seconds", "microseconds"]),
)
def test_since_keeps_exactly_the_entries_at_or_after_the_moment_it_names(
    moment: datetime, offset_minutes: int, form: str
) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.astimezone(zone)
    timespec = {
        "seconds": "seconds",
        "milliseconds": "milliseconds",
        "microseconds": "microseconds",
    }
    text = local.isoformat(timespec=timespec[form]).replace("+00:00", "Z")
    shown = local.replace(microsecond=0) if form == "seconds" else local
    if form == "milliseconds":
        shown = local.replace(microsecond=local.microsecond // 1000 * 1000)
    micros = (shown - EPOCH) // timedelta(microseconds=1)
    first_ms = -(-micros // 1000)
    since = selection(since=text)
    assert since.since_ms == first_ms
    assert since.keeps(exchange(at_ms=first_ms).entry(1))
    assert not since.keeps(exchange(at_ms=first_ms - 1).entry(1))


@given(
    status=st.none() | st.integers(100, 599),
    wanted=st.from_regex(STATUS["pattern"], fullmatch=True),
)
def test_the_status_forms_agree_with_each_other(status: int | None, wanted: str) -> None:
    if wanted.endswith("xx"):
        codes = range(int(wanted[0]) * 100, int(wanted[0]) * 100 + 100)
        assert status_matches(status, wanted) == any(status_matches(status, str(c)) for c in codes)
    elif wanted == "errors":
        parts = ("4xx", "5xx", "dropped")
        assert status_matches(status, wanted) == any(status_matches(status, p) for p in parts)
    elif wanted == "dropped":
        assert status_matches(status, wanted) == (status is None)
    else:
        assert status_matches(status, wanted) == (status == int(wanted))
    assert selection(status=wanted).keeps(exchange(status=status).entry(1)) == status_matches(
        status, wanted
    )


def test_a_date_time_python_cannot_hold_is_400_where_no_pattern_keeps_it_out() -> None:
    check = QueryCheck(
        {"at": {"type": "string", "format": "date-time"}},
        compile_schema({"components": {}}, {"properties": {"at": {"format": "date-time"}}}),
    )
    assert check.parse([("at", "2026-06-01T12:00:00Z")])["at"] == datetime(
        2026, 6, 1, 12, tzinfo=UTC
    )
    with pytest.raises(RunbaseError) as refused:
        check.parse([("at", "0000-01-01T00:00:00Z")])
    assert (refused.value.status, refused.value.message) == (
        400,
        "at: '0000-01-01T00:00:00Z' is a date and time out of the mock's range",
    )
