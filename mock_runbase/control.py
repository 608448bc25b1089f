"""The mock's own control API under ``/_mock`` (not part of Runbase)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mock_runbase.clock import VirtualClock, format_ms
from mock_runbase.errors import RunbaseError
from mock_runbase.scenarios import describe

if TYPE_CHECKING:
    from mock_runbase.service import RunbaseService

__all__ = ["control_routes"]

MAX_ADVANCE_SECONDS = 365 * 24 * 3600


def control_routes() -> list[BaseRoute]:
    return [
        Route("/_mock/account", account, methods=["GET"]),
        Route("/_mock/clock", clock, methods=["GET"]),
        Route("/_mock/clock/advance", advance_clock, methods=["POST"]),
        Route("/_mock/reset", reset, methods=["POST"]),
        Route("/_mock/scenarios", scenarios, methods=["GET"]),
    ]


def service_of(request: Request) -> RunbaseService:
    service: RunbaseService = request.app.state.service
    return service


def json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def account(request: Request) -> Response:
    service = service_of(request)
    key = service.directory.authenticate(
        request.headers.get("authorization"), service.clock.now_ms()
    )
    return json(await service.account_view(key))


def clock_view(service: RunbaseService) -> dict[str, Any]:
    return {"now": format_ms(service.clock.now_ms()), "virtual": service.clock.virtual}


async def clock(request: Request) -> Response:
    return json(clock_view(service_of(request)))


async def advance_clock(request: Request) -> Response:
    service = service_of(request)
    if not isinstance(service.clock, VirtualClock):
        raise RunbaseError(
            409, "clock_not_virtual", "The clock is real; start the mock with --clock virtual"
        )
    try:
        body = orjson.loads(await request.body())
        seconds = body["seconds"]
        valid = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        valid = False
    if not valid or not 0 <= seconds <= MAX_ADVANCE_SECONDS:
        raise RunbaseError(
            400,
            "invalid_request",
            f'Send {{"seconds": N}} with 0 <= N <= {MAX_ADVANCE_SECONDS}',
        )
    service.clock.advance(float(seconds))
    return json(clock_view(service))


async def reset(request: Request) -> Response:
    await service_of(request).reset()
    return json({"reset": True})


async def scenarios(request: Request) -> JSONResponse:
    return JSONResponse({"scenarios": describe()})
