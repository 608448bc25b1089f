"""Cassettes: exchanges recorded by ``mock-runbase proxy --record``, one JSON object a line.

    {"cassette": "mock-runbase", "version": 1, "upstream": "http://127.0.0.1:8080"}
    {"seq": 1, "at": "...Z", "request": {"method", "path", "query", "headers", "body"},
     "response": {"status", "headers", "body"}, "violations": [...]}

Bodies are UTF-8 text (``body``) or base64 (``bodyBase64``). API keys never reach the file:
the Authorization header keeps the key's last 4 characters, and the key is blanked out
wherever else it appears. ``serve --replay`` reads it back (``mock_runbase.replay``).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from mock_runbase.journal_records import redact

__all__ = ["FORMAT", "Cassette", "CassetteWriter", "Recorded", "decode_body", "encode_body"]

FORMAT = "mock-runbase"
VERSION = 1
RUN_NAMES = re.compile(rb"run_[0-9A-Za-z]+|(?<=/files/generated/)[0-9A-Za-z]+\.[0-9a-z]+")


def encode_body(body: bytes) -> dict[str, str]:
    try:
        return {"body": body.decode()}
    except UnicodeDecodeError:
        return {"bodyBase64": base64.b64encode(body).decode()}


def decode_body(part: Mapping[str, Any]) -> bytes:
    if "bodyBase64" in part:
        return base64.b64decode(part["bodyBase64"])
    return str(part.get("body", "")).encode()


def secret_of(authorization: str | None) -> str | None:
    token = (authorization or "").partition(" ")[2].strip()
    return token if len(token) > 4 else None


@dataclass(frozen=True)
class Recorded:
    """One exchange as the cassette holds it."""

    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes

    def line(self, seq: int, at: str, violations: Iterable[Mapping[str, Any]] = ()) -> bytes:
        return orjson.dumps(
            {
                "seq": seq,
                "at": at,
                "request": {
                    "method": self.method,
                    "path": self.path,
                    "query": self.query,
                    "headers": self.request_headers,
                    **encode_body(self.request_body),
                },
                "response": {
                    "status": self.status,
                    "headers": self.response_headers,
                    **encode_body(self.response_body),
                },
                "violations": list(violations),
            }
        )

    @classmethod
    def from_line(cls, entry: Mapping[str, Any]) -> Recorded:
        request, response = entry["request"], entry["response"]
        return cls(
            method=str(request["method"]).upper(),
            path=str(request["path"]),
            query=str(request.get("query", "")),
            request_headers={str(k).lower(): str(v) for k, v in request["headers"].items()},
            request_body=decode_body(request),
            status=int(response["status"]),
            response_headers={str(k).lower(): str(v) for k, v in response["headers"].items()},
            response_body=decode_body(response),
        )

    def redacted(self) -> Recorded:
        """The same exchange with the key reduced to its last 4 characters everywhere."""
        header = self.request_headers.get("authorization")
        secret = secret_of(header)
        if secret is None:
            return self
        hidden = "****" + secret[-4:]

        def clean(body: bytes) -> bytes:
            return body.replace(secret.encode(), hidden.encode())

        headers = {
            k: (redact(v) if k == "authorization" else v.replace(secret, hidden))
            for k, v in self.request_headers.items()
        }
        return Recorded(
            self.method,
            self.path,
            self.query.replace(secret, hidden),
            headers,
            clean(self.request_body),
            self.status,
            self.response_headers,
            clean(self.response_body),
        )


@dataclass
class Cassette:
    upstream: str
    exchanges: list[Recorded] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Cassette:
        upstream = ""
        exchanges = []
        with path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    entry = orjson.loads(raw)
                    if entry.get("cassette") == FORMAT:
                        upstream = str(entry.get("upstream", ""))
                        continue
                    exchanges.append(Recorded.from_line(entry))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                    raise ValueError(f"{path}:{number}: not a cassette line") from None
        return cls(upstream, exchanges)

    def run_names(self) -> frozenset[str]:
        """The run ids and file names its answers hold: a mock replaying it must not give
        them to runs of its own, whose polls and files the cassette would answer instead."""
        return frozenset(
            name.decode()
            for exchange in self.exchanges
            for name in RUN_NAMES.findall(exchange.response_body)
        )


class CassetteWriter:
    """Appends exchanges to a cassette as they happen (flushed, so a killed proxy loses none)."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path = path
        self.seq = 0
        self._lock = threading.Lock()
        self._file: IO[bytes] = path.open("wb")
        header = {"cassette": FORMAT, "version": VERSION, "upstream": upstream}
        self._file.write(orjson.dumps(header) + b"\n")
        self._file.flush()

    def write(self, exchange: Recorded, at: str, violations: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self.seq += 1
            self._file.write(exchange.redacted().line(self.seq, at, violations) + b"\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
