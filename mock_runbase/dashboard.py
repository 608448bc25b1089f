"""Pages for a person: the dashboard (``/_mock/ui``) and the API docs (``/docs``).

The dashboard is one HTML page (``static/dashboard.{html,css,js}``, the CSS and script inlined
so the page is a single request) that polls ``GET /_mock/ui/state``: runs with their status
timeline, accounts, the newest journal entries and the rules, in one call. Its buttons and
form call the control API. Being under ``/_mock``, all of it is behind the admin token when
one is set, and none of it is journaled (thumbnails included), so watching the mock leaves
the journal to the app under test.

``/docs`` is Swagger UI from the ``swagger-ui-bundle-v2`` package's assets (never a CDN, so
it works offline) over this mock's spec, with the mock's own URL as the first server.
"""

from __future__ import annotations

import copy
import io
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from PIL import Image
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from mock_runbase.catalog import resolve_ref
from mock_runbase.clock import format_ms
from mock_runbase.control import service_of
from mock_runbase.errors import RunbaseError
from mock_runbase.images import ImageCache
from mock_runbase.journal_records import JournalEntry, JournalFilter
from mock_runbase.runs import Run, completed_ms, status_at

if TYPE_CHECKING:
    from mock_runbase.spec import Spec

__all__ = ["dashboard_routes"]

