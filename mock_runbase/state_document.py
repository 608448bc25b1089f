"""The mock's state as one JSON document: what ``GET /_mock/state`` answers, and what
``PUT /_mock/state`` and ``serve --state FILE`` load (``MockState`` in the control document).

A document (``version`` 1) holds the state as of ``clock.now``:

- ``runs``: every run kept, oldest first, as the store keeps it (its timing plan, outcome and
  file; a run timed by polls, its polls answered and its plan), so a poll after loading
  answers as before;
- ``accounts``: what ``PUT /_mock/accounts`` changed (starting balance, keys, dropped keys),
  laid over the loading mock's ``--config``;
- ``ledgers``: what each account and key was charged and refunded, and its runs;
- ``pendingRefunds``: refunds still due of runs no longer kept (a kept run's own refund
  follows from the run: it is paid when the run fails, if that is after ``clock.now``);
- ``rules``: each as it was added (a probability rule with its ``seed`` made explicit), with
  its match and hit counts;
- ``counters``: the run numbers (seeded ids) and rule numbers handed out, so new ids never
  repeat one of the document's.

The journal and the rate-limit windows are not part of it. ``state_document`` writes one;
``loaded_state`` reads one back, checking all a store needs to hold it: ``StateError`` for
what ``MockState`` says a document cannot be (400), ``StateConflict`` for a document at odds
with itself, which no schema can say (an id given twice, a key of two accounts: 409).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from mock_runbase.accounts import (
    AccountOverride,
    ConfigError,
    Directory,
    KeySettings,
    Ledger,
    with_overrides,
)
from mock_runbase.clock import format_ms, parse_timestamp
from mock_runbase.config_file import (
    CONTROL_KEY_FIELDS,
    KeyEntry,
    RuleCheck,
    key_path,
    key_settings,
)
from mock_runbase.errors import RunbaseError
from mock_runbase.own_media import MediaDirectory, MediaError
from mock_runbase.rules import Rule, rule_from_body
from mock_runbase.runs import Run
from mock_runbase.spec import Spec
from mock_runbase.store import AccountState, PendingRefund, StoredState, pending_refund
from mock_runbase.validation import ValidatedRequest, parse_create_request

__all__ = [
    "VERSION",
    "LoadedState",
    "StateChecks",
    "StateConflict",
    "StateError",
    "loaded_state",
    "read_state_file",
    "state_document",
    "write_state_file",
]

VERSION = 1
POLL_FIELDS = ("polls", "pendingPolls", "processingPolls")  # a run timed by polls: all three
MAX_MESSAGE = 300  # a schema message quotes the value: a whole document, if that is what's wrong


class StateError(ValueError):
    """A state document the mock cannot load: where in it, and what is wrong."""

    def __init__(self, where: str, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        super().__init__(f"{where}: {message}" if where else message)


class StateConflict(StateError):
    """A document at odds with itself (what no schema can say): an id or a file given twice,
    a key two accounts hold, a refund listed for a run that carries its own."""


@dataclass(frozen=True)
class LoadedState:
    stored: StoredState
    now_ms: int  # the instant it is the state of
    virtual: bool  # taken on a virtual clock

    def summary(self) -> dict[str, int]:
        stored = self.stored
        return {
            "runs": len(stored.runs),
            "accounts": len(stored.overrides),
            "ledgers": len(stored.ledgers),
            "rules": len(stored.rules),
            "pendingRefunds": len(stored.refunds),
        }


@dataclass(frozen=True)
class StateChecks:
    """What a document is checked against: ``MockState`` compiled, the catalog served (and
    its input schemas), the rule check of ``POST /_mock/rules``, the config's accounts."""

    schema: Any
    spec: Spec
    check_rule: RuleCheck
    base: Directory
    seed: int  # a rule without draws takes the mock's
    media: MediaDirectory  # what a run's ``media`` may name


# --- writing --------------------------------------------------------------------------------


