"""The mock's own control API under ``/_mock`` (not part of Runbase).

Bodies and queries are validated against the mock's own document, ``mock-openapi.yaml``.
Calls are scoped to one account by ``?account=NAME`` or by the caller's own
``Authorization: Bearer sk-...``:
a scoped call sees and changes only that account's runs, journal, rules and money, so
pipelines sharing one mock cannot disturb each other. Without a scope a call is global.
With ``--admin-token``, every ``/_mock`` call must send ``X-Mock-Admin-Token``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mock_runbase.clock import SettableClock, format_ms, parse_timestamp
from mock_runbase.errors import RunbaseError, error_body
from mock_runbase.journal_records import JournalEntry, JournalFilter
from mock_runbase.model_views import catalog_view
from mock_runbase.rule_checks import RuleError, checked_rule
from mock_runbase.runs import file_path, run_view, status_at
from mock_runbase.scenarios import describe
from mock_runbase.state_transfer import export_state, import_state

if TYPE_CHECKING:
    from mock_runbase.control_spec import ControlSpec
    from mock_runbase.service import RunbaseService

__all__ = ["AdminTokenMiddleware", "control_routes", "service_of"]

PREFIX = "/_mock"
ADMIN_HEADER = "x-mock-admin-token"
UI_PAGE = f"{PREFIX}/ui"
BODY_SCHEMAS = {
    "advance": "#/components/schemas/MockClockAdvance",
    "set": "#/components/schemas/MockClockSet",
    "rule": "#/components/schemas/MockRuleInput",
    "account": "#/components/schemas/MockAccountUpdate",
    "state": "#/components/schemas/MockRunStateChange",
}

Handler = Callable[[Request], Awaitable[Response]]
Refusal = Callable[[Request], None]  # raises the refusal, if the request gets one


def json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


class AdminTokenMiddleware:
    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(ADMIN_HEADER.encode(), b"")
        if not sent and scope["path"] == UI_PAGE and scope["method"] in ("GET", "HEAD"):
            # A browser opening the dashboard cannot send a header: the page URL carries it.
            sent = parse_qs(scope["query_string"]).get(b"token", [b""])[0]
        if hmac.compare_digest(sent, self.token):
            await self.app(scope, receive, send)
            return
        body = error_body("admin_token_required", f"Send the mock's admin token in {ADMIN_HEADER}")
        await json(body, 401)(scope, receive, send)


def control_routes(control: ControlSpec) -> list[BaseRoute]:
    validators = {name: control.compile(pointer) for name, pointer in BODY_SCHEMAS.items()}

    def query_of(request: Request) -> dict[str, Any]:
        """The query string, typed and validated against the operation's parameters."""
        template = request.scope["route"].path.replace(":str}", "}")
        method = "GET" if request.method == "HEAD" else request.method
        return control.query(template, method).parse(request.query_params.multi_items())

    def route(path: str, refuse: Refusal | None = None, **handlers: Handler) -> Route:
        """``one_route``, each handler after its query is checked: an undeclared or invalid
        parameter is a 400 before anything is done (``POST /_mock/reset?acount=a``, misspelt,
        must not reset every account). ``refuse``: a documented refusal checked first."""
        return one_route(path, **{method: checked(h, refuse) for method, h in handlers.items()})

    def checked(handler: Handler, refuse: Refusal | None) -> Handler:
        async def handle(request: Request) -> Response:
            if refuse is not None:
                refuse(request)
            query_of(request)
            return await handler(request)

        return handle

    async def body_of(request: Request, schema: str) -> dict[str, Any]:
        body = await json_of(request)
        errors = list(validators[schema].iter_errors(body))
        if errors:
            where = "/".join(str(p) for p in errors[0].instance_path) or "body"
            raise RunbaseError(400, "invalid_request", f"{where}: {errors[0].message}")
        parsed: dict[str, Any] = body
        return parsed

    async def account(request: Request) -> Response:
        service = service_of(request)
        directory = await service.directory()
        key = directory.authenticate(request.headers.get("authorization"), await service.now())
        return json(await service.key_account_view(key))

    async def list_accounts(request: Request) -> Response:
        scope = await account_scope(request)
        service = service_of(request)
        if scope is None:
            return json({"accounts": await service.account_views()})
        if keyed(request) or scope in await service.account_names():
            return json({"accounts": [await service.named_account_view(scope)]})
        return json({"accounts": []})

    async def get_account(request: Request) -> Response:
        name = await own_account(request)
        service = service_of(request)
        if keyed(request):  # scoped by the caller's key: its own account, known by the key
            return json(await service.named_account_view(name))
        return json(await service.known_account_view(name))

    async def put_account(request: Request) -> Response:
        name = await own_account(request)
        body = await body_of(request, "account")
        return json(await service_of(request).put_account(name, body))

    async def clock(request: Request) -> Response:
        return json(await clock_view(service_of(request)))

    async def advance_clock(request: Request) -> Response:
        body = await body_of(request, "advance")
        service = service_of(request)
        await virtual_clock(service).move_by(float(body["seconds"]))
        return json(await clock_view(service))

    async def set_clock(request: Request) -> Response:
        body = await body_of(request, "set")
        service = service_of(request)
        clock = virtual_clock(service)
        try:
            await clock.move_to(parse_timestamp(body["now"]))
        except ValueError as error:
            raise RunbaseError(409, "clock_backwards", f"now: {error}") from None
        return json(await clock_view(service))

    async def reset(request: Request) -> Response:
        scope = await account_scope(request)
        await service_of(request).reset(scope)
        return json({"reset": True, "account": scope})

    async def scenarios(request: Request) -> Response:
        return json({"scenarios": describe()})

    async def models(request: Request) -> Response:
        spec = service_of(request).spec
        return json({"models": catalog_view(spec.document, spec.catalog)})

    async def list_rules(request: Request) -> Response:
        rules = await service_of(request).store.rules(await account_scope(request))
        return json({"rules": [rule.view() for rule in rules]})

    async def add_rule(request: Request) -> Response:
        service = service_of(request)
        try:
            body = checked_rule(
                await json_of(request), service.spec.catalog, validators["rule"], service.own_media
            )
        except RuleError as error:
            raise RunbaseError(400, "invalid_request", str(error)) from None
        scope = await account_scope(request)
        if scope is not None:
            match = body.setdefault("match", {})
            if match.setdefault("account", scope) != scope:
                raise RunbaseError(
                    403, "forbidden_account", "A scoped rule matches its account only"
                )
        rule = await service.store.add_rule(body, service.settings.seed)
        return json(rule.view(), 201)

    async def delete_rules(request: Request) -> Response:
        rule_id = request.path_params.get("rule_id")
        scope = await account_scope(request)
        deleted = await service_of(request).store.delete_rules(scope, rule_id)
        if rule_id is not None and not deleted:
            raise RunbaseError(404, "rule_not_found", f"No rule {rule_id!r} in this scope")
        return json({"deleted": deleted})

    async def journal_of(request: Request) -> list[JournalEntry]:
        selection = JournalFilter.from_query(query_of(request), await account_scope(request))
        return await service_of(request).store.journal(selection)

    async def requests(request: Request) -> Response:
        return json({"requests": [entry.view() for entry in await journal_of(request)]})

    async def count_requests(request: Request) -> Response:
        return json({"count": len(await journal_of(request))})

    async def clear_requests(request: Request) -> Response:
        await service_of(request).store.clear_journal(await account_scope(request))
        return json({"cleared": True})

    async def runs(request: Request) -> Response:
        service = service_of(request)
        query = query_of(request)
        wanted = query.get("status")
        now = await service.now()
        found = await service.store.list_runs(
            await account_scope(request),
            query.get("limit", 100),
            None if wanted is None else lambda run: status_at(run, now) == wanted,
        )
        base = output_base(request)
        return json({"runs": [mock_run_view(run, now, base) for run in found]})

    async def force_state(request: Request) -> Response:
        service = service_of(request)
        body = await body_of(request, "state")
        run = await service.force_state(
            request.path_params["run_id"],
            body["status"],
            body.get("error"),
            await account_scope(request),
        )
        base = output_base(request)
        return json(mock_run_view(run, await service.now(), base))

    async def get_state(request: Request) -> Response:
        return json(await export_state(service_of(request)))

    async def put_state(request: Request) -> Response:
        return json(await import_state(service_of(request), await json_of(request)))

    async def document_yaml(request: Request) -> Response:
        return Response(control.yaml_text, media_type="application/yaml")

    async def document_json(request: Request) -> Response:
        return Response(control.json_bytes, media_type="application/json")

    return [
        route(f"{PREFIX}/openapi.yaml", GET=document_yaml),
        route(f"{PREFIX}/openapi.json", GET=document_json),
        route(f"{PREFIX}/account", GET=account),
        route(f"{PREFIX}/accounts", GET=list_accounts),
        route(f"{PREFIX}/accounts/{{account:str}}", GET=get_account, PUT=put_account),
        route(f"{PREFIX}/clock", GET=clock),
        route(f"{PREFIX}/clock/advance", POST=advance_clock),
        route(f"{PREFIX}/clock/set", POST=set_clock),
        route(f"{PREFIX}/reset", POST=reset),
        route(f"{PREFIX}/scenarios", GET=scenarios),
        route(f"{PREFIX}/models", GET=models),
        route(f"{PREFIX}/rules", GET=list_rules, POST=add_rule, DELETE=delete_rules),
        route(f"{PREFIX}/rules/{{rule_id:str}}", DELETE=delete_rules),
        route(f"{PREFIX}/requests", GET=requests, DELETE=clear_requests),
        route(f"{PREFIX}/requests/count", GET=count_requests),
        route(f"{PREFIX}/runs", GET=runs),
        route(f"{PREFIX}/runs/{{run_id:str}}/state", POST=force_state),
        route(f"{PREFIX}/state", whole_mock, GET=get_state, PUT=put_state),
    ]


