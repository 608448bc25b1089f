"""Schemathesis against the in-process mock: examples, coverage, fuzzing and stateful phases.

Every documented operation is generated from ``openapi.yaml`` (and the mock's own from its
``/_mock/openapi.json``) and every response checked with all of schemathesis' checks; the
stateful test follows the spec's links (create -> get). ``tests/test_outside_tools.py`` runs
schemathesis' own CLI against a served mock, as a user does.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import settings

from mock_runbase.app import create_app
from mock_runbase.clock import VirtualClock
from mock_runbase.settings import MockSettings

# Instant timing: a create answers pending and the first poll is terminal, so the checks see
# both shapes (the pending/processing ones are covered by tests/test_app.py).
APP = create_app(
    MockSettings(timing="instant", clock="virtual", rate_limit=None, balance_usd=10**15),
    clock=VirtualClock(),
)
schema = schemathesis.openapi.from_asgi("/openapi.yaml", APP)
schema.config.update(
    base_url="http://mock.test/v1", headers={"Authorization": "Bearer sk-schemathesis"}
)


@schema.parametrize()
@settings(max_examples=40)
def test_every_documented_operation_conforms(case: Any) -> None:
    case.call_and_validate()


class RunsStateMachine(schema.as_state_machine()):  # type: ignore[misc]
    pass


TestRunsStateful = RunsStateMachine.TestCase
TestRunsStateful.settings = settings(max_examples=25, stateful_step_count=6, deadline=None)


MOCK_APP = create_app(MockSettings(clock="virtual", rate_limit=None), clock=VirtualClock())
mock_schema = schemathesis.openapi.from_asgi("/_mock/openapi.json", MOCK_APP)
# Unscoped calls, as the CLI test's: a fixed key would make every call one account's, and
# schemathesis would take GET /_mock/account answering that key for one ignoring bad auth.
mock_schema.config.update(base_url="http://mock.test")


@mock_schema.parametrize()
@settings(max_examples=15)
def test_the_mocks_own_endpoints_conform(case: Any) -> None:
    case.call_and_validate()
