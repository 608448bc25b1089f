"""Everything a mock can be told, with the defaults a local user wants, validated.

``MockSettings`` is what ``create_app`` reads (money in micro-USD, durations in seconds). It is
a pydantic dataclass: a value outside its rules raises ``ValidationError`` however the settings
were made (``MockSettings(...)``, ``replace``, ``mock_runbase.serve(...)``, the command line).
The rules are the annotated types below; ``serve_options.ServeOptions`` (flags, environment
variables) uses the same ones, so a value gets the same verdict and message whichever way it
arrives.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from mock_runbase.accounts import MICRO
from mock_runbase.ratelimit import DOCUMENTED, RateLimit, parse_rate_limit
from mock_runbase.runs import TIMING_PROFILES

__all__ = [
    "STORE_SCHEMES",
    "AdminToken",
    "AtLeastOne",
    "ClockKind",
    "CorsOrigins",
    "ExistingDirectory",
    "ExistingFile",
    "MicroUsd",
    "MockSettings",
    "PublicUrl",
    "RateLimitSetting",
    "Seconds",
    "Seed",
    "StateFile",
    "StorePrefix",
    "StoreUrl",
    "TimingName",
    "replay_strict_problem",
    "state_problem",
    "store_prefix_problem",
]

STORE_SCHEMES = ("redis://", "rediss://", "unix://")


def one_of(value: Any, allowed: list[str], what: str) -> Any:
    if value not in allowed:
        raise PydanticCustomError(
            "not_allowed",
            "not a {what}: use one of {allowed}",
            {"what": what, "allowed": ", ".join(allowed)},
        )
    return value


def timing_name(value: str) -> str:
    return str(one_of(value, sorted(TIMING_PROFILES), "timing profile"))


def store_url(value: str) -> str:
    if value != "memory" and not value.startswith(STORE_SCHEMES):
        raise PydanticCustomError(
            "store_url",
            "not a store: use memory, or a Redis URL "
            "(redis://host:port/db, rediss://..., unix:///path/redis.sock)",
        )
    return value


def store_prefix(value: str) -> str:
    """A Redis key namespace: nothing a key pattern would read as a wildcard, so a reset scans
    only this mock's keys; the store adds the ``:``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
        raise PydanticCustomError(
            "store_prefix",
            "not a key namespace: use letters, digits, _ . - "
            "(up to 64, starting with a letter or digit)",
        )
    return value


