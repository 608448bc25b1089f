"""The mock's whole state in and out: ``GET``/``PUT /_mock/state`` and ``serve --state FILE``.

An export settles refunds up to the clock's now and writes the store's state as of then
(``state_document``); an import checks a document whole, then replaces the store's state at
once and sets a virtual clock to the document's instant. A state taken on a virtual clock is
refused by a mock on a real one (its runs' times are the virtual clock's, which a real clock
cannot be set to). The journal is left as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mock_runbase.clock import SettableClock, format_ms
from mock_runbase.errors import RunbaseError
from mock_runbase.state_document import (
    LoadedState,
    StateChecks,
    StateConflict,
    StateError,
    loaded_state,
    read_state_file,
    state_document,
    write_state_file,
)

if TYPE_CHECKING:
    from mock_runbase.service import RunbaseService

__all__ = [
    "STATE_SCHEMA",
    "export_state",
    "import_state",
    "install_state",
    "save_state",
    "state_file",
]

log = logging.getLogger("mock_runbase.state")

STATE_SCHEMA = "#/components/schemas/MockState"


def state_checks(service: RunbaseService) -> StateChecks:
    return StateChecks(
        schema=service.state_schema,
        spec=service.spec,
        check_rule=service.check_rule,
        base=service.base_directory,
        seed=service.settings.seed,
        media=service.own_media,
    )


def clock_problem(service: RunbaseService, loaded: LoadedState) -> str | None:
    if loaded.virtual and not service.clock.virtual:
        return (
            f"clock: this state was taken on a virtual clock (at {format_ms(loaded.now_ms)}) "
            "and its runs' times are that clock's; load it into a mock started with "
            "--clock virtual"
        )
    return None


def state_file(service: RunbaseService, path: Path) -> LoadedState | None:
    """The state ``--state`` names, checked, to load at start; None if the file is not there
    yet. ``StateError`` (a ``ValueError``: ``serve`` exits 2) naming the file."""
    try:
        loaded = read_state_file(path, state_checks(service))
    except StateError as error:
        raise StateError(f"--state {path}", str(error)) from None
    problem = None if loaded is None else clock_problem(service, loaded)
    if problem is not None:
        raise StateError(f"--state {path}", problem)
    return loaded


async def export_state(service: RunbaseService) -> dict[str, Any]:
    await service.start()  # a state loaded at start is the state until then
    now = await service.clock.now()
    stored = await service.store.export_state(now)
    return state_document(stored, now, service.clock.virtual)


async def import_state(service: RunbaseService, document: Any) -> dict[str, Any]:
    """Replace the state with ``document``'s; else nothing changes and the answer names the
    first problem: 400 for what the schema refuses, 409 ``state_conflict`` for a document at
    odds with itself, 409 ``clock_not_virtual`` for a virtual clock's state on a real one."""
    try:
        loaded = loaded_state(document, state_checks(service))
    except StateConflict as error:
        raise RunbaseError(409, "state_conflict", str(error)) from None
    except StateError as error:
        raise RunbaseError(400, "invalid_request", str(error)) from None
    problem = clock_problem(service, loaded)
    if problem is not None:
        raise RunbaseError(409, "clock_not_virtual", problem)
    await install_state(service, loaded)
    now = await service.clock.now()
    return {
        "imported": loaded.summary(),
        "clock": {"now": format_ms(now), "virtual": service.clock.virtual},
    }


async def install_state(service: RunbaseService, loaded: LoadedState) -> None:
    await service.store.import_state(loaded.stored)
    clock = service.clock
    if isinstance(clock, SettableClock) and clock.virtual:
        await clock.restore(loaded.now_ms)
    service.started = True  # the state holds the rules: the config's are not added again


async def save_state(service: RunbaseService, path: Path) -> None:
    document = await export_state(service)
    write_state_file(path, document)
    log.info("state saved to %s: %d runs", path, len(document["runs"]))
