"""``mock-runbase``: the command line. ``serve`` runs the mock on uvicorn (``--replay FILE``
answers recorded exchanges from a cassette), ``contract`` runs the contract suite against a
server, ``proxy`` judges the exchanges between a client and a server.

Every ``serve`` option can also be set by an environment variable ``MOCK_RUNBASE_<NAME>``
(``--rate-limit`` -> ``MOCK_RUNBASE_RATE_LIMIT``); a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mock_runbase.accounts import ConfigError, usd_to_micro
from mock_runbase.ratelimit import DOCUMENTED, RateLimit, parse_rate_limit
from mock_runbase.runs import TIMING_PROFILES
from mock_runbase.settings import MockSettings

__all__ = ["main"]

ENV_PREFIX = "MOCK_RUNBASE_"


def env_default(name: str, default: Any, parse: Callable[[str], Any] = str) -> Any:
    variable = ENV_PREFIX + name.upper().replace("-", "_")
    raw = os.environ.get(variable)
    if raw is None:
        return default
    try:
        return parse(raw)
    except (ValueError, argparse.ArgumentTypeError) as error:
        raise SystemExit(f"mock-runbase: {variable}={raw!r}: {error}") from None


def flag(raw: str) -> bool:
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def store_prefix(raw: str) -> str:
    """A Redis key namespace: letters, digits, ``_ . -``; the store adds the ``:``. Nothing a
    key pattern would read as a wildcard, so a reset scans only this mock's keys."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r}: letters, digits, _ . - (up to 64, starting with a letter or digit)"
        )
    return raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mock-runbase", description="A faithful local mock of the Runbase runs API."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the mock server")
    add = serve.add_argument
    add("--host", default=env_default("host", "127.0.0.1"))
    add("--port", type=int, default=env_default("port", 8080, int))
    add("--timing", choices=sorted(TIMING_PROFILES), default=env_default("timing", "realistic"))
    add("--clock", choices=["real", "virtual"], default=env_default("clock", "real"))
    add("--seed", type=int, default=env_default("seed", 0, int), help="seed of timing and images")
    add(
        "--no-rate-limit",
        action="store_true",
        default=env_default("no-rate-limit", False, flag),
        help="turn the per-key rate limit off",
    )
    add(
        "--rate-limit",
        type=parse_rate_limit,
        default=env_default("rate-limit", DOCUMENTED, parse_rate_limit),
        help="N/SECONDS per key (default 20/10, as documented)",
    )
    add(
        "--balance-usd",
        type=float,
        default=env_default("balance-usd", 100.0, float),
        help="starting balance of each account not declared in --config (USD)",
    )
    add("--config", type=Path, default=env_default("config", None, Path), help="TOML or YAML")
    add(
        "--strict-keys",
        action="store_true",
        default=env_default("strict-keys", False, flag),
        help="only keys declared in --config work",
    )
    add(
        "--public-url",
        default=env_default("public-url", None),
        help="base of output URLs (default: the request's own host)",
    )
    add("--image-cache-mb", type=int, default=env_default("image-cache-mb", 256, int))
    add(
        "--admin-token",
        default=env_default("admin-token", None),
        help="require this token (header X-Mock-Admin-Token) on every /_mock call",
    )
    add("--journal-size", type=int, default=env_default("journal-size", 1000, int))
    add(
        "--store",
        default=env_default("store", "memory"),
        help="where state lives: memory (one process, the default) or redis://host:port/db "
        "(shared by every worker and replica)",
    )
    add(
        "--store-prefix",
        type=store_prefix,
        default=env_default("store-prefix", None, store_prefix),
        help="Redis key namespace (default mock-runbase): several mocks in one Redis database",
    )
    add(
        "--workers",
        type=int,
        default=env_default("workers", 1, int),
        help="uvicorn worker processes (more than 1 needs --store redis://)",
    )
    add(
        "--run-ttl",
        type=float,
        default=env_default("run-ttl", 24 * 3600, float),
        help="seconds a run is kept after it was created (default 86400)",
    )
    add("--spec", type=Path, default=env_default("spec", None, Path), help="another openapi.yaml")
    add(
        "--models",
        type=Path,
        default=env_default("models", None, Path),
        help="a YAML file of your own models and of changes to Runbase's (prices, limits, ...)",
    )
    add("--log-level", default=env_default("log-level", "info"))
    add(
        "--replay",
        type=Path,
        default=env_default("replay", None, Path),
        help="answer the requests recorded in this cassette (from proxy --record) from it",
    )
    add_contract_parser(commands)
    add_proxy_parser(commands)
    return parser


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
    add("--log-level", default="info")


