"""The dashboard (``/_mock/ui``): a live page of the mock's runs, accounts, journal and rules.

The dashboard is one HTML page (``static/dashboard.{html,css,js}``, the CSS and script inlined
so the page is a single request) that polls ``GET /_mock/ui/state``: runs with their status
timeline, accounts, the newest journal entries and the rules, in one call. Its buttons and
form call the control API. Being under ``/_mock``, all of it is behind the admin token when
one is set, and none of it is journaled (thumbnails included), so watching the mock leaves
the journal to the app under test.
"""

from __future__ import annotations

import io
from functools import cache
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from PIL import Image
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from mock_runbase.catalog import Model
from mock_runbase.clock import format_ms
from mock_runbase.control import service_of
from mock_runbase.docs import static_text
from mock_runbase.errors import RunbaseError
from mock_runbase.journal_records import JournalEntry, JournalFilter
from mock_runbase.media.cache import MediaCache
from mock_runbase.runs import Run, completed_ms, file_path, status_at

if TYPE_CHECKING:
    from mock_runbase.control_spec import ControlSpec

__all__ = ["dashboard_routes"]

UI = "/_mock/ui"
STATE_PATH = f"{UI}/state"
THUMBNAIL_PATH = f"{UI}/runs/{{run_id}}/thumbnail"
THUMBNAIL_BOX = (320, 180)
PROMPT_EXCERPT = 120
TIER_FIELDS = ("resolution", "quality", "mode")
NO_CACHE = {"Cache-Control": "no-cache"}


def dashboard_routes(control: ControlSpec) -> list[BaseRoute]:
    state_query = control.query(STATE_PATH, "get")
    thumbnail_query = control.query(THUMBNAIL_PATH, "get")
    thumbnails = MediaCache(max_bytes=16 * 1024 * 1024)

    async def page(request: Request) -> Response:
        return HTMLResponse(dashboard_page(), headers=NO_CACHE)

    async def state(request: Request) -> Response:
        query = state_query.parse(request.query_params.multi_items())
        service = service_of(request)
        now = await service.now()
        limit: int = query.get("limit", 100)
        runs = await service.store.list_runs(None, limit)
        selection = JournalFilter(key=query.get("key"), status=query.get("status"))
        matched = list(reversed(await service.store.journal(selection)))
        body = {
            "clock": {"now": format_ms(now), "virtual": service.clock.virtual},
            "runs": [dashboard_run(run, now, service.spec.catalog.get(run.model)) for run in runs],
            "accounts": await service.account_views(),
            "requests": [journal_line(entry) for entry in matched[:limit]],
            "requestsMatched": len(matched),
            "rules": [rule.view() for rule in await service.store.rules(None)],
        }
        return Response(orjson.dumps(body), media_type="application/json", headers=NO_CACHE)

    async def thumbnail(request: Request) -> Response:
        thumbnail_query.parse(request.query_params.multi_items())  # it takes none: 400 for any
        service = service_of(request)
        run_id = request.path_params["run_id"]
        run = await service.store.get_run(run_id)
        if run is None or status_at(run, await service.now()) != "succeeded":
            raise RunbaseError(404, "run_not_found", f"No succeeded run with id {run_id!r}")
        png = (await service.media(run.file_name)).content
        small = await anyio.to_thread.run_sync(
            lambda: thumbnails.get_or_render(run.file_name, lambda: shrink(png, run.file_name))
        )
        headers = {"Cache-Control": "private, max-age=31536000, immutable"}
        return Response(small, media_type="image/png", headers=headers)

    return [
        Route(UI, page, methods=["GET"]),
        Route(STATE_PATH, state, methods=["GET"]),
        Route(f"{UI}/runs/{{run_id:str}}/thumbnail", thumbnail, methods=["GET"]),
    ]


# --- views --------------------------------------------------------------------------------------


def dashboard_run(run: Run, now_ms: int, model: Model | None) -> dict[str, Any]:
    """The run with its timeline: created (pending), left pending, ended; null until then."""
    status = status_at(run, now_ms)
    done = completed_ms(run)
    terminal = status in ("succeeded", "failed")
    prompt = str(run.input.get("prompt", ""))
    if len(prompt) > PROMPT_EXCERPT:
        prompt = prompt[:PROMPT_EXCERPT] + "\u2026"
    succeeded = status == "succeeded"
    return {
        "id": run.id,
        "model": run.model,
        "status": status,
        "costUsd": run.cost_usd,
        "createdAt": format_ms(run.created_ms),
        "processingAt": format_ms(run.processing_from_ms) if status != "pending" else None,
        "completedAt": format_ms(done) if terminal and done is not None else None,
        "account": run.account,
        "keyLast4": run.key[-4:],
        "prompt": prompt,
        "aspectRatio": run.input.get("aspect_ratio"),
        # The tier of the model's output, whatever the model calls it.
        "resolution": next(
            (run.input[name] for name in TIER_FIELDS if isinstance(run.input.get(name), str)),
            None,
        ),
        "kind": model.kind if model else "image",
        "durationS": model.duration_s(model.with_defaults(run.input)) if model else 0,
        "width": run.width,
        "height": run.height,
        "scenario": run.scenario,
        "output": file_path(run.file_name) if succeeded else None,
        "thumbnail": THUMBNAIL_PATH.format(run_id=run.id) if succeeded else None,
        "error": run.error if status == "failed" else None,
        "refunded": status == "failed",
    }


def journal_line(entry: JournalEntry) -> dict[str, Any]:
    view = entry.view()
    del view["headers"], view["body"]
    return view


def shrink(media: bytes, file_name: str) -> bytes:
    """A small PNG of an image, or of a video's first frame (its poster)."""
    video = file_name.endswith(".mp4")
    with first_frame(media) if video else Image.open(io.BytesIO(media)) as image:
        image.thumbnail(THUMBNAIL_BOX)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def first_frame(mp4: bytes) -> Image.Image:
    import av  # PyAV: loaded by the first video thumbnail, not at start

    with av.open(io.BytesIO(mp4), mode="r") as container:
        for frame in container.decode(video=0):
            image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
            return image
    raise ValueError("the video has no frame")


# --- request helpers ----------------------------------------------------------------------------


# --- files, read once per process ---------------------------------------------------------------


@cache
def dashboard_page() -> str:
    """The dashboard's HTML with our CSS and script inlined: one request opens the page."""
    page = static_text("dashboard.html")
    inlined = {
        '<link rel="stylesheet" href="dashboard.css">': ("style", "dashboard.css"),
        '<script src="dashboard.js"></script>': ("script", "dashboard.js"),
    }
    for marker, (tag, name) in inlined.items():
        inline = f"<{tag}>\n{static_text(name)}</{tag}>"
        if marker not in page:
            raise RuntimeError(f"static/dashboard.html lacks {marker}")
        page = page.replace(marker, inline)
    return page