async def json_of(request: Request) -> Any:
    try:
        return orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise RunbaseError(400, "invalid_request", "Body is not valid JSON") from None


def one_route(path: str, **handlers: Handler) -> Route:
    """One route for several methods, so a 405's Allow header lists all of them."""

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method if request.method != "HEAD" else "GET"](request)

    return Route(path, dispatch, methods=list(handlers))


def service_of(request: Request) -> RunbaseService:
    """The app's service (a plain attribute: ``app.state`` costs a lookup chain per call)."""
    service: RunbaseService = request.app.service
    return service


async def account_scope(request: Request) -> str | None:
    """``?account=``, else the account of the caller's key, else None (global)."""
    named = request.query_params.get("account")
    if named == "":
        raise RunbaseError(400, "invalid_request", "account must not be empty")
    header = request.headers.get("authorization")
    if header is None:
        return named or None
    service = service_of(request)
    own = (await service.directory()).authenticate(header, await service.now()).account
    if named and named != own:
        raise RunbaseError(403, "forbidden_account", "A key's calls are scoped to its own account")
    return own


def whole_mock(request: Request) -> None:
    """The state is every account's (their runs, keys and money): no call scoped to one
    account reads or replaces it."""
    if keyed(request) or "account" in request.query_params:
        raise RunbaseError(
            403,
            "forbidden_account",
            "The state is the whole mock's (every account's runs, keys and money): call "
            "/_mock/state without a key and without ?account=",
        )


