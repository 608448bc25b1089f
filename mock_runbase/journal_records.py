"""The request journal's records: what a request left behind, and how the journal is read.

``Exchange`` is one request as the journal middleware (``journal.py``) saw it, kept raw;
``Exchange.entry`` decodes it into a ``JournalEntry`` (headers decoded, the API key redacted to
its last 4 characters) when the journal is read. ``JournalFilter`` selects entries for
``GET /_mock/requests`` and the dashboard (``status_matches``: the status forms both take).
``redact`` is the one redaction of an Authorization value, shared with the proxy's reports and
cassettes.

Plain records and pure functions: the stores keep them and the judge tools use them, so this
module imports nothing above the clock (no ASGI, no middleware).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mock_runbase.clock import format_ms

__all__ = ["Exchange", "JournalEntry", "JournalFilter", "redact", "status_matches"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    at_ms: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    status: int | None
    error_code: str | None
    run_id: str | None
    duration_ms: float
    key_last4: str | None
    account: str | None
    dropped: bool
    model: str | None = None  # the model the answer names (a run's, created or polled)
    run_status: str | None = None  # the run's status as the answer showed it
    retry_after: str | None = None  # the answer's Retry-After header (a 429's, a 503's)
    wall_at_ms: int = 0  # when it arrived on the machine's clock (``at`` is the mock's)

    def view(self) -> dict[str, Any]:
        """camelCase, like the rest of the wire."""
        data = asdict(self)
        data["at"] = format_ms(data.pop("at_ms"))
        data["wallAt"] = format_ms(data.pop("wall_at_ms"))
        return {camel(name): value for name, value in data.items()}


@dataclass(frozen=True)
class JournalFilter:
    """Which entries a reader wants; every filter given must match."""

    account: str | None = None
    key: str | None = None  # the whole key or its last 4 characters
    path: str | None = None  # a prefix of the path
    status: str | None = None  # see status_matches
    since_ms: int | None = None  # at or after, on the mock's clock
    method: str | None = None  # any case: ``post`` is POST
    code: str | None = None  # the error code the answer carried, exactly (``RATE_LIMITED``)
    run: str | None = None  # a run id: the create that made it, its polls and its file

    @classmethod
    def from_query(cls, query: dict[str, Any], account: str | None) -> JournalFilter:
        """From a query already validated against the spec (``since`` an aware datetime)."""
        since: datetime | None = query.get("since")
        return cls(
            account=account,
            key=query.get("key"),
            path=query.get("path"),
            status=query.get("status"),
            since_ms=None if since is None else ms_at_or_after(since),
            method=None if query.get("method") is None else str(query["method"]).upper(),
            code=query.get("code"),
            run=query.get("run"),
        )

    def keeps(self, entry: JournalEntry) -> bool:
        if self.account is not None and entry.account != self.account:
            return False
        if self.key is not None and entry.key_last4 != self.key[-4:]:
            return False
        if self.path is not None and not entry.path.startswith(self.path):
            return False
        if self.status is not None and not status_matches(entry.status, self.status):
            return False
        if self.method is not None and entry.method != self.method:
            return False
        if self.code is not None and entry.error_code != self.code:
            return False
        if self.run is not None and entry.run_id != self.run:
            return False
        return self.since_ms is None or entry.at_ms >= self.since_ms

    def select(self, entries: Iterable[JournalEntry]) -> list[JournalEntry]:
        return [entry for entry in entries if self.keeps(entry)]


def status_matches(status: int | None, wanted: str) -> bool:
    """``wanted`` as the spec's ``MockJournalStatus`` spells it: a status (``429``), a class
    (``4xx``), ``errors`` (4xx, 5xx and dropped) or ``dropped`` (``status`` None: no answer)."""
    if wanted == "dropped":
        return status is None
    if wanted == "errors":
        return status is None or status >= 400
    if status is None:
        return False
    if wanted.endswith("xx"):
        return status // 100 == int(wanted[0])
    return status == int(wanted)


def ms_at_or_after(moment: datetime) -> int:
    """The first millisecond since the epoch not before ``moment`` (exact: no float)."""
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def redact(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if not token:
        return "****" + authorization[-4:] if len(authorization) > 4 else "****"
    return f"{scheme} ****{token.strip()[-4:]}"


@dataclass(slots=True)
class Exchange:
    """One request as the middleware saw it, kept raw: recording must cost next to nothing.

    ``entry`` decodes it (headers, redaction, key) when the journal is read. ``account`` is
    the caller's account at the time of the request (the store filters on it when clearing).
    """

    at_ms: int
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]  # as in the ASGI scope
    body: bytes  # the request body, its first journal.MAX_BODY bytes
    status: int | None  # None: no answer was sent (a dropped connection)
    duration_s: float
    error_code: str | None
    run_id: str | None
    account: str | None
    model: str | None = None
    run_status: str | None = None
    retry_after: str | None = None
    wall_at_ms: int = 0

    @property
    def dropped(self) -> bool:
        return self.status is None

    def entry(self, seq: int) -> JournalEntry:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        authorization = headers.get("authorization")
        if authorization is not None:
            headers["authorization"] = redact(authorization)
        token = authorization.partition(" ")[2].strip() if authorization else ""
        return JournalEntry(
            seq=seq,
            at_ms=self.at_ms,
            method=self.method,
            path=self.path,
            query=self.query.decode("latin-1"),
            headers=headers,
            body=self.body.decode("utf-8", errors="replace"),
            status=self.status,
            error_code=self.error_code,
            run_id=self.run_id,
            duration_ms=round(self.duration_s * 1000, 3),
            key_last4=token[-4:] if token else None,
            account=self.account,
            dropped=self.dropped,
            model=self.model,
            run_status=self.run_status,
            retry_after=self.retry_after,
            wall_at_ms=self.wall_at_ms,
        )
