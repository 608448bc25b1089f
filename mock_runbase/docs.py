"""``/docs``: Swagger UI over both documents, Runbase's API and the mock's own.

Swagger UI comes from the ``swagger-ui-bundle-v2`` package's assets (never a CDN, so the page
works offline). Its selector offers ``openapi.yaml`` (Runbase's API, with this mock's ``/v1``
and ``/api/v1`` as its first servers) and ``mock-openapi.yaml`` (the mock's own API, bundled,
with this mock as its server), so "Try it out" calls this mock.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from mock_runbase.control import service_of
from mock_runbase.errors import RunbaseError

if TYPE_CHECKING:
    from mock_runbase.control_spec import ControlSpec

__all__ = ["docs_routes"]

DOCS = "/docs"
LOCAL_SERVER = "http://localhost:8080"  # how the documents name a mock; replaced by this one
API_PREFIXES = ("/v1", "/api/v1")
DOCS_ASSETS = {  # name -> (package, file inside it, media type)
    "docs.js": ("mock_runbase", "static/docs.js", "text/javascript"),
    "swagger-ui.css": ("swagger_ui_bundle", "swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": ("swagger_ui_bundle", "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui-standalone-preset.js": (
        "swagger_ui_bundle",
        "swagger-ui-standalone-preset.js",
        "text/javascript",
    ),
}
NO_CACHE = {"Cache-Control": "no-cache"}


def docs_routes(control: ControlSpec) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        return HTMLResponse(static_text("docs.html"))

    async def document(request: Request) -> Response:
        base = f"{request.url.scheme}://{request.url.netloc}"
        name = request.path_params["document"]
        if name == "openapi.json":
            here = [{"url": base + prefix, "description": "This mock"} for prefix in API_PREFIXES]
            shown = with_servers(service_of(request).spec.document, here)
        elif name == "mock-openapi.json":
            shown = with_servers(control.document, [{"url": base, "description": "This mock"}])
        else:
            raise RunbaseError(404, "not_found", f"No document {name!r}")
        return Response(orjson.dumps(shown), media_type="application/json", headers=NO_CACHE)

    async def asset(request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in DOCS_ASSETS:
            raise RunbaseError(404, "not_found", f"No docs asset {name!r}")
        package, file, media_type = DOCS_ASSETS[name]
        return Response(asset_bytes(package, file), media_type=media_type, headers=NO_CACHE)

    return [
        Route(DOCS, page, methods=["GET"]),
        Route(f"{DOCS}/assets/{{asset:str}}", asset, methods=["GET"]),
        Route(f"{DOCS}/{{document:str}}", document, methods=["GET"]),
    ]


def with_servers(document: dict[str, Any], here: list[dict[str, str]]) -> dict[str, Any]:
    """The document (shallowly copied) with ``here`` as its first servers, and without the
    placeholder local server the file names."""
    others = [s for s in document.get("servers", []) if not s["url"].startswith(LOCAL_SERVER)]
    return {**document, "servers": here + others}


@cache
def static_text(name: str) -> str:
    return (resources.files("mock_runbase") / "static" / name).read_text(encoding="utf-8")


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