def state_document(state: StoredState, now_ms: int, virtual: bool) -> dict[str, Any]:
    kept = {run.id for run in state.runs}
    orphans = sorted(
        (refund.fails_at_ms, run_id, refund)
        for run_id, refund in state.refunds.items()
        if run_id not in kept
    )
    return {
        "version": VERSION,
        "clock": {"now": format_ms(now_ms), "virtual": virtual},
        "counters": {"runs": state.run_numbers, "rules": state.rule_numbers},
        "accounts": {name: account_entry(o) for name, o in sorted(state.overrides.items())},
        "ledgers": {name: ledger_entry(s) for name, s in sorted(state.ledgers.items())},
        "runs": [run_entry(run) for run in state.runs],
        "pendingRefunds": [refund_entry(run_id, refund) for _, run_id, refund in orphans],
        "rules": [rule_entry(rule) for rule in state.rules],
    }


def account_entry(override: AccountOverride) -> dict[str, Any]:
    keys = None if override.keys is None else [key_entry(key) for key in override.keys]
    return {
        "startingBalanceUsd": override.starting_balance_usd,
        "keys": keys,
        "droppedKeys": list(override.dropped),
    }


def key_entry(key: KeySettings) -> dict[str, Any]:
    return {
        "key": key.key,
        "spendLimitCents": key.spend_limit_cents,
        "ipAllowList": list(key.ip_allow_list),
        "disabled": key.disabled,
        "expiresAt": None if key.expires_ms is None else format_ms(key.expires_ms),
        "usageQuota": key.usage_quota,
    }


def counts(ledger: Ledger) -> dict[str, int]:
    return {"charged": ledger.charged, "refunded": ledger.refunded, "runs": ledger.runs}


def ledger_entry(state: AccountState) -> dict[str, Any]:
    keys = {key: counts(ledger) for key, ledger in sorted(state.keys.items())}
    return {**counts(state.ledger), "keys": keys}


def run_entry(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "account": run.account,
        "key": run.key,
        "model": run.model,
        "input": run.input,
        "costUsd": run.cost_usd,
        "createdAt": format_ms(run.created_ms),
        "pendingMs": run.pending_ms,
        "processingMs": run.processing_ms,
        "outcome": run.outcome,
        "error": run.error,
        "width": run.width,
        "height": run.height,
        "fileName": run.file_name,
        "imageSeed": run.image_seed,
        "scenario": run.scenario,
        "media": run.media,
        **poll_entry(run),
    }


def poll_entry(run: Run) -> dict[str, Any]:
    """A run timed by polls: its count and plan (none for a run timed by the clock)."""
    if run.polls is None:
        return {}
    return {
        "polls": run.polls,
        "pendingPolls": run.pending_polls,
        "processingPolls": run.processing_polls,
    }


def refund_entry(run_id: str, refund: PendingRefund) -> dict[str, Any]:
    return {
        "runId": run_id,
        "account": refund.account,
        "key": refund.key,
        "costUsd": refund.cost_usd,
        "failsAt": format_ms(refund.fails_at_ms),
    }


def rule_entry(rule: Rule) -> dict[str, Any]:
    body = rule.body
    if rule.probability is not None:  # its draws' seed, which the mock's --seed gave it
        body = {**body, "seed": rule.seed}
    return {"id": rule.id, "rule": body, "matches": rule.matches, "hits": rule.hits}


# --- reading --------------------------------------------------------------------------------


def loaded_state(document: Any, checks: StateChecks) -> LoadedState:
    """The state ``document`` holds, checked whole; ``StateError`` at the first problem."""
    if not isinstance(document, dict):
        raise StateError("", "a state document is a JSON object (as GET /_mock/state answers)")
    if document.get("version") != VERSION:
        given = repr(document["version"]) if "version" in document else "missing"
        raise StateError("version", f"{given}: this mock reads version {VERSION}")
    check_rules(document, checks.check_rule)  # first: their messages say more than the schema's
    check_runs(document, checks)
    problem = next(iter(checks.schema.iter_errors(document)), None)
    if problem is not None:
        raise StateError(key_path(list(problem.instance_path)), problem.message)
    # Instants are MockStateInstant: UTC, of the years 1000 to 9999, so they parse and show.
    now_ms = parse_timestamp(document["clock"]["now"])
    runs = [run_of(entry, f"runs[{i}]", checks) for i, entry in enumerate(document["runs"])]
    check_unique([run.id for run in runs], "runs", "id")
    check_unique([run.file_name for run in runs], "runs", "fileName")
    overrides = {name: override_of(name, entry) for name, entry in document["accounts"].items()}
    try:
        with_overrides(checks.base, overrides)
    except ConfigError as error:
        raise StateConflict("accounts", str(error)) from None
    rules = rules_of(document["rules"], checks.seed)
    refunds = orphan_refunds(document["pendingRefunds"], {run.id for run in runs})
    refunds |= due_refunds(runs, now_ms)
    ledgers = {name: ledger_of(entry) for name, entry in document["ledgers"].items()}
    stored = StoredState(
        runs=runs,
        overrides=overrides,
        ledgers=with_ledgers_for(ledgers, runs, refunds.values()),
        refunds=refunds,
        rules=rules,
        run_numbers=int(document["counters"]["runs"]),
        rule_numbers=max([int(document["counters"]["rules"]), *(rule.number for rule in rules)]),
    )
    return LoadedState(stored, now_ms, document["clock"]["virtual"])


