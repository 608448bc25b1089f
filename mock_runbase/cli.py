"""``mock-runbase``: the command line. ``serve`` runs the mock on uvicorn (``--replay FILE``
answers recorded exchanges from a cassette), ``contract`` runs the contract suite against a
server, ``proxy`` judges the exchanges between a client and a server.

Every ``serve`` option can also be set by an environment variable ``MOCK_RUNBASE_<NAME>``
(``--rate-limit`` -> ``MOCK_RUNBASE_RATE_LIMIT``); a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from mock_runbase.accounts import ConfigError
from mock_runbase.clock import DEFAULT_VIRTUAL_START, parse_timestamp
from mock_runbase.runs import TIMING_PROFILES
from mock_runbase.serve_options import ENV_PREFIX, ServeOptions, SettingsError, load_serve_options
from mock_runbase.settings import MockSettings
from mock_runbase.startup import banner, first_request_example

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mock-runbase", description="A faithful local mock of the Runbase runs API."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(commands)
    add_contract_parser(commands)
    add_proxy_parser(commands)
    add_check_client_parser(commands)
    return parser


def add_serve_parser(commands: Any) -> None:
    """Values stay strings here: ``serve_options`` validates flags and variables alike. An
    option not given is absent (SUPPRESS), so its environment variable or default applies."""
    serve = commands.add_parser(
        "serve",
        help="run the mock server",
        argument_default=argparse.SUPPRESS,
        epilog="Every option is also an environment variable MOCK_RUNBASE_<NAME> "
        "(--rate-limit: MOCK_RUNBASE_RATE_LIMIT); a flag wins over its variable.",
    )
    add = serve.add_argument
    add("--host", help="address to listen on (default 127.0.0.1)")
    add("--port", help="port to listen on (default 8080)")
    add("--timing", help=f"{', '.join(sorted(TIMING_PROFILES))} (default realistic)")
    add("--clock", help="real or virtual (time moves only by POST /_mock/clock/advance)")
    add("--seed", help="seed of timing jitter, rule draws and media (default 0)")
    add("--no-rate-limit", action="store_true", help="turn the per-key rate limit off")
    add("--rate-limit", help="N/SECONDS per key (default 20/10, as documented)")
    add("--balance-usd", help="starting balance of each account not in --config (default 100)")
    add("--config", help="accounts, keys and rules: a TOML or YAML file")
    add("--strict-keys", action="store_true", help="only keys declared in --config work")
    add("--public-url", help="base of output URLs (default: the request's own host)")
    add("--image-cache-mb", help="bound of the rendered-media cache (default 256)")
    add("--admin-token", help="require this token (X-Mock-Admin-Token) on every /_mock call")
    add("--journal-size", help="requests kept in the journal (default 1000)")
    add(
        "--store",
        help="where state lives: memory (one process, the default) or redis://host:port/db "
        "(shared by every worker and replica)",
    )
    add("--store-prefix", help="Redis key namespace (default mock-runbase)")
    add("--workers", help="uvicorn worker processes (more than 1 needs --store redis://)")
    add("--run-ttl", help="seconds a run is kept after it was created (default 86400)")
    add("--spec", help="another openapi.yaml")
    add("--models", help="a YAML file of your own models and of changes to Runbase's")
    add("--cors", help="answer browsers from these origins: * or a comma list (default off)")
    add("--log-level", help="critical, error, warning, info (default), debug or trace")
    add("--replay", help="answer the requests recorded in this cassette (from proxy --record)")
    add(
        "--replay-strict",
        action="store_true",
        help="with --replay: answer a request the cassette lacks 501 not_recorded, not the mock",
    )
    add("--media-dir", help="your own images and videos, for rules' effect.media (default none)")
    add("--state", help="a JSON file: the state loaded at start if it is there, saved at exit")


def add_contract_parser(commands: Any) -> None:
    contract = commands.add_parser(
        "contract",
        help="run the contract suite against the in-process mock or a server",
        description="Judge an implementation of the Runbase runs API against openapi.yaml. "
        "Without --base-url: the in-process mock. Extra pytest options go after --.",
    )
    add = contract.add_argument
    add("--base-url", help="a server's API base URL, e.g. http://localhost:8080/v1")
    add(
        "--app", help="MODULE:ATTR of an ASGI app (or a function returning one) to judge in process"
    )
    add("--live", action="store_true", help="the real API: needs RUNBASE_API_KEY; spend-capped")
    add("--max-spend-usd", type=float, help="with --live: hard spend cap (default 0.50)")
    add("--api-key", help="key to send (better: RUNBASE_API_KEY)")
    add("--other-api-key", help="a key of another account (RUNBASE_OTHER_API_KEY)")
    add("--check", action="append", metavar="NAME", help="run only this contract (repeatable)")
    add("--list", action="store_true", help="list the contracts and what each checks")
    add("--profile", help="quick, default or thorough (examples per property)")
    add("--junitxml", type=Path, help="write a JUnit XML report")
    add("--spec", type=Path, help="judge against another openapi.yaml")
    add("--admin-token", help="the mock's admin token, for /_mock (MOCK_RUNBASE_ADMIN_TOKEN)")
    add("--run-timeout", type=float, help="seconds a run may take to finish (default 120)")
    add("--no-rate-limit", action="store_true", help="declare the server has no rate limiter")
    add("pytest_args", nargs=argparse.REMAINDER, help="-- then options for pytest")


def add_proxy_parser(commands: Any) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="a validating proxy: forward to --upstream, judge every exchange against the spec",
    )
    add = proxy.add_argument
    add("--upstream", required=True, help="the server to forward to, e.g. http://localhost:8080")
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8081)
    add("--record", type=Path, help="also write each exchange (keys redacted) to this cassette")
    add("--strict", action="store_true", help="exit 1 if any violation occurred")
    add(
        "--min-backoff",
        type=float,
        default=0.5,
        help="least wait after a 429 before the same key asks again (default 0.5 s)",
    )
    add("--spec", type=Path, help="judge against another openapi.yaml")
    add("--cors", help="answer browsers from these origins: * or a comma list (default off)")
    add("--log-level", default="info")


def add_check_client_parser(commands: Any) -> None:
    check = commands.add_parser(
        "check-client",
        help="run a client once per drawn plan of Runbase's answers; shrink what breaks it",
        description="Start a mock, then run CMD once per plan hypothesis draws (faults, "
        "errors, run lifecycles in polls), with RUNBASE_BASE_URL and RUNBASE_API_KEY set. "
        "A non-zero exit or a broken rule (verdicts) fails the example; the smallest failing "
        "plan is reported. Exit 0: the client coped; 1: it failed; 2: a bad command line.",
    )
    add = check.add_argument
    add("--examples", type=int, default=100, help="plans to try (default 100)")
    add("--seed", type=int, help="seed of the draws (default random; the report prints it)")
    add("--timeout", type=float, default=60.0, help="seconds a run of CMD may take (default 60)")
    add("--max-faults", type=int, default=3, help="faults in a plan at most (default 3)")
    add("--faults", help="only these faults, a comma list (default every one: see the README)")
    add("--endpoints", help="faults on these only: a comma list of create, get, file")
    add("--models", help="the plan's creates match these models only (comma list)")
    add("--outcomes", help="runs end so: a comma list of succeeded, failed, stuck")
    add("--state-polls", type=int, default=4, help="polls a run stays in a state at most")
    add(
        "--min-poll-interval",
        type=float,
        default=1.0,
        help="least seconds between two polls of a run (advice; default 1; 0: any)",
    )
    add("--max-polls", type=int, default=30, help="polls of one run before it is 'for ever'")
    add("--off", help="client rules not applied, a comma list (see the README)")
    add("--no-advice", action="store_true", help="apply only documented and inferred rules")
    add("--report", type=Path, help="also write the result as JSON to this file")
    add("client_command", nargs=argparse.REMAINDER, metavar="-- CMD", help="the client's command")


WORKER_SETTINGS = ENV_PREFIX + "WORKER_SETTINGS"
WORKER_SETTINGS_JSON = TypeAdapter(MockSettings)


# The young generation is collected after 20,000 net allocations, not 700. A stored run (kept
# as an object until 10,000 newer ones) and a journal entry (until 1,000 newer requests) live
# long enough to be walked by a collection or two on their way out, for nothing: under 8 s of
# creates, the default thresholds took 340 collections and ~290 ms (4% of the CPU, pauses up to
# 8 ms in the middle generation and 24 ms in the oldest), these 4 and ~15 ms. Cyclic garbage,
# the only kind a collection frees, is rare on the mock's paths and still collected.
GC_THRESHOLDS = (20_000, 20, 50)


def worker_app() -> Any:
    """The app of one of ``serve --workers N``'s processes: settings come from the parent."""
    from mock_runbase.app import create_app

    app = create_app(WORKER_SETTINGS_JSON.validate_json(os.environ[WORKER_SETTINGS]))
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> None:
    """Move what start-up built (spec, validators, catalog) out of the garbage collector's
    sight: collections on the hot path then scan only per-request objects (a few % of
    throughput, measured with bench/ab.py). Then collect less often (``GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mock_runbase.app import create_app
    from mock_runbase.one_write import OneWriteHttpToolsProtocol

    flags = {name: value for name, value in vars(args).items() if name != "command"}
    try:
        options = load_serve_options(flags)
    except SettingsError as error:
        return refuse(str(error))
    logging.basicConfig(
        level=LOG_LEVELS[options.log_level], format="%(levelname)s %(name)s: %(message)s"
    )
    settings = options.mock_settings()
    try:
        app = create_app(settings)
    except (ConfigError, OSError, ValueError) as error:
        return refuse(str(error))
    served: Any = app
    lines = startup_lines(options, settings, app.state.service)
    replay = app.state.replay
    if replay is not None:
        strictly = "; anything else 501 not_recorded" if settings.replay_strict else ""
        held = f"{len(replay)} recorded exchanges from {options.replay}{strictly}"
        lines.insert(-4, f"  replay:     {held}")
    freeze_startup_objects()
    if options.workers > 1:
        lines.insert(-4, f"  workers:    {options.workers}, sharing the store")
        os.environ[WORKER_SETTINGS] = WORKER_SETTINGS_JSON.dump_json(settings).decode()
        served = "mock_runbase.cli:worker_app"
    print("\n".join(lines), flush=True)
    uvicorn.run(
        served,
        host=options.host,
        port=options.port,
        log_level=LOG_LEVELS[options.log_level],
        access_log=False,  # the mock's own line per request (request_log) replaces it
        http=OneWriteHttpToolsProtocol,
        workers=options.workers if options.workers > 1 else None,
        factory=options.workers > 1,
    )
    return 0


LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}


def refuse(problems: str) -> int:
    """Exit status 2, one line per problem."""
    for line in problems.splitlines():
        print(f"mock-runbase: {line}", file=sys.stderr)
    return 2


def startup_lines(options: ServeOptions, settings: MockSettings, service: Any) -> list[str]:
    from mock_runbase.model_views import catalog_view

    document = service.spec.document
    return banner(
        options,
        settings,
        models=catalog_view(document, service.spec.catalog),
        directory=service.base_directory,
        rules=len(service.config_rules),
        virtual_start_ms=parse_timestamp(DEFAULT_VIRTUAL_START)
        if settings.clock == "virtual"
        else None,
        example=first_request_example(document),
        state=service.initial_state,
    )


def contract(args: argparse.Namespace) -> int:
    from mock_runbase.contract_cli import run

    return run(args)


def proxy(args: argparse.Namespace) -> int:
    from mock_runbase.proxy import run

    try:
        return run(
            args.upstream,
            host=args.host,
            port=args.port,
            record=args.record,
            strict=args.strict,
            min_backoff=args.min_backoff,
            spec=args.spec,
            log_level=args.log_level,
        )
    except (ValueError, OSError) as error:
        print(f"mock-runbase proxy: {error}", file=sys.stderr)
        return 2


def check_client(args: argparse.Namespace) -> int:
    from mock_runbase.client_checks.check import run_cli

    return run_cli(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": serve,
    "contract": contract,
    "proxy": proxy,
    "check-client": check_client,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