def keyed(request: Request) -> bool:
    """Whether the call is scoped by the caller's own key (``account_scope`` checked it)."""
    return "authorization" in request.headers


async def own_account(request: Request) -> str:
    name: str = request.path_params["account"]
    scope = await account_scope(request)
    if scope not in (None, name):
        raise RunbaseError(403, "forbidden_account", "A key's calls are scoped to its own account")
    return name


def virtual_clock(service: RunbaseService) -> SettableClock:
    if not isinstance(service.clock, SettableClock) or not service.clock.virtual:
        raise RunbaseError(
            409, "clock_not_virtual", "The clock is real; start the mock with --clock virtual"
        )
    return service.clock


async def clock_view(service: RunbaseService) -> dict[str, Any]:
    return {"now": format_ms(await service.now()), "virtual": service.clock.virtual}


def output_base(request: Request) -> str:
    """Where output URLs point, as on the runs API: ``--public-url``, else the host asked."""
    configured = service_of(request).settings.public_url
    return configured or f"{request.url.scheme}://{request.url.netloc}"


def mock_run_view(run: Any, now_ms: int, base: str) -> dict[str, Any]:
    """The documented view of a run plus what the mock knows about it."""
    view = run_view(run, now_ms, lambda name: base + file_path(name))
    view["mock"] = {
        "account": run.account,
        "keyLast4": run.key[-4:],
        "input": run.input,
        "scenario": run.scenario,
        "width": run.width,
        "height": run.height,
    }
    if run.media is not None:
        view["mock"]["media"] = run.media
    if run.polls is not None:
        view["mock"] |= {
            "polls": run.polls,
            "pendingPolls": run.pending_polls,
            "processingPolls": run.processing_polls,
        }
    return view