def settings_from(args: argparse.Namespace) -> MockSettings:
    return MockSettings(
        timing=args.timing,
        clock=args.clock,
        seed=args.seed,
        rate_limit=None if args.no_rate_limit else args.rate_limit,
        balance_usd=usd_to_micro(args.balance_usd),
        config=args.config,
        strict_keys=args.strict_keys,
        public_url=args.public_url,
        image_cache_mb=args.image_cache_mb,
        spec=args.spec,
        models=args.models,
        admin_token=args.admin_token,
        journal_size=args.journal_size,
        store=args.store,
        store_prefix=args.store_prefix,
        run_ttl_s=args.run_ttl,
    )


WORKER_SETTINGS = ENV_PREFIX + "WORKER_SETTINGS"


def settings_to_json(settings: MockSettings) -> str:
    data = {name: getattr(settings, name) for name in MockSettings.__dataclass_fields__}
    for name, value in data.items():
        if isinstance(value, Path | RateLimit):
            data[name] = str(value)
    return json.dumps(data)


def settings_from_json(text: str) -> MockSettings:
    data = json.loads(text)
    for name in ("config", "spec", "models"):
        data[name] = Path(data[name]) if data[name] is not None else None
    rate_limit = data["rate_limit"]
    data["rate_limit"] = parse_rate_limit(rate_limit) if rate_limit is not None else None
    return MockSettings(**data)


def worker_app() -> Any:
    """The app of one of ``serve --workers N``'s processes: settings come from the parent."""
    from mock_runbase.app import create_app

    app = create_app(settings_from_json(os.environ[WORKER_SETTINGS]))
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> None:
    """Move what start-up built (spec, validators, catalog) out of the garbage collector's
    sight: collections on the hot path then scan only per-request objects (a few % of
    throughput, measured with bench/ab.py)."""
    gc.collect()
    gc.freeze()


def banner(args: argparse.Namespace, settings: MockSettings, example: dict[str, Any]) -> str:
    host = "localhost" if args.host in ("0.0.0.0", "::", "127.0.0.1") else args.host
    base = f"http://{host}:{args.port}"
    limit = f"{settings.rate_limit} s per key" if settings.rate_limit else "off"
    return "\n".join(
        [
            f"mock-runbase on {base}  (timing {settings.timing}, {settings.clock} clock, "
            f"rate limit {limit})",
            f"  API:   {base}/v1   and   {base}/api/v1",
            f"  spec:  {base}/openapi.yaml     health: {base}/healthz",
            "  try:",
            f"    curl -s {base}/v1/runs -H 'Authorization: Bearer sk-test' \\",
            "      -H 'Content-Type: application/json' \\",
            f"      -d '{json.dumps(example)}'",
        ]
    )


def first_request_example(document: dict[str, Any]) -> dict[str, Any]:
    """The create example of ``openapi.yaml``, so the banner's curl is always valid."""
    media = document["paths"]["/runs"]["post"]["requestBody"]["content"]["application/json"]
    example: dict[str, Any] = next(iter(media["examples"].values()))["value"]
    return example


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mock_runbase.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    problem = workers_problem(args, settings)
    if problem:
        print(f"mock-runbase: {problem}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except (ConfigError, OSError, ValueError) as error:
        print(f"mock-runbase: {error}", file=sys.stderr)
        return 2
    example = first_request_example(app.state.service.spec.document)
    served: Any = app
    lines = [banner(args, settings, example)]
    if args.replay is not None:
        from mock_runbase.cassette import Cassette
        from mock_runbase.replay import ReplayApp

        try:
            served = ReplayApp(app, Cassette.load(args.replay), app.state.service.spec)
        except (ValueError, OSError) as error:
            print(f"mock-runbase: --replay: {error}", file=sys.stderr)
            return 2
        lines.append(f"  replay: {len(served)} recorded exchanges from {args.replay}")
    freeze_startup_objects()
    if args.workers > 1:
        lines.append(f"  {args.workers} workers sharing the store {settings.store}")
        os.environ[WORKER_SETTINGS] = settings_to_json(settings)
        served = "mock_runbase.cli:worker_app"
    print("\n".join(lines), flush=True)
    uvicorn.run(
        served,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        workers=args.workers if args.workers > 1 else None,
        factory=args.workers > 1,
    )
    return 0


def workers_problem(args: argparse.Namespace, settings: MockSettings) -> str | None:
    if args.workers < 1:
        return "--workers must be at least 1"
    if args.workers == 1:
        return None
    if settings.store == "memory":
        return (
            f"--workers {args.workers} needs a shared store: with the in-memory store each "
            "worker would have its own runs, balances and rate limits. "
            "Add --store redis://host:port/db (or MOCK_RUNBASE_STORE)."
        )
    if args.replay is not None:
        return "--replay serves one process; drop --workers"
    return None


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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": serve,
    "contract": contract,
    "proxy": proxy,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
