"""The operations of the mock, HTTP-free: the documented ones and the control ones.

Route handlers translate HTTP to these calls and back; everything here raises
``RunbaseError`` for a rejected request, and a rejected request changes no state (the rate
limiter's window and the rules' match counters aside, as with any real limiter).
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple

import anyio
from pydantic import ValidationError

from mock_runbase.accounts import (
    AccountOverride,
    ConfigError,
    Directory,
    KeySettings,
    check_ip,
)
from mock_runbase.catalog import Model
from mock_runbase.clock import Clock, SettableClock, SystemClock, VirtualClock, format_ms
from mock_runbase.config_file import (
    CONTROL_KEY_FIELDS,
    EMPTY,
    KeyEntry,
    key_path,
    key_settings,
    load_config,
    rule_checker,
)
from mock_runbase.control_spec import ControlSpec
from mock_runbase.errors import RunbaseError
from mock_runbase.media.cache import MediaCache
from mock_runbase.media.images import render_png
from mock_runbase.media.render_pool import RENDER_POOL
from mock_runbase.own_media import MediaDirectory, MediaError, MediaFile
from mock_runbase.ratelimit import retry_after_header
from mock_runbase.rules import Rule, RuleContext
from mock_runbase.runs import (
    TIMING_PROFILES,
    Run,
    TimingProfile,
    completed_ms,
    forced,
    input_seed,
    new_token_pair,
    plan_timing,
    planned_polls,
    seeded_token,
    status_at,
    timing_for,
    until_polled,
)
from mock_runbase.scenario_choice import NOTHING_ASKED, Choice, requested_scenario, with_warning
from mock_runbase.scenarios import DEFAULT, SCENARIOS, Effect
from mock_runbase.settings import MockSettings
from mock_runbase.spec import Spec
from mock_runbase.state_transfer import STATE_SCHEMA, install_state, state_file
from mock_runbase.store import MemoryStore, RunNameTaken, Snapshot, Store
from mock_runbase.validation import ValidatedRequest, parse_create_request
from mock_runbase.wire_faults import BrokenConnection, answer_fault

__all__ = ["Caller", "Created", "Media", "Polled", "RunbaseService", "ServedFile"]

PROMPT_EXCERPT = 160
RUN_ID_LENGTH = 22
FILE_NAME_LENGTH = 20
MAX_NAMES_SHOWN = 20


class Caller(NamedTuple):  # built on every request: a NamedTuple is the cheapest
    """An authorized request: its key, and what it read at its start (one store read)."""

    key: KeySettings
    snapshot: Snapshot
    polled: tuple[str, Run | None] | None = None  # a poll's run id and run, read with snapshot


class Created(NamedTuple):  # NamedTuples: built on every request, the cheapest to build
    run: Run
    warning: str | None
    answer_fault: str | None = None  # a connection fault that breaks the answer on its way


class Polled(NamedTuple):
    run: Run
    warning: str | None
    answer_fault: str | None = None
    now_ms: int | None = None  # the instant a run timed by polls was counted at: show it then


@dataclass(frozen=True)
class ServedFile:
    media: Media
    warning: str | None
    answer_fault: str | None = None


NO_EFFECT = Effect()


class RunbaseService:
    def __init__(
        self,
        *,
        spec: Spec,
        control: ControlSpec,
        settings: MockSettings,
        clock: Clock,
        store: Store,
        own_media: MediaDirectory | None = None,
    ) -> None:
        self.spec = spec
        self.control = control
        self.clock = clock
        # an in-process clock is read without an await (a coroutine a read, on the hot path)
        self.local_now = clock.now_ms if isinstance(clock, SystemClock | VirtualClock) else None
        self.store = store
        # the in-memory store is called without awaits on the hot path (a coroutine a call)
        self.memory = store if type(store) is MemoryStore else None
        self.settings = settings
        self.profiles: dict[tuple[str, str], TimingProfile] = {}  # profile_of's
        self.own_media = own_media or MediaDirectory(settings.media_dir, listed=True)
        self.check_rule = rule_checker(control, spec.catalog, self.own_media)
        self.config = load_config(settings.config, self.check_rule) if settings.config else EMPTY
        self.config_rules = self.config.rules
        self.base_directory = self.configured_directory()
        self.last_directory = self.base_directory  # as last read: for the journal, sync
        self.media_cache = MediaCache(max_bytes=settings.image_cache_mb * 1024 * 1024)
        self.started = False
        self.sleep: Callable[[float], Awaitable[None]] = anyio.sleep  # latency; tests replace it
        self.on_reset: list[Callable[[], None]] = []  # what a global reset also rewinds
        self.reserved_names: frozenset[str] = frozenset()  # another's: a replayed cassette's
        self.state_schema = control.compile(STATE_SCHEMA)
        self.initial_state = state_file(self, settings.state) if settings.state else None

    def configured_directory(self) -> Directory:
        directory = self.config.directory(
            strict_keys=self.settings.strict_keys,
            default_balance_usd=self.settings.balance_usd,
        )
        if directory.strict_keys and not directory.keys:
            raise ConfigError(
                "strict keys (--strict-keys or strict_keys in --config) with no key declared: "
                "every request would be refused 401. Declare keys under accounts.<name>.keys "
                "in --config, or drop strict keys."
            )
        return directory

    async def start(self) -> None:
        """Work that needs the store: the state of ``--state``, else the config file's rules,
        once per store (a shared store keeps them, so a second process or a restart does not
        add them twice)."""
        if self.started:
            return
        RENDER_POOL.warm()  # with the first request, not before: it would slow the start
        if self.initial_state is not None:
            loaded, self.initial_state = self.initial_state, None
            await install_state(self, loaded)
        else:
            await self.store.add_rules_once(self.config_rules, self.settings.seed)
        self.started = True

    async def snapshot(self) -> Snapshot:
        snapshot = await self.store.snapshot(self.base_directory)
        self.last_directory = snapshot.directory
        return snapshot

    async def directory(self) -> Directory:
        """The accounts and keys in effect: the config's, with the control API's changes."""
        return (await self.snapshot()).directory

    async def now(self) -> int:
        local = self.local_now
        return local() if local is not None else await self.clock.now()

    # --- the documented operations ------------------------------------------------------------

    async def authorize(
        self, authorization: str | None, client_ip: str | None, run_id: str | None = None
    ) -> Caller:
        """Auth, then the key's IP allow-list, then the rate limit (one request counted).
        A poll gives its ``run_id``: the run is read with the snapshot (one store read)."""
        local = self.local_now
        now = local() if local is not None else await self.clock.now()
        polled = None
        memory = self.memory
        if run_id is None:
            if memory is not None:
                snapshot = memory.snapshot_now(self.base_directory)
            else:
                snapshot = await self.store.snapshot(self.base_directory)
        else:
            if memory is not None:
                snapshot, run = memory.snapshot_with_run_now(self.base_directory, run_id)
            else:
                snapshot, run = await self.store.snapshot_with_run(self.base_directory, run_id)
            polled = (run_id, run)
        self.last_directory = snapshot.directory
        key = snapshot.directory.authenticate(authorization, now)
        check_ip(key, client_ip)
        caller = Caller(key, snapshot, polled)
        if self.settings.rate_limit is None:
            return caller
        wait = await self.store.hit_rate_limit(key.key, now)
        if wait is not None:
            raise RunbaseError(
                429,
                "RATE_LIMITED",
                "Rate limit exceeded",
                headers={"Retry-After": retry_after_header(wait)},
            )
        return caller

    async def create_run(self, caller: Caller, body: bytes, scenario_header: str | None) -> Created:
        key, rules = caller.key, caller.snapshot.rules
        request = parse_create_request(self.spec, body)
        choice = requested_scenario(scenario_header, request.input.get("prompt"), "create")
        effect = NO_EFFECT
        try:
            model = request.model
            if rules:
                context = RuleContext(
                    "create", key.key, key.account, model.id, request.input, model.kind
                )
                choice = await self.ruled(choice, rules, context)
            if choice is not NOTHING_ASKED:  # nothing asked: the default's effect, NO_EFFECT
                effect = SCENARIOS[choice.name].build(choice.params)
            run = await self.new_run(caller, request, choice, effect)
        except RunbaseError as error:
            raise with_warning(error, choice.warning, answer_fault(effect.wire_fault)) from None
        return Created(run, choice.warning, answer_fault(effect.wire_fault))

    async def new_run(
        self, caller: Caller, request: ValidatedRequest, choice: Choice, effect: Effect
    ) -> Run:
        key = caller.key
        if effect.touches_exchange:  # not awaited for nothing on every create
            await self.apply_to_exchange(effect)
        local = self.local_now
        now = local() if local is not None else await self.clock.now()
        model = request.model
        seed = input_seed(self.settings.seed, model.id, request.input)
        profile = self.profiles.get((self.settings.timing, model.id)) or self.profile_of(model)
        polls = planned_polls(profile, effect.poll_plan, effect.slowdown, effect.never_finishes)
        if polls is None:
            pending_ms, processing = plan_timing(profile, seed, effect.slowdown)
            processing_ms = None if effect.never_finishes else processing
        else:
            pending_ms, processing_ms = until_polled(polls)
        cost_usd, width, height = model.price_and_size(request.input)
        extension = model.file_extension
        if choice.media is not None:
            own = await self.own_file(choice.media, 500, "internal_error")
            width, height, extension = own.width, own.height, own.extension
        if self.clock.virtual:
            run_id, file_name = await self.run_names(extension)
        else:
            run_id, file_name = self.random_names(extension)
        run = Run(  # positional, in the fields' order: keyword arguments cost more on a create
            run_id,
            key.account,
            key.key,
            model.id,
            request.input,
            cost_usd,
            now,
            pending_ms,
            processing_ms,
            "failed" if effect.outcome == "failed" else "succeeded",
            effect.error,
            width,
            height,
            file_name,
            seed,
            choice.name,
            choice.media,
            None if polls is None else 0,
            0 if polls is None else polls.pending,
            0 if polls is None else polls.processing,
        )
        account = caller.snapshot.directory.account(key.account)
        memory = self.memory
        while True:
            try:
                if memory is not None:
                    memory.create_run_now(run, key, account, now)
                else:
                    await self.store.create_run(run, key, account, now)
                return run
            except RunNameTaken:  # a seeded name a loaded state already holds: the next one
                run_id, file_name = await self.run_names(extension)
                run = replace(run, id=run_id, file_name=file_name)

    def profile_of(self, model: Model) -> TimingProfile:
        """The timing a new run of ``model`` follows, kept by timing name and model id (a
        create then hashes two strings, not two dataclasses)."""
        timing = self.settings.timing
        profile = self.profiles[(timing, model.id)] = timing_for(
            TIMING_PROFILES[timing], model.timing
        )
        return profile

    async def run_names(self, extension: str) -> tuple[str, str]:
        """A new run's id and file name. On a real clock, random and unguessable; on a
        virtual one, the seeded names of the store's next run number, so fresh mocks with the
        same --seed given the same requests answer the same ids and URLs (a number whose
        names are reserved is skipped)."""
        if not self.clock.virtual:
            return self.random_names(extension)
        while True:
            number = await self.store.next_run_number()
            seed = self.settings.seed
            run_token = seeded_token(seed, "run", number, RUN_ID_LENGTH)
            file_token = seeded_token(seed, "file", number, FILE_NAME_LENGTH)
            run_id, file_name = f"run_{run_token}", f"{file_token}.{extension}"
            if run_id not in self.reserved_names and file_name not in self.reserved_names:
                return run_id, file_name

    def random_names(self, extension: str) -> tuple[str, str]:
        """``run_names`` on a real clock: no store to ask, so no await."""
        while True:
            run_token, file_token = new_token_pair(RUN_ID_LENGTH, FILE_NAME_LENGTH)
            run_id, file_name = f"run_{run_token}", f"{file_token}.{extension}"
            if run_id not in self.reserved_names and file_name not in self.reserved_names:
                return run_id, file_name

    async def get_run(self, caller: Caller, run_id: str, scenario_header: str | None) -> Polled:
        """The run, after the poll's faults (a rule's, else the header's) are applied. A run
        timed by polls counts the poll (it is answered): it may move it on."""
        key, rules = caller.key, caller.snapshot.rules
        choice = requested_scenario(scenario_header, None, "get")
        effect = NO_EFFECT
        now: int | None = None
        try:
            if rules:  # a poll builds no rule context while no rule is set
                choice = await self.ruled(choice, rules, RuleContext("get", key.key, key.account))
            polled = caller.polled
            if choice.name != DEFAULT:
                effect = SCENARIOS[choice.name].build(choice.params)
                await self.apply_to_exchange(effect)
                polled = None  # a fault may have delayed the poll: the run as it is now
            if polled is not None and polled[0] == run_id:
                run = polled[1]
            else:
                run = await self.store.get_run(run_id)
            if run is not None and run.polls is not None and run.account == key.account:
                now = await self.clock.now()
                run = await self.store.count_poll(run_id, now)  # None: it expired meanwhile
            if run is None or run.account != key.account:
                raise RunbaseError(
                    404, "run_not_found", f"No run with id {run_id!r} for this account"
                )
        except RunbaseError as error:
            raise with_warning(error, choice.warning, answer_fault(effect.wire_fault)) from None
        return Polled(run, choice.warning, answer_fault(effect.wire_fault), now)

    async def generated_file(self, file_name: str, scenario_header: str | None) -> ServedFile:
        """A run's file, after the faults of its GET (a rule's, else the header's). The GET
        carries no key: a rule matches the run the file belongs to (its key, account, model
        and input); a file no run made matches no rule."""
        run = await self.store.get_run_by_file(file_name)
        choice = requested_scenario(scenario_header, None, "file")
        effect = NO_EFFECT
        try:
            if run is not None:
                context = RuleContext("file", run.key, run.account, run.model, run.input)
                choice = await self.ruled(choice, (await self.snapshot()).rules, context)
            effect = SCENARIOS[choice.name].build(choice.params)
            await self.apply_to_exchange(effect)
            media = await self.media_of(run, lag_ms=effect.file_lag_ms)
        except RunbaseError as error:
            raise with_warning(error, choice.warning, answer_fault(effect.wire_fault)) from None
        return ServedFile(media, choice.warning, answer_fault(effect.wire_fault))

    async def ruled(self, choice: Choice, rules: list[Rule], context: RuleContext) -> Choice:
        """The request's own choice, unless a rule fires (and counts its match)."""
        rule = await self.store.first_firing(rules, context) if rules else None
        if rule is None:
            return choice
        return choice.ruled_by(rule.id, rule.scenario, rule.params, rule.media)

    async def apply_to_exchange(self, effect: Effect) -> None:
        """The parts of an effect that touch the HTTP exchange before it is handled: a delay,
        a connection fault that strikes instead of an answer, an error. (A fault that breaks
        the answer on its way is the caller's to pass on: ``answer_fault``.)"""
        if effect.delay_ms:
            await self.sleep(effect.delay_ms / 1000)
        if effect.wire_fault is not None and answer_fault(effect.wire_fault) is None:
            raise BrokenConnection(effect.wire_fault)
        if effect.http_error is not None:
            raise effect.http_error

    async def media(self, file_name: str) -> Media:
        """The file of a succeeded run (PNG or MP4), rendered once in a worker thread, so a
        render never blocks the event loop, then served from the cache; or the file of
        ``--media-dir`` its rule named, read the same way."""
        return await self.media_of(await self.store.get_run_by_file(file_name))

    async def media_of(self, run: Run | None, lag_ms: int = 0) -> Media:
        """``media`` of a run looked up already; 404 until ``lag_ms`` after it succeeded."""
        now = await self.clock.now()
        if run is None or status_at(run, now) != "succeeded":
            raise RunbaseError(404, "file_not_found", "File not found")
        if lag_ms and now < (completed_ms(run) or 0) + lag_ms:
            raise RunbaseError(404, "file_not_found", "File not found")
        if run.media is not None:
            own = await self.own_file(run.media, 404, "file_not_found")
            render: Callable[[], bytes] = own.path.read_bytes
            cache_key = own.cache_key
            etag = hashlib.blake2b(cache_key.encode(), digest_size=12).hexdigest()
        else:
            model = self.spec.catalog.get(run.model)
            cache_key = etag = media_cache_key(run)
            render = partial(RENDER_POOL.render, render_run, run, model)
        cached = self.media_cache.get(cache_key)
        if cached is None:
            cached = await anyio.to_thread.run_sync(
                lambda: self.media_cache.get_or_render(cache_key, render)
            )
        return Media(run, cached, f'"{etag}"')

    async def own_file(self, name: str, status: int, code: str) -> MediaFile:
        """A file of ``--media-dir`` (probed in a worker thread: it may read a video), or the
        error ``status``/``code`` if it went missing or changed kind since its rule was added."""
        try:
            return await anyio.to_thread.run_sync(self.own_media.file, name)
        except MediaError as error:
            raise RunbaseError(status, code, f"effect.media of the rule: {error}") from None

    # --- accounts -------------------------------------------------------------------------------

    async def account_view(self, account: str, keys: list[KeySettings]) -> dict[str, Any]:
        settings = (await self.directory()).account(account)
        state = await self.store.ledgers(account, await self.clock.now())
        ledger = state.ledger
        key_views = []
        for key in keys:
            key_ledger = state.key(key.key)
            key_views.append(
                {
                    "last4": key.last4,
                    "spendLimitCents": key.spend_limit_cents,
                    "spentUsd": key_ledger.net_spent,
                    "ipAllowList": list(key.ip_allow_list),
                    "disabled": key.disabled,
                    "expiresAt": format_ms(key.expires_ms) if key.expires_ms is not None else None,
                    "usageQuota": key.usage_quota,
                    "usageUsed": key_ledger.runs,
                }
            )
        return {
            "account": account,
            "balanceUsd": settings.starting_balance_usd - ledger.net_spent,
            "spentUsd": ledger.net_spent,
            "startingBalanceUsd": settings.starting_balance_usd,
            "runs": ledger.runs,
            "keys": key_views,
        }

    async def key_account_view(self, key: KeySettings) -> dict[str, Any]:
        view = await self.account_view(key.account, [key])
        view["key"] = view.pop("keys")[0]
        return view

    async def named_account_view(self, account: str) -> dict[str, Any]:
        """The account with its declared keys (or, for an implicit account, its key)."""
        directory = await self.directory()
        used = list((await self.store.ledgers(account, await self.clock.now())).keys)
        return await self.account_view(account, directory.listed_keys(account, used))

    async def account_views(self) -> list[dict[str, Any]]:
        """Every declared account and every account that has been charged, by name."""
        return [await self.named_account_view(name) for name in await self.account_names()]

    async def account_names(self) -> list[str]:
        """The accounts the mock knows: declared (config file or PUT), or charged at least
        once (an undeclared key's implicit account, once it has created a run)."""
        names = set((await self.directory()).accounts) | set(await self.store.account_names())
        return sorted(names)

    async def known_account_view(self, account: str) -> dict[str, Any]:
        """The account, if the mock knows it; else 404 naming the known ones."""
        names = await self.account_names()
        if account not in names:
            raise RunbaseError(404, "account_not_found", unknown_account(account, names))
        return await self.named_account_view(account)

    async def put_account(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        """Set an account's balance (micro-USD, now) and/or replace its declared keys."""
        ledger = (await self.store.ledgers(account, await self.clock.now())).ledger
        starting = (await self.directory()).account(account).starting_balance_usd
        if "balanceUsd" in body:
            starting = int(body["balanceUsd"]) + ledger.net_spent
        keys = None
        if "keys" in body:
            keys = tuple(self.declared_keys(account, body["keys"]))
        try:
            override = AccountOverride(starting, keys)
            await self.store.put_account(self.base_directory, account, override)
        except ConfigError as error:
            raise RunbaseError(409, "key_in_use", str(error)) from None
        return await self.named_account_view(account)

    @staticmethod
    def declared_keys(account: str, entries: list[dict[str, Any]]) -> list[KeySettings]:
        """The keys of a ``PUT /_mock/accounts`` body, checked as the config file's are."""
        keys = []
        for index, entry in enumerate(entries):
            try:
                declared = KeyEntry.model_validate(
                    {CONTROL_KEY_FIELDS[k]: v for k, v in entry.items()}
                )
            except ValidationError as error:
                detail = error.errors(include_url=False)[0]
                where = key_path(("keys", index, *detail["loc"]))
                raise RunbaseError(400, "invalid_request", f"{where}: {detail['msg']}") from None
            keys.append(key_settings(account, declared))
        return keys

    # --- runs, clock, reset ---------------------------------------------------------------------

    async def force_state(
        self, run_id: str, status: str, error: dict[str, str] | None, account: str | None
    ) -> Run:
        now = await self.clock.now()

        def move(run: Run) -> Run | None:
            return forced(run, status, now, error) if account in (None, run.account) else None

        try:
            moved = await self.store.force_run(run_id, move, now)
        except ValueError as problem:
            raise RunbaseError(409, "invalid_transition", str(problem)) from None
        if moved is None:
            raise RunbaseError(404, "run_not_found", f"No run with id {run_id!r}")
        return moved

    async def reset(self, account: str | None = None) -> None:
        """One account's runs, journal, rules and charges; or everything, config re-read
        (and a replayed cassette back to its start)."""
        await self.store.reset(account)
        if account is not None:
            return
        self.base_directory = self.configured_directory()
        for rewind in self.on_reset:
            rewind()
        self.started = False
        await self.start()
        if isinstance(self.clock, SettableClock):
            await self.clock.rewind()

    def reconfigure(self, **changes: Any) -> None:
        """New timing, seed, default balance or rate limit; for test fixtures, between tests."""
        self.settings = replace(self.settings, **changes)
        self.base_directory = replace(
            self.base_directory, default_balance_usd=self.settings.balance_usd
        )
        if "rate_limit" in changes:
            self.store.set_rate_limit(self.settings.rate_limit)


def unknown_account(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(known[:MAX_NAMES_SHOWN]) or "none yet"
    more = f" and {len(known) - MAX_NAMES_SHOWN} more" if len(known) > MAX_NAMES_SHOWN else ""
    return (
        f"No account {name!r}{hint}: an account is declared in --config or by PUT "
        f"/_mock/accounts/{{account}}, or made by an undeclared key's first run. "
        f"Known: {shown}{more}"
    )


class Media(NamedTuple):
    """A run's file as served: its bytes and their entity tag."""

    run: Run
    content: bytes
    etag: str


def media_cache_key(run: Run) -> str:
    return f"{run.image_seed:016x}-{run.width}x{run.height}-{run.file_name.rsplit('.', 1)[-1]}"


def render_run(run: Run, model: Model | None) -> bytes:
    """The run's file: its prompt, size and model drawn on it (a video's length, frame rate
    and audio from the catalog)."""
    prompt = str(run.input.get("prompt", ""))
    excerpt = prompt if len(prompt) <= PROMPT_EXCERPT else prompt[: PROMPT_EXCERPT - 1] + "…"
    details = " ".join(
        str(v) for k, v in sorted(run.input.items()) if k != "prompt" and isinstance(v, str)
    )
    if model is None or model.kind == "image":
        return render_png(
            width=run.width,
            height=run.height,
            seed=run.image_seed,
            lines=[
                excerpt,
                f"{run.width}x{run.height}  {details}".strip(),
                f"{run.model} · mock-runbase",
            ],
        )
    from mock_runbase.media.video import render_mp4  # PyAV and numpy: loaded by the first video

    full = model.with_defaults(run.input)
    duration, fps = model.duration_s(full), model.fps(full)
    return render_mp4(
        width=run.width,
        height=run.height,
        duration_s=duration,
        fps=fps,
        audio=model.has_audio(full),
        title_lines=[
            excerpt,
            f"{run.width}x{run.height} · {duration:g} s · {fps} fps  {details}".strip(),
            f"{run.model} · mock-runbase",
        ],
        seed=run.image_seed,
    )