def check_rules(document: Mapping[str, Any], check_rule: RuleCheck) -> None:
    entries = document.get("rules")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        body = entry.get("rule") if isinstance(entry, dict) else None
        found = check_rule(body) if isinstance(body, dict) else None
        if found is not None:
            raise StateError(key_path(["rules", index, "rule", *found.path]), found.message)


def check_runs(document: Mapping[str, Any], checks: StateChecks) -> None:
    """Each run's create, own file and poll fields, before the schema: their messages say
    more."""
    entries = document.get("runs")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict):
            check_polls(entry, f"runs[{index}]")
        if isinstance(entry, dict) and "model" in entry and "input" in entry:
            request = checked_create(entry, f"runs[{index}]", checks.spec)
            if isinstance(media := entry.get("media"), str):
                check_media(media, request.model.kind, f"runs[{index}].media", checks.media)


def checked_create(entry: Mapping[str, Any], where: str, spec: Spec) -> ValidatedRequest:
    """The run's model and input, as its create was checked (``model_not_found``, ...)."""
    body = orjson.dumps({"model": entry["model"], "input": entry["input"]})
    try:
        return parse_create_request(spec, body)
    except RunbaseError as error:
        field = "model" if error.code in ("model_not_found", "missing_model") else "input"
        raise StateError(f"{where}.{field}", error.message) from None


def run_of(entry: Mapping[str, Any], where: str, checks: StateChecks) -> Run:
    request = checked_create(entry, where, checks.spec)
    return Run(
        id=entry["id"],
        account=entry["account"],
        key=entry["key"],
        model=request.model.id,
        input=request.input,
        cost_usd=int(entry["costUsd"]),
        created_ms=parse_timestamp(entry["createdAt"]),
        pending_ms=int(entry["pendingMs"]),
        processing_ms=optional_int(entry["processingMs"]),
        outcome=entry["outcome"],
        error=entry["error"],
        width=int(entry["width"]),
        height=int(entry["height"]),
        file_name=entry["fileName"],
        image_seed=int(entry["imageSeed"]),
        scenario=entry["scenario"],
        media=entry.get("media"),
        polls=None if "polls" not in entry else int(entry["polls"]),
        pending_polls=int(entry.get("pendingPolls", 0)),
        processing_polls=optional_int(entry.get("processingPolls", 0)),
    )


def optional_int(value: Any) -> int | None:
    """``int``: JSON Schema's integers include ``2.0``, and the stores keep integers."""
    return None if value is None else int(value)


def check_polls(entry: Mapping[str, Any], where: str) -> None:
    """A run timed by polls carries its count and its plan, all three; one timed by the
    clock none of them."""
    given = [name for name in POLL_FIELDS if name in entry]
    if given and len(given) < len(POLL_FIELDS):
        missing = ", ".join(name for name in POLL_FIELDS if name not in entry)
        raise StateError(
            f"{where}.{given[0]}",
            f"a run timed by polls has {', '.join(POLL_FIELDS)} (one timed by the clock none "
            f"of them): {missing} missing",
        )


def check_media(name: str, kind: str, where: str, media: MediaDirectory) -> None:
    """A run serving a file of ``--media-dir`` needs this mock to have it, of its model's kind."""
    try:
        found = media.file(name)
    except MediaError as error:
        raise StateError(where, str(error)) from None
    if found.kind != kind:
        raise StateError(where, f"{name!r} is a {found.kind}, and the run's model makes {kind}s")