def rate_limit(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_rate_limit(value)
        except ValueError:
            raise PydanticCustomError(
                "rate_limit",
                "not a rate limit: use N/SECONDS, e.g. 20/10 (the documented "
                "20 requests per 10 s), or turn the limit off with --no-rate-limit",
            ) from None
    return value


def public_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", value):
        raise PydanticCustomError(
            "public_url",
            "not a base URL: use http(s)://host[:port][/path], without query or fragment",
        )
    return value.rstrip("/")


def existing_file(value: Path) -> Path:
    if not value.is_file():
        problem = "a directory, not a file" if value.is_dir() else "no such file"
        raise PydanticCustomError("file", problem)
    return value


def existing_directory(value: Path) -> Path:
    if not value.is_dir():
        problem = "a file, not a directory" if value.exists() else "no such directory"
        raise PydanticCustomError("directory", problem)
    return value


def state_file(value: Path) -> Path:
    """A file to read at start if it is there, and to write at exit: its directory exists."""
    if value.is_dir():
        raise PydanticCustomError("file", "a directory, not a file")
    if not value.parent.is_dir():
        raise PydanticCustomError(
            "state_file",
            "no such directory: {parent} (the state is written there at exit)",
            {"parent": str(value.parent)},
        )
    return value


def cors_origins(value: Any) -> Any:
    """``*``, or origins separated by commas: ``http://localhost:3000,https://app.test``."""
    origins = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(origins, list | tuple) or not origins:
        return origins
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", str(origin)):
            raise PydanticCustomError(
                "cors",
                "{origin} is not an origin: use * or scheme://host[:port] (no path), "
                "several separated by commas",
                {"origin": repr(origin)},
            )
    if "*" in origins and len(origins) > 1:
        raise PydanticCustomError("cors", "* already allows every origin: give it alone")
    return tuple(origins)


TimingName = Annotated[str, AfterValidator(timing_name)]
ClockKind = Literal["real", "virtual"]
StoreUrl = Annotated[str, AfterValidator(store_url)]
StorePrefix = Annotated[str, AfterValidator(store_prefix)]
RateLimitSetting = Annotated[RateLimit, BeforeValidator(rate_limit)]
PublicUrl = Annotated[str, AfterValidator(public_url)]
ExistingFile = Annotated[Path, AfterValidator(existing_file)]
ExistingDirectory = Annotated[Path, AfterValidator(existing_directory)]
StateFile = Annotated[Path, AfterValidator(state_file)]
CorsOrigins = Annotated[tuple[str, ...], BeforeValidator(cors_origins), Field(min_length=1)]


Seed = Annotated[int, Field(ge=0, lt=2**63)]
AtLeastOne = Annotated[int, Field(ge=1)]
MicroUsd = Annotated[int, Field(ge=0, le=10**15)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
AdminToken = Annotated[str, Field(min_length=1)]


def state_problem(store: str, state: Path | None) -> str | None:
    if state is not None and store != "memory":
        return (
            "a state file keeps the memory store's state across restarts; a Redis store keeps "
            "its own (move a state in or out with GET and PUT /_mock/state)"
        )
    return None


def store_prefix_problem(store: str, prefix: str | None) -> str | None:
    if prefix is not None and store == "memory":
        return "a key namespace needs a Redis store; the memory store has no keys to prefix"
    return None


def replay_strict_problem(replay: Path | None, strict: bool) -> str | None:
    if strict and replay is None:
        return "strict replay needs a cassette to replay: add --replay FILE"
    return None


@dataclass(frozen=True, config=ConfigDict(arbitrary_types_allowed=True))
class MockSettings:
    timing: TimingName = "realistic"
    clock: ClockKind = "real"
    seed: Seed = 0
    rate_limit: RateLimitSetting | None = DOCUMENTED
    # micro-USD for each account not declared in --config
    balance_usd: MicroUsd = 100 * MICRO
    config: ExistingFile | None = None
    strict_keys: bool = False
    public_url: PublicUrl | None = None
    image_cache_mb: AtLeastOne = 256
    max_body_bytes: AtLeastOne = 32 * 1024 * 1024
    spec: ExistingFile | None = None
    models: ExistingFile | None = None  # a YAML file of new and changed models (user_catalog)
    admin_token: AdminToken | None = None  # every /_mock call sends it
    journal_size: AtLeastOne = 1000
    store: StoreUrl = "memory"  # or redis://host:port/db, shared by every worker and replica
    store_prefix: StorePrefix | None = None  # Redis key namespace (None: the store's default)
    cors: CorsOrigins | None = None  # origins a browser may call from (None: no CORS headers)
    run_ttl_s: Seconds = 24 * 3600  # runs are forgotten this long after
    media_dir: ExistingDirectory | None = None  # files a rule's effect.media serves
    replay: ExistingFile | None = None  # a cassette (proxy --record) whose answers are given
    replay_strict: bool = False  # a request the cassette does not hold: 501, not the mock
    state: StateFile | None = None  # loaded at start if it is there, saved at exit
    log_requests: bool = False  # a compact line per request on stdout (serve's default)

    @model_validator(mode="after")
    def prefix_needs_redis(self) -> MockSettings:
        problem = store_prefix_problem(self.store, self.store_prefix)
        if problem:
            raise ValueError(f"store_prefix: {problem}")
        problem = replay_strict_problem(self.replay, self.replay_strict)
        if problem:
            raise ValueError(f"replay_strict: {problem}")
        return self

    @model_validator(mode="after")
    def state_needs_memory(self) -> MockSettings:
        problem = state_problem(self.store, self.state)
        if problem:
            raise ValueError(f"state: {problem}")
        return self
