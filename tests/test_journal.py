"""The request journal: what the middleware records, and the entries built when it is read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.clock import VirtualClock
from mock_runbase.journal import MAX_BODY, JournalMiddleware, note_answer
from mock_runbase.journal_records import Exchange, JournalFilter
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