def check_unique(values: list[str], where: str, field: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise StateConflict(f"{where}[{index}].{field}", f"{value!r} is given twice")
        seen.add(value)


def override_of(name: str, entry: Mapping[str, Any]) -> AccountOverride:
    keys = entry["keys"]
    declared = None
    if keys is not None:
        declared = tuple(
            key_of(name, key, ["accounts", name, "keys", i]) for i, key in enumerate(keys)
        )
    balance = int(entry["startingBalanceUsd"])
    return AccountOverride(balance, declared, tuple(entry["droppedKeys"]))


def key_of(account: str, entry: Mapping[str, Any], where: list[str | int]) -> KeySettings:
    try:
        declared = KeyEntry.model_validate({CONTROL_KEY_FIELDS[k]: v for k, v in entry.items()})
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        raise StateError(key_path([*where, *detail["loc"]]), detail["msg"]) from None
    return key_settings(account, declared)


def ledger_of(entry: Mapping[str, Any]) -> AccountState:
    keys = {key: ledger_of_counts(counts) for key, counts in entry["keys"].items()}
    return AccountState(ledger_of_counts(entry), keys)


def ledger_of_counts(entry: Mapping[str, Any]) -> Ledger:
    """``int``: JSON Schema's integers include ``2.0``, and the stores keep integers."""
    return Ledger(int(entry["charged"]), int(entry["refunded"]), int(entry["runs"]))


def rules_of(entries: list[Mapping[str, Any]], seed: int) -> list[Rule]:
    check_unique([entry["id"] for entry in entries], "rules", "id")
    rules = []
    for entry in entries:
        rule = rule_from_body(entry["rule"], int(entry["id"].removeprefix("rule_")), seed)
        rule.matches, rule.hits = int(entry["matches"]), int(entry["hits"])
        rules.append(rule)
    return sorted(rules, key=lambda rule: rule.number)


def orphan_refunds(entries: list[Mapping[str, Any]], run_ids: set[str]) -> dict[str, PendingRefund]:
    refunds = {}
    for index, entry in enumerate(entries):
        where, run_id = f"pendingRefunds[{index}]", entry["runId"]
        if run_id in run_ids:
            raise StateConflict(
                f"{where}.runId", f"{run_id} is in runs: its refund follows from it"
            )
        if run_id in refunds:
            raise StateConflict(f"{where}.runId", f"{run_id!r} is given twice")
        fails_at = parse_timestamp(entry["failsAt"])
        cost = int(entry["costUsd"])
        refunds[run_id] = PendingRefund(fails_at, entry["account"], entry["key"], cost)
    return refunds


def due_refunds(runs: list[Run], now_ms: int) -> dict[str, PendingRefund]:
    """The refunds of runs that fail after ``now_ms`` (those before were paid already)."""
    refunds = {}
    for run in runs:
        refund = pending_refund(run)
        if refund is not None and refund.fails_at_ms > now_ms:
            refunds[run.id] = refund
    return refunds


def with_ledgers_for(
    ledgers: dict[str, AccountState], runs: list[Run], refunds: Iterable[PendingRefund]
) -> dict[str, AccountState]:
    """``ledgers``, with an empty one for every account and key a run or a refund names and
    the document does not (a refund is paid into both)."""
    filled = {name: replace(state, keys=dict(state.keys)) for name, state in ledgers.items()}
    for account, key in [(run.account, run.key) for run in runs] + [
        (refund.account, refund.key) for refund in refunds
    ]:
        filled.setdefault(account, AccountState()).keys.setdefault(key, Ledger())
    return filled


# --- files ----------------------------------------------------------------------------------


def read_state_file(path: Path, checks: StateChecks) -> LoadedState | None:
    """The state in ``path``; None if there is no such file yet."""
    if not path.exists():
        return None
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as error:
        raise StateError("", f"cannot be read: {error}") from None
    except orjson.JSONDecodeError as error:
        raise StateError("", f"not JSON: {error}") from None
    return loaded_state(document, checks)


def write_state_file(path: Path, document: dict[str, Any]) -> None:
    """Written whole or not at all: to a file beside it, then renamed over it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(partial, path)
