"""``mock-runbase serve``'s options: flags and ``MOCK_RUNBASE_*`` environment variables, one
validated model (pydantic-settings), a flag winning over its variable.

A bad value stops start-up with a message naming the setting as the user gave it
(``--timing Fast`` or ``MOCK_RUNBASE_TIMING=Fast``) and what is allowed; a
``MOCK_RUNBASE_*`` variable that names no setting is refused too (a typo would otherwise leave
the default in force without a word).
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from mock_runbase.accounts import usd_to_micro
from mock_runbase.ratelimit import DOCUMENTED
from mock_runbase.settings import (
    AdminToken,
    AtLeastOne,
    ClockKind,
    CorsOrigins,
    ExistingDirectory,
    ExistingFile,
    MockSettings,
    PublicUrl,
    RateLimitSetting,
    Seconds,
    Seed,
    StateFile,
    StorePrefix,
    StoreUrl,
    TimingName,
    replay_strict_problem,
    state_problem,
    store_prefix_problem,
)

__all__ = [
    "ENV_PREFIX",
    "INTERNAL_VARIABLES",
    "ServeOptions",
    "SettingsError",
    "load_serve_options",
]

ENV_PREFIX = "MOCK_RUNBASE_"
# Set by the mock for its own worker processes, never by a user.
INTERNAL_VARIABLES = frozenset({ENV_PREFIX + "WORKER_SETTINGS"})

REQUEST_LINE_LEVELS = ("info", "debug", "trace")  # where a line per request is shown
LogLevel = Annotated[
    Literal["critical", "error", "warning", "info", "debug", "trace"],
    BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value),
]


class SettingsError(ValueError):
    """Settings the mock refuses to start with; one line per problem."""


class ServeOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    timing: TimingName = "realistic"
    clock: ClockKind = "real"
    seed: Seed = 0
    no_rate_limit: bool = False
    rate_limit: Annotated[RateLimitSetting, NoDecode] = DOCUMENTED  # N/SECONDS, not JSON
    balance_usd: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 100.0
    config: ExistingFile | None = None
    strict_keys: bool = False
    public_url: PublicUrl | None = None
    image_cache_mb: AtLeastOne = 256
    admin_token: AdminToken | None = None
    journal_size: AtLeastOne = 1000
    store: StoreUrl = "memory"
    store_prefix: StorePrefix | None = None
    workers: AtLeastOne = 1
    run_ttl: Seconds = 24 * 3600
    spec: ExistingFile | None = None
    models: ExistingFile | None = None
    cors: Annotated[CorsOrigins, NoDecode] | None = None  # a comma list, not JSON
    log_level: LogLevel = "info"
    replay: ExistingFile | None = None
    replay_strict: bool = False
    media_dir: ExistingDirectory | None = None
    state: StateFile | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)  # flags, then variables; no .env, no secrets dir

    def mock_settings(self) -> MockSettings:
        return MockSettings(
            timing=self.timing,
            clock=self.clock,
            seed=self.seed,
            rate_limit=None if self.no_rate_limit else self.rate_limit,
            balance_usd=usd_to_micro(self.balance_usd),
            config=self.config,
            strict_keys=self.strict_keys,
            public_url=self.public_url,
            image_cache_mb=self.image_cache_mb,
            spec=self.spec,
            models=self.models,
            admin_token=self.admin_token,
            journal_size=self.journal_size,
            store=self.store,
            store_prefix=self.store_prefix,
            run_ttl_s=self.run_ttl,
            cors=self.cors,
            media_dir=self.media_dir,
            replay=self.replay,
            replay_strict=self.replay_strict,
            state=self.state,
            log_requests=self.log_level in REQUEST_LINE_LEVELS,
        )


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def variable_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class Sources:
    """Where each setting came from, to name it as the user spelled it."""

    def __init__(self, flags: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.flags = flags
        self.environ = {name.upper(): value for name, value in environ.items()}

    def label(self, field: str) -> str:
        if field in self.flags:
            value = self.flags[field]
            if isinstance(value, bool):
                return flag_name(field)
            return f"{flag_name(field)} {shlex.quote(str(value))}"
        variable = variable_name(field)
        if variable in self.environ:
            return f"{variable}={shlex.quote(self.environ[variable])}"
        return flag_name(field)

    def given(self, field: str) -> bool:
        return field in self.flags or variable_name(field) in self.environ


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    known = {variable_name(name) for name in ServeOptions.model_fields} | INTERNAL_VARIABLES
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known - INTERNAL_VARIABLES), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{name} is not a setting of mock-runbase serve{hint}")
    return problems


def load_serve_options(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ServeOptions:
    """The options in force: ``flags`` (those given on the command line, by field name) over
    the environment. Raises SettingsError naming every bad setting."""
    environ = os.environ if environ is None else environ
    sources = Sources(flags, environ)
    problems = unknown_variables(environ)
    options: ServeOptions | None = None
    try:
        options = ServeOptions(**flags)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            field = str(detail["loc"][0]) if detail["loc"] else ""
            message = detail["msg"].removeprefix("Value error, ")
            problems.append(f"{sources.label(field)}: {message}")
    if options is not None:
        problems += conflicts(options, sources)
    if problems:
        raise SettingsError("\n".join(problems))
    assert options is not None
    return options


def conflicts(options: ServeOptions, sources: Sources) -> list[str]:
    """Settings each valid alone that make no sense together."""
    problems = []
    prefix_problem = store_prefix_problem(options.store, options.store_prefix)
    if prefix_problem:
        problems.append(f"{sources.label('store_prefix')}: {prefix_problem} (--store redis://...)")
    state = state_problem(options.store, options.state)
    if state:
        problems.append(f"{sources.label('state')} with {sources.label('store')}: {state}")
    if options.no_rate_limit and sources.given("rate_limit"):
        problems.append(
            f"{sources.label('rate_limit')} and {sources.label('no_rate_limit')}: "
            "choose one (a limit, or none)"
        )
    if options.workers > 1 and options.store == "memory":
        problems.append(
            f"{sources.label('workers')} needs a shared store: with the in-memory store each "
            "worker would have its own runs, balances and rate limits. "
            "Add --store redis://host:port/db (or MOCK_RUNBASE_STORE)."
        )
    if replay_strict_problem(options.replay, options.replay_strict):
        problems.append(
            f"{sources.label('replay_strict')} answers only what a cassette recorded: "
            "add --replay FILE (or MOCK_RUNBASE_REPLAY)"
        )
    if options.workers > 1 and options.replay is not None:
        problems.append(f"{sources.label('replay')} serves one process; drop --workers")
    return problems
