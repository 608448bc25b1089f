"""Live mode (``pytest contracts --live``), tested without the network: against a fake "real
API" on loopback (the mock with no ``/_mock``, charging like Runbase), the suite never creates
a run that would take its spend past ``--max-spend-usd``, and it prints what it spent."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.facts import facts, prices
from contracts.options import Options
from contracts.spend import MICRO, Ledger, SpendCapReached
from mock_runbase.app import create_app
from mock_runbase.errors import error_body
from mock_runbase.settings import MockSettings
from mock_runbase.spec import load_spec
from tests.test_contracts_broken import Rewrite, run_contracts
from tests.test_proxy import Served

SPEC = load_spec()
SPENT = re.compile(r"Spent \$(\d+\.\d{3}) of the \$(\d+\.\d{3}) cap: (\d+) runs created")


class LikeTheRealApi:
    """The mock as the real API looks from outside: no control API, real clock; it tallies
    what it charged (the costUsd of every run it created)."""

    def __init__(self, accept_anything: bool = False) -> None:
        self.app: ASGIApp = create_app(MockSettings(clock="real", timing="fast", rate_limit=None))
        if accept_anything:  # a broken server: every create body becomes a valid (4K) one
            media = SPEC.document["paths"]["/runs"]["post"]["requestBody"]["content"]
            example = next(iter(media["application/json"]["examples"].values()))["value"]
            valid = json.dumps(example).encode()
            self.app = Rewrite(
                self.app, request=lambda scope, body: valid if scope["method"] == "POST" else body
            )
        self.charged = 0
        self.runs = 0
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1
        if scope["path"].startswith("/_mock"):
            body = json.dumps(error_body("not_found", "Not Found")).encode()
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        status: list[int] = []
        creating = scope["method"] == "POST" and scope["path"].endswith("/runs")

        async def tally(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif creating and 200 <= status[0] < 300 and message.get("body"):
                self.charged += json.loads(message["body"])["costUsd"]
                self.runs += 1
            await send(message)

        await self.app(scope, receive, tally)


def live(tmp_path: Path, base: str, *args: str, key: str | None = "sk-fake-live") -> Any:
    env = {"RUNBASE_API_KEY": key or "", "RUNBASE_OTHER_API_KEY": "", "RUNBASE_BASE_URL": ""}
    # the fake has no rate limiter (the real API's would make every retry a real wait): declared
    options = (
        "--live",
        "--base-url",
        f"{base}/v1",
        "--contract-profile",
        "quick",
        "--no-rate-limit",
    )
    return run_contracts(tmp_path, *options, *args, env=env)


def spent(output: str) -> tuple[int, int, int]:
    found = SPENT.search(output)
    assert found, output[-3000:]
    return round(float(found[1]) * MICRO), round(float(found[2]) * MICRO), int(found[3])


def test_the_suite_never_passes_the_cap_and_counts_what_it_spent(tmp_path: Path) -> None:
    fake = LikeTheRealApi()
    cheapest = min(facts().cheapest(m) for m in SPEC.catalog)  # what each paid example costs
    room = 4 * cheapest // 1000 * 1000  # for 4 of the paid contracts' 6 examples, in mills
    with Served(fake) as base:
        result = live(tmp_path, base, "--max-spend-usd", f"{room / MICRO:.3f}")
    output = result.stdout
    assert result.returncode == 0, output[-5000:]
    total, cap, runs = spent(output)
    assert cap == room
    assert (total, runs) == (fake.charged, fake.runs), "the suite counts exactly what it paid"
    assert 0 < fake.charged <= cap
    assert "creates refused by the cap" in output
    assert "spend cap: a create of" in output  # the paid contracts that stopped say why
    assert "needs the mock's control API" in output  # the fake has no /_mock
    assert "needs a key of another account" in output  # no RUNBASE_OTHER_API_KEY
    assert "declared without a rate limiter (--no-rate-limit)" in output
    assert "failed" not in output.splitlines()[-1]


def test_a_zero_cap_runs_every_free_contract_and_creates_nothing(tmp_path: Path) -> None:
    fake = LikeTheRealApi()
    with Served(fake) as base:
        result = live(tmp_path, base, "--max-spend-usd", "0")
    output = result.stdout
    assert result.returncode == 0, output[-5000:]
    assert fake.runs == 0 and fake.charged == 0
    assert spent(output) == (0, 0, 0)
    for free in ("invalid_input_gets_its_documented_code", "unknown_run_is_run_not_found",
                 "error_bodies_have_message_and_code", "schemathesis_conformance"):  # fmt: skip
        assert re.search(rf"{free}\s*│ passed", output), free
    assert fake.requests > 50


def test_a_server_accepting_any_body_overspends_by_one_run_at_most(tmp_path: Path) -> None:
    fake = LikeTheRealApi(accept_anything=True)
    with Served(fake) as base:
        result = live(tmp_path, base, "--max-spend-usd", "0.30", "--check",
                      "invalid_input_gets_its_documented_code")  # fmt: skip
    output = result.stdout
    assert result.returncode == 1, output[-5000:]  # it accepted what the spec rejects
    worst = max(max(prices(m)) for m in SPEC.catalog)
    total, cap, runs = spent(output)
    # a run of a body the spec rejects is counted at the most its model can cost
    assert runs == fake.runs and total >= fake.charged
    assert cap < fake.charged <= cap + worst or fake.charged <= cap
    assert "creates refused by the cap" in output


def test_the_real_api_is_never_a_target_without_live() -> None:
    for base in facts().real_bases:
        assert "is the real Runbase API: add --live" in str(Options(base_url=base).problem)
        assert Options(base_url=base, live=True, api_key="sk-real").problem is None
    assert Options(base_url="http://localhost:8080/v1").problem is None
    assert "--live needs RUNBASE_API_KEY" in str(Options(live=True).problem)


def test_ledger_allows_exactly_the_cap_and_not_one_micro_more() -> None:
    ledger = Ledger(cap=120_000)
    held = ledger.reserve(70_000, "a 2K run")
    ledger.settle(held, 70_000)
    held = ledger.reserve(50_000, "a 1K run")  # 120000: exactly the cap
    ledger.settle(held, 50_000)
    with pytest.raises(SpendCapReached, match=r"\$0\.120 of the \$0\.120 cap"):
        ledger.reserve(1, "anything paid")
    ledger.reserve(0, "a rejected input")  # free: always sent
    assert (ledger.spent, ledger.runs, ledger.refused) == (120_000, 2, 1)


def test_ledger_releases_what_a_rejection_did_not_spend() -> None:
    ledger = Ledger(cap=100_000)
    held = ledger.reserve(70_000, "a 2K run")
    with pytest.raises(SpendCapReached):
        ledger.reserve(50_000, "a 1K run while the 2K one is in flight")
    ledger.settle(held, None)  # rejected: nothing was created
    ledger.settle(ledger.reserve(100_000, "a run at the cap"), 100_000)
    assert ledger.summary().startswith("Spent $0.100 of the $0.100 cap: 1 runs created")
