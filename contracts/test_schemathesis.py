"""Schemathesis from ``openapi.yaml``: every documented operation fuzzed with all of its checks,
and stateful sequences through the spec's links (create -> poll).

The schema is the packaged spec, never the server's own ``/openapi.yaml``: the contract is
ours. In process the calls go to the ASGI app; otherwise to the base URL. Live, only cases
the spec rejects are sent (free), and the stateful phase is skipped (every step is paid).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import reject
from schemathesis import GenerationMode

from . import registry
from .facts import facts
from .options import options
from .registry import contract
from .session import current_target, settings_for
from .target import Target

SCHEMA = schemathesis.openapi.from_path(facts().spec.path).include(tag="runs")
SCHEMA.app = current_target().app  # in process: calls (and checks' re-sends) go to the app
if options().live:
    SCHEMA.config.generation.update(modes=[GenerationMode.NEGATIVE])


def call_kwargs(target: Target, key: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "base_url": target.api_base,
        "headers": {"Authorization": f"Bearer {key}"},
    }
    return kwargs


def paid(target: Target, case: Any) -> bool:
    return target.live and case.method.upper() == "POST" and facts().accepted(case.body) is not None


@SCHEMA.parametrize()
@contract(
    "schemathesis_conformance",
    rule="every documented operation, fuzzed from openapi.yaml, passes all schemathesis checks",
    examples=30,
    count_calls=False,
)
def test_schemathesis_conformance(target: Target, case: Any) -> None:
    registry.tick()
    if paid(target, case):
        reject()
    kwargs = call_kwargs(target, target.keys.key())
    if case.method.upper() != "POST":
        case.call_and_validate(**kwargs)
        return
    held, price = target.hold(case.body)  # through the spend ledger, like every create
    try:
        response = case.call(**kwargs)
    except BaseException:
        target.ledger.settle(held, price.micro_usd)
        raise
    try:
        body = response.json()
    except ValueError:
        body = None
    target.settle(held, price, response.status_code, body)
    case.validate_response(response, transport_kwargs=kwargs)


class Links(SCHEMA.as_state_machine()):  # type: ignore[misc]
    """Sequences the spec's links allow (create -> get), each step checked by schemathesis."""

    target: Target

    def setup(self) -> None:
        registry.tick()
        self.key = self.target.keys.key()

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return call_kwargs(self.target, self.key)

    def after_call(self, response: Any, case: Any) -> None:
        super().after_call(response, case)
        if case.method.upper() == "POST" and 200 <= response.status_code < 300:
            registry.count_run()


STATEFUL = "schemathesis_stateful"


@contract(
    STATEFUL,
    rule="create -> get sequences through the spec's links pass all schemathesis checks",
    creates_runs=True,
    examples=15,
    settings=False,
    count_calls=False,
)
def test_schemathesis_stateful(target: Target) -> None:
    if target.live:
        pytest.skip("every stateful step may create a paid run; polling_is_monotonic covers it")
    Links.target = target
    chosen = settings_for(registry.CONTRACTS[STATEFUL])
    Links.run(settings=chosen.__class__(chosen, stateful_step_count=6))