UI = "/_mock/ui"
DOCS = "/docs"
STATE_PATH = f"{UI}/state"
THUMBNAIL_PATH = f"{UI}/runs/{{run_id}}/thumbnail"
THUMBNAIL_BOX = (320, 180)
PROMPT_EXCERPT = 120
LOCAL_SERVER = "http://localhost:8080"  # the spec's URL of the mock, replaced by the real one
DOCS_ASSETS = {  # name -> (package, file inside it, media type)
    "docs.js": ("mock_runbase", "static/docs.js", "text/javascript"),
    "swagger-ui.css": ("swagger_ui_bundle", "swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": ("swagger_ui_bundle", "swagger-ui-bundle.js", "text/javascript"),
}
NO_CACHE = {"Cache-Control": "no-cache"}


def dashboard_routes(spec: Spec) -> list[BaseRoute]:
    declared, validator = query_checks(spec, STATE_PATH)
    thumbnails = ImageCache(max_bytes=16 * 1024 * 1024)

    async def page(request: Request) -> Response:
        return HTMLResponse(dashboard_page(), headers=NO_CACHE)

    async def state(request: Request) -> Response:
        query = typed_query(request, declared, validator)
        service = service_of(request)
        now = await service.now()
        limit: int = query.get("limit", 100)
        runs = await service.store.list_runs(None, limit)
        entries = await service.store.journal(JournalFilter(key=query.get("key")))
        matched = [e for e in reversed(entries) if status_matches(e, query.get("status"))]
        body = {
            "clock": {"now": format_ms(now), "virtual": service.clock.virtual},
            "runs": [dashboard_run(run, now) for run in runs],
            "accounts": await service.account_views(),
            "requests": [journal_line(entry) for entry in matched[:limit]],
            "requestsMatched": len(matched),
            "rules": [rule.view() for rule in await service.store.rules(None)],
        }
        return Response(orjson.dumps(body), media_type="application/json", headers=NO_CACHE)

    async def thumbnail(request: Request) -> Response:
        service = service_of(request)
        run_id = request.path_params["run_id"]
        run = await service.store.get_run(run_id)
        if run is None or status_at(run, await service.now()) != "succeeded":
            raise RunbaseError(404, "run_not_found", f"No succeeded run with id {run_id!r}")
        _, png = await service.image(run.file_name)
        small = await anyio.to_thread.run_sync(
            lambda: thumbnails.get_or_render(run.file_name, lambda: shrink(png))
        )
        headers = {"Cache-Control": "private, max-age=31536000, immutable"}
        return Response(small, media_type="image/png", headers=headers)

    async def docs(request: Request) -> Response:
        return HTMLResponse(static_text("docs.html"))

    async def docs_spec(request: Request) -> Response:
        base = f"{request.url.scheme}://{request.url.netloc}"
        document = docs_document(service_of(request).spec.document, base)
        return Response(orjson.dumps(document), media_type="application/json")

    async def docs_asset(request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in DOCS_ASSETS:
            raise RunbaseError(404, "not_found", f"No docs asset {name!r}")
        package, file, media_type = DOCS_ASSETS[name]
        return Response(asset_bytes(package, file), media_type=media_type, headers=NO_CACHE)

    return [
        Route(UI, page, methods=["GET"]),
        Route(STATE_PATH, state, methods=["GET"]),
        Route(f"{UI}/runs/{{run_id:str}}/thumbnail", thumbnail, methods=["GET"]),
        Route(DOCS, docs, methods=["GET"]),
        Route(f"{DOCS}/openapi.json", docs_spec, methods=["GET"]),
        Route(f"{DOCS}/assets/{{asset:str}}", docs_asset, methods=["GET"]),
    ]


# --- views --------------------------------------------------------------------------------------


def dashboard_run(run: Run, now_ms: int) -> dict[str, Any]:
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
        "resolution": run.input.get("resolution"),
        "width": run.width,
        "height": run.height,
        "scenario": run.scenario,
        "output": f"/files/generated/{run.file_name}.png" if succeeded else None,
        "thumbnail": THUMBNAIL_PATH.format(run_id=run.id) if succeeded else None,
        "error": run.error if status == "failed" else None,
        "refunded": status == "failed",
    }


def journal_line(entry: JournalEntry) -> dict[str, Any]:
    view = entry.view()
    del view["headers"], view["body"]
    return view


def status_matches(entry: JournalEntry, wanted: str | None) -> bool:
    """``429``, ``4xx``, ``errors`` (4xx, 5xx, dropped) or ``dropped``; None keeps all."""
    if wanted is None:
        return True
    if wanted == "dropped":
        return entry.dropped
    if wanted == "errors":
        return entry.dropped or (entry.status or 0) >= 400
    if wanted.endswith("xx"):
        return entry.status is not None and entry.status // 100 == int(wanted[0])
    return entry.status == int(wanted)


def docs_document(document: dict[str, Any], base: str) -> dict[str, Any]:
    """The spec with the mock's own URL (``base``) first wherever it names the mock."""

    def here_first(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        local = [s for s in servers if s["url"].startswith(LOCAL_SERVER)]
        moved = [{**s, "url": base + s["url"][len(LOCAL_SERVER) :]} for s in local]
        return moved + [s for s in servers if s not in local]

    copied = copy.deepcopy(document)
    copied["servers"] = here_first(copied.get("servers", []))
    for item in copied["paths"].values():
        if "servers" in item:
            item["servers"] = here_first(item["servers"])
    return copied


def shrink(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        image.thumbnail(THUMBNAIL_BOX)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- request helpers ----------------------------------------------------------------------------


def query_checks(spec: Spec, path: str) -> tuple[dict[str, Any], Any]:
    """(declared query parameter schemas, a validator of the query object) of ``GET path``."""
    operation = spec.document["paths"][path]["get"]
    params = [resolve_ref(spec.document, p) for p in operation.get("parameters", [])]
    declared = {
        p["name"]: resolve_ref(spec.document, p["schema"]) for p in params if p["in"] == "query"
    }
    return declared, spec.compile_schema({"type": "object", "properties": declared})


def typed_query(request: Request, declared: dict[str, Any], validator: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name in values:
            raise RunbaseError(400, "invalid_request", f"{name}: given more than once")
        integer = declared.get(name, {}).get("type") == "integer"
        values[name] = int(value) if integer and value.lstrip("-").isdigit() else value
    errors = list(validator.iter_errors(values))
    if errors:
        where = "/".join(str(p) for p in errors[0].instance_path) or "query"
        raise RunbaseError(400, "invalid_request", f"{where}: {errors[0].message}")
    return values


# --- files, read once per process ---------------------------------------------------------------


@cache
def static_text(name: str) -> str:
    return (resources.files("mock_runbase") / "static" / name).read_text(encoding="utf-8")


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


@cache
def swagger_ui_dir() -> Path:
    """The newest Swagger UI in the installed ``swagger_ui_bundle`` package (5.x reads 3.1)."""
    vendor = Path(str(resources.files("swagger_ui_bundle") / "vendor"))
    found = sorted(vendor.glob("swagger-ui-*"), key=lambda p: version_key(p.name))
    if not found:
        raise RuntimeError(f"no Swagger UI under {vendor}; reinstall swagger-ui-bundle-v2")
    return found[-1]


def version_key(name: str) -> tuple[int, ...]:
    parts = name.removeprefix("swagger-ui-").split(".")
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


@cache
def asset_bytes(package: str, file: str) -> bytes:
    if package == "swagger_ui_bundle":
        return (swagger_ui_dir() / file).read_bytes()
    return (resources.files(package) / file).read_bytes()
