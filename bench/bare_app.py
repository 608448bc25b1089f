"""The ceiling of this stack: bare Starlette on uvicorn answering constants.

``POST /v1/runs`` reads the body and answers a constant pending run; ``GET /v1/runs/{id}`` a
constant succeeded run; ``GET /files/generated/{name}`` a constant PNG: the bytes of
``$BENCH_PNG_DIR/{name}`` loaded at startup (the harness saves the mock's own 1K and 4K PNGs
there, so both serve the same bytes), 404 for any other name. No auth, validation, state or
middleware. Run it as the harness does::

    python -m uvicorn bare_app:app --app-dir bench --port 8081 --log-level warning
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["app"]

RUN = {
    "id": "run_2abcDEF123aBcDeF123aBc",
    "model": "openai/gpt-image-2",
    "costUsd": 50000,
    "createdAt": "2026-06-01T12:00:00.000Z",
}
PENDING = orjson.dumps({**RUN, "status": "pending"})
SUCCEEDED = orjson.dumps(
    {
        **RUN,
        "status": "succeeded",
        "output": {"urls": ["http://127.0.0.1/files/generated/aBcDeF123aBcDeF123aB.png"]},
        "completedAt": "2026-06-01T12:00:00.050Z",
    }
)


def load_pngs(folder: str | None) -> dict[str, bytes]:
    if not folder:
        return {}
    return {path.name: path.read_bytes() for path in Path(folder).glob("*.png")}


PNGS = load_pngs(os.environ.get("BENCH_PNG_DIR"))


async def create_run(request: Request) -> Response:
    await request.body()
    return Response(PENDING, media_type="application/json")


async def get_run(request: Request) -> Response:
    return Response(SUCCEEDED, media_type="application/json")


async def get_file(request: Request) -> Response:
    png = PNGS.get(request.path_params["name"])
    if png is None:
        return Response(b'{"error":{"code":"file_not_found"}}', 404, media_type="application/json")
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": '"bare"'}
    return Response(png, media_type="image/png", headers=headers)


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/v1/runs", create_run, methods=["POST"]),
        Route("/v1/runs/{run_id:str}", get_run, methods=["GET"]),
        Route("/files/generated/{name:str}", get_file, methods=["GET", "HEAD"]),
        Route("/healthz", health, methods=["GET"]),
    ]
)
