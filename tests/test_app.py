"""The documented surface end to end, in process, on a virtual clock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis

from mock_runbase.spec import load_spec
from mock_runbase.store import MemoryStore, wall_ms
from tests.conftest import GPT, KEY, OTHER_KEY, Mock, MockFactory

CATALOG = load_spec().catalog
MODEL = CATALOG.get(GPT)
assert MODEL is not None
COMBINATIONS = [combo for combo, _ in MODEL.size_combinations()]
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    """Every test here holds on both stores."""
    param: str = request.param
    return param


def error_of(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "code"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"]


# --- creation and the run's life ------------------------------------------------------------


def test_create_answers_pending_with_price_and_timestamp(mock: Mock) -> None:
    response = mock.create(aspect_ratio="16:9", resolution="4K")
    assert response.status_code == 200
    run = response.json()
    assert set(run) == {"id", "model", "status", "costUsd", "createdAt"}
    assert re.fullmatch(r"run_[A-Za-z0-9]{22}", run["id"])
    assert run["status"] == "pending"
    assert run["costUsd"] == 120_000
    assert run["model"] == GPT
    assert run["createdAt"] == "2026-06-01T12:00:00.000Z"


def test_run_ids_are_unique_and_opaque(mock: Mock) -> None:
    ids = {mock.create().json()["id"] for _ in range(50)}
    assert len(ids) == 50


def test_states_go_pending_processing_succeeded_and_stay(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    seen = []
    for _ in range(100):  # 10 s of polling every 100 ms
        seen.append(mock.get(run_id).json()["status"])
        mock.advance(0.1)
    collapsed = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    assert collapsed == ["pending", "processing", "succeeded"]
    final = mock.get(run_id).json()
    assert ISO_MS.match(final["completedAt"])
    assert final["completedAt"] > final["createdAt"]
    mock.advance(3600)
    assert mock.get(run_id).json() == final


def test_realistic_timing_is_close_to_the_docs_sample(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    mock.advance(0.3)
    assert mock.get(run_id).json()["status"] == "pending"
    mock.advance(1.0)
    assert mock.get(run_id).json()["status"] == "processing"
    mock.advance(5.0)
    done = mock.get(run_id).json()
    assert done["status"] == "succeeded"
    elapsed = int(done["completedAt"][17:19]) + int(done["completedAt"][20:23]) / 1000
    assert 3.0 <= elapsed <= 5.5


def test_succeeded_run_has_absolute_png_url_on_the_request_host(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    mock.advance(10)
    run = mock.get(run_id).json()
    [url] = run["output"]["urls"]
    assert re.fullmatch(r"http://mock\.test/files/generated/[A-Za-z0-9]+\.png", url)
    assert mock.image(url).size == (1024, 1024)


def test_public_url_overrides_the_host(make_mock: MockFactory) -> None:
    mock = make_mock(public_url="https://cdn.example.com/", timing="instant")
    run_id = mock.create().json()["id"]
    [url] = mock.get(run_id).json()["output"]["urls"]
    assert url.startswith("https://cdn.example.com/files/generated/")
    [listed] = mock.client.get("/_mock/runs").json()["runs"]  # the control API's view too
    assert listed["output"]["urls"] == [url]


def test_instant_timing_is_terminal_at_first_read(make_mock: MockFactory) -> None:
    mock = make_mock(timing="instant")
    created = mock.create().json()
    assert set(created) == {"id", "model", "status", "costUsd", "createdAt"}
    assert created["status"] == "pending"
    assert mock.get(created["id"]).json()["status"] == "succeeded"


def test_both_documented_prefixes_serve_the_same_runs(mock: Mock) -> None:
    response = mock.client.post(
        "/api/v1/runs",
        json={"model": GPT, "input": {"prompt": "x"}},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 200
    run_id = response.json()["id"]
    assert mock.get(run_id, prefix="/v1").json() == mock.get(run_id, prefix="/api/v1").json()


@pytest.mark.parametrize(
    "combo", COMBINATIONS, ids=lambda c: f"{c['aspect_ratio']}-{c['resolution']}"
)
def test_every_ratio_and_resolution_has_its_price_and_pixel_size(
    make_mock: MockFactory, combo: dict[str, str]
) -> None:
    mock = make_mock(timing="instant")
    created = mock.create(**combo).json()
    assert created["costUsd"] == MODEL.cost_usd(combo)
    [url] = mock.get(created["id"]).json()["output"]["urls"]
    image = mock.image(url)
    assert image.size == MODEL.output_size(combo)
    assert image.format == "PNG"


def test_image_is_not_served_before_the_run_succeeds(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    mock.advance(10)
    [url] = mock.get(run_id).json()["output"]["urls"]
    other = mock.create(scenario="stuck").json()["id"]
    assert mock.get(other).json()["status"] in ("pending", "processing")
    assert error_of(mock.client.get(url.replace(url.rsplit("/", 1)[1], "nope.png"))) == (
        404,
        "file_not_found",
    )


def test_image_headers_etag_and_head(make_mock: MockFactory) -> None:
    mock = make_mock(timing="instant")
    run_id = mock.create().json()["id"]
    [url] = mock.get(run_id).json()["output"]["urls"]
    full = mock.client.get(url)
    assert full.headers["content-type"] == "image/png"
    assert int(full.headers["content-length"]) == len(full.content)
    assert full.headers["cache-control"].startswith("public")
    etag = full.headers["etag"]
    head = mock.client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == full.headers["content-length"]
    assert head.headers["etag"] == etag
    assert mock.client.get(url, headers={"If-None-Match": etag}).status_code == 304


def test_same_input_and_seed_give_the_same_bytes(make_mock: MockFactory) -> None:
    def png(seed: int, prompt: str = "a fox") -> bytes:
        mock = make_mock(timing="instant", seed=seed)
        run_id = mock.create(prompt=prompt, aspect_ratio="3:2").json()["id"]
        [url] = mock.get(run_id).json()["output"]["urls"]
        content: bytes = mock.client.get(url).content
        return content

    assert png(1) == png(1)
    assert png(1) != png(2)
    assert png(1, "a fox") != png(1, "a hen")


# --- auth and isolation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "", "sk-test", "Basic sk-test", "Bearer", "Bearer ", "Bearer a b"]
)
def test_malformed_authorization_is_missing_api_key(mock: Mock, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = mock.client.post(
        "/v1/runs", json={"model": GPT, "input": {"prompt": "x"}}, headers=headers
    )
    assert error_of(response) == (401, "missing_api_key")
    assert error_of(mock.client.get("/v1/runs/run_x", headers=headers)) == (401, "missing_api_key")


def test_an_authorization_sent_twice_counts_as_the_last_one(mock: Mock) -> None:
    """As the journal records it (a dict of the headers): the run is looked up for that key."""
    run_id = mock.create(OTHER_KEY).json()["id"]
    twice = [("Authorization", f"Bearer {KEY}"), ("Authorization", f"Bearer {OTHER_KEY}")]
    assert mock.client.get(f"/v1/runs/{run_id}", headers=twice).status_code == 200
    reversed_twice = twice[::-1]
    answer = mock.client.get(f"/v1/runs/{run_id}", headers=reversed_twice)
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "run_not_found")


def test_a_key_without_the_sk_prefix_is_invalid(mock: Mock) -> None:
    assert error_of(mock.create(key="pk-live-123")) == (401, "invalid_api_key")


def test_runs_are_invisible_to_other_accounts(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    assert mock.get(run_id).status_code == 200
    assert error_of(mock.get(run_id, key=OTHER_KEY)) == (404, "run_not_found")
    assert error_of(mock.get("run_doesnotexist")) == (404, "run_not_found")


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mock.yaml"
    path.write_text(text)
    return path


CONFIG = """
accounts:
  acme:
    balance_usd: 0.2
    keys:
      - key: sk-acme-prod
        spend_limit_cents: 10
        usage_quota: 3
      - key: sk-acme-office
        ip_allow_list: [198.51.100.1, 203.0.113.0/24]
      - key: sk-acme-old
        disabled: true
      - key: sk-acme-expired
        expires_at: "2026-06-01T11:00:00Z"
      - sk-acme-ci
  other:
    keys: [sk-other]
"""


def test_strict_keys_reject_undeclared_keys(tmp_path: Path, make_mock: MockFactory) -> None:
    mock = make_mock(config=write_config(tmp_path, CONFIG), strict_keys=True)
    assert error_of(mock.create(key="sk-unknown")) == (401, "invalid_api_key")
    assert mock.create(key="sk-acme-ci").status_code == 200


@pytest.mark.parametrize("key", ["sk-acme-old", "sk-acme-expired"])
def test_disabled_and_expired_keys_are_invalid(
    tmp_path: Path, make_mock: MockFactory, key: str
) -> None:
    mock = make_mock(config=write_config(tmp_path, CONFIG))
    assert error_of(mock.create(key=key)) == (401, "invalid_api_key")


def test_keys_of_one_account_share_balance_and_runs(tmp_path: Path, make_mock: MockFactory) -> None:
    mock = make_mock(config=write_config(tmp_path, CONFIG))
    run_id = mock.create(key="sk-acme-ci").json()["id"]
    assert mock.get(run_id, key="sk-acme-prod").status_code == 200
    assert mock.get(run_id, key="sk-other").status_code == 404
    assert mock.balance("sk-acme-prod") == 200_000 - 50_000


@pytest.mark.parametrize(
    ("ip", "allowed"), [("198.51.100.1", True), ("203.0.113.99", True), ("192.0.2.1", False)]
)
def test_ip_allow_list(tmp_path: Path, make_mock: MockFactory, ip: str, allowed: bool) -> None:
    mock = make_mock(config=write_config(tmp_path, CONFIG), client_ip=ip)
    response = mock.create(key="sk-acme-office")
    if allowed:
        assert response.status_code == 200
    else:
        assert error_of(response) == (403, "ip_not_allowed")
        assert error_of(mock.get("run_x", key="sk-acme-office")) == (403, "ip_not_allowed")
        assert mock.account("sk-acme-office")["runs"] == 0


def test_usage_quota_then_spend_limit_then_balance(tmp_path: Path, make_mock: MockFactory) -> None:
    mock = make_mock(config=write_config(tmp_path, CONFIG))
    # spend limit 10 cents = 100000 micro-USD; two 1K runs reach it.
    assert mock.create(key="sk-acme-prod").status_code == 200
    assert mock.create(key="sk-acme-prod").status_code == 200
    assert error_of(mock.create(key="sk-acme-prod")) == (403, "api_key_spend_limit_exceeded")
    # The account (0.20 USD) has 0.10 left; a 2K run (0.07) fits once, then not.
    assert mock.create(key="sk-acme-ci", resolution="2K").status_code == 200
    assert error_of(mock.create(key="sk-acme-ci", resolution="2K")) == (402, "insufficient_balance")
    assert mock.balance("sk-acme-ci") == 200_000 - 170_000


def test_usage_quota_is_checked_before_spend_and_balance(
    tmp_path: Path, make_mock: MockFactory
) -> None:
    config = CONFIG.replace("spend_limit_cents: 10", "spend_limit_cents: 1000").replace(
        "balance_usd: 0.2", "balance_usd: 100"
    )
    mock = make_mock(config=write_config(tmp_path, config))
    for _ in range(3):
        assert mock.create(key="sk-acme-prod").status_code == 200
    assert error_of(mock.create(key="sk-acme-prod")) == (429, "USAGE_EXCEEDED")


def test_spend_limit_counts_net_spend_after_refunds(tmp_path: Path, make_mock: MockFactory) -> None:
    mock = make_mock(config=write_config(tmp_path, CONFIG))
    mock.create(key="sk-acme-prod", scenario="fail")
    mock.create(key="sk-acme-prod")
    assert error_of(mock.create(key="sk-acme-prod")) == (403, "api_key_spend_limit_exceeded")
    mock.advance(60)
    assert mock.account("sk-acme-prod")["key"]["spentUsd"] == 50_000
    assert mock.create(key="sk-acme-prod").status_code == 200


# --- billing ----------------------------------------------------------------------------------


def test_cost_is_deducted_at_creation(mock: Mock) -> None:
    start = mock.balance()
    mock.create(resolution="2K")
    assert mock.balance() == start - 70_000
    assert mock.account()["spentUsd"] == 70_000
    assert mock.account()["runs"] == 1


def test_a_failed_run_is_refunded_exactly_when_it_fails(mock: Mock) -> None:
    start = mock.balance()
    created = mock.create(scenario="fail").json()
    assert mock.balance() == start - 50_000
    while mock.get(created["id"]).json()["status"] != "failed":
        assert mock.balance() == start - 50_000
        mock.advance(0.05)
    run = mock.get(created["id"]).json()
    assert mock.balance() == start
    assert run["error"]["code"] == "generation_failed" and run["error"]["message"]
    assert "output" not in run
    mock.advance(100)
    assert mock.balance() == start  # refunded once


def test_insufficient_balance(make_mock: MockFactory) -> None:
    mock = make_mock(balance_usd=60_000)
    assert mock.create().status_code == 200
    assert error_of(mock.create()) == (402, "insufficient_balance")
    assert mock.balance() == 10_000


# --- scenarios --------------------------------------------------------------------------------


def test_prompt_tag_picks_a_scenario(mock: Mock) -> None:
    run_id = mock.create(prompt="a cat [mock:fail]").json()["id"]
    mock.advance(60)
    assert mock.get(run_id).json()["status"] == "failed"


def test_stuck_stays_processing(mock: Mock) -> None:
    run_id = mock.create(scenario="stuck").json()["id"]
    mock.advance(24 * 3600)
    run = mock.get(run_id).json()
    assert run["status"] == "processing"
    assert "completedAt" not in run


def test_slow_takes_ten_times_longer(mock: Mock) -> None:
    normal = mock.create(prompt="p").json()["id"]
    slow = mock.create(prompt="p", scenario="slow").json()["id"]
    mock.advance(10)
    assert mock.get(normal).json()["status"] == "succeeded"
    assert mock.get(slow).json()["status"] == "processing"
    mock.advance(60)
    assert mock.get(slow).json()["status"] == "succeeded"


def test_error_500_creates_nothing(mock: Mock) -> None:
    start = mock.account()
    assert error_of(mock.create(scenario="error-500")) == (500, "internal_error")
    assert mock.account() == start


def test_unknown_scenario_is_ignored_with_a_warning(mock: Mock) -> None:
    response = mock.create(scenario="fial")
    assert response.status_code == 200
    assert "fial" in response.headers["x-mock-warning"]


# --- rate limit -------------------------------------------------------------------------------


def test_rate_limit_counts_creates_and_polls_together(make_mock: MockFactory) -> None:
    from mock_runbase.ratelimit import DOCUMENTED

    mock = make_mock(rate_limit=DOCUMENTED)
    run_id = mock.create().json()["id"]
    for _ in range(9):
        mock.create()
        mock.advance(0.1)
    for _ in range(10):
        assert mock.get(run_id).status_code == 200
    limited = mock.get(run_id)
    assert error_of(limited) == (429, "RATE_LIMITED")
    assert limited.json()["error"]["message"] == "Rate limit exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 10
    assert error_of(mock.create()) == (429, "RATE_LIMITED")
    assert mock.get(run_id, key=OTHER_KEY).status_code == 404  # another key has its own window
    mock.advance(9.1)  # t=10.0: the two requests made at t=0 leave the window
    assert mock.get(run_id).status_code == 200
    assert mock.get(run_id).status_code == 200
    assert error_of(mock.get(run_id)) == (429, "RATE_LIMITED")


def test_custom_rate_limit(make_mock: MockFactory) -> None:
    from mock_runbase.ratelimit import parse_rate_limit

    mock = make_mock(rate_limit=parse_rate_limit("2/1"))
    assert mock.create().status_code == 200
    assert mock.create().status_code == 200
    assert error_of(mock.create()) == (429, "RATE_LIMITED")
    mock.advance(1)
    assert mock.create().status_code == 200


# --- check order and bad input ----------------------------------------------------------------


def test_check_order_auth_ip_rate_body_quota_spend_balance(
    tmp_path: Path, make_mock: MockFactory
) -> None:
    from mock_runbase.ratelimit import parse_rate_limit

    config = write_config(
        tmp_path,
        """
accounts:
  a:
    balance_usd: 0
    keys:
      - {key: sk-a, ip_allow_list: [192.0.2.1], usage_quota: 0, spend_limit_cents: 0}
      - {key: sk-b, usage_quota: 0, spend_limit_cents: 0}
      - {key: sk-c, spend_limit_cents: 0}
      - {key: sk-d}
""",
    )
    mock = make_mock(config=config, rate_limit=parse_rate_limit("1/60"))
    bad = {"model": 3}

    def post(key: str | None, body: Any) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return error_of(mock.client.post("/v1/runs", json=body, headers=headers))

    assert post(None, bad) == (401, "missing_api_key")
    assert post("sk-a", bad) == (403, "ip_not_allowed")
    assert post("sk-b", bad) == (400, "missing_model")  # uses sk-b's one request
    assert post("sk-b", {"model": GPT, "input": {"prompt": "x"}}) == (429, "RATE_LIMITED")
    mock.advance(60)
    assert post("sk-b", {"model": GPT, "input": {"prompt": "x"}}) == (429, "USAGE_EXCEEDED")
    assert post("sk-c", {"model": GPT, "input": {"prompt": "x"}}) == (
        403,
        "api_key_spend_limit_exceeded",
    )
    assert post("sk-d", {"model": GPT, "input": {"prompt": "x"}}) == (402, "insufficient_balance")


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"not json", "application/json", "invalid_json"),
        (b'{"model": "openai/gpt-image-2", "input": {"prompt": "x"}}', "text/plain", None),
        (b"", "application/json", "invalid_json"),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", "invalid_json"),
        (b'{"input": {"prompt": "x"}}', "application/json", "missing_model"),
        (b'{"model": "openai/gpt-image-2"}', "application/json", "missing_input"),
        (b'{"model": "acme/x", "input": {}}', "application/json", "model_not_found"),
        (
            b'{"model": "openai/gpt-image-2", "input": {"prompt": ""}}',
            "application/json",
            "invalid_input",
        ),
        (
            '{"model": "openai/gpt-image-2", "input": {"prompt": "\U0001f980 ü"}}'.encode(),
            "application/json",
            None,
        ),
    ],
)
def test_bad_bodies_get_documented_errors_and_change_nothing(
    mock: Mock, body: bytes, content_type: str, code: str | None
) -> None:
    before = mock.account()
    response = mock.client.post(
        "/v1/runs",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": content_type},
    )
    if code is None:
        assert response.status_code == 200
        return
    assert error_of(response) == (400, code)
    assert mock.account() == before


def test_huge_body_is_rejected_with_413(make_mock: MockFactory) -> None:
    mock = make_mock(max_body_bytes=1024)
    before = mock.account()
    response = mock.client.post(
        "/v1/runs", content=b"{" + b" " * 2048 + b"}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert error_of(response) == (413, "payload_too_large")
    assert mock.account() == before


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v2/runs", 404, "not_found"),
        ("GET", "/", 404, "not_found"),
        ("DELETE", "/v1/runs/run_x", 405, "method_not_allowed"),
        ("PUT", "/v1/runs", 405, "method_not_allowed"),
        ("GET", "/v1/runs", 405, "method_not_allowed"),
    ],
)
def test_unknown_paths_and_methods_get_json_errors(
    mock: Mock, method: str, path: str, status: int, code: str
) -> None:
    response = mock.client.request(method, path, headers={"Authorization": f"Bearer {KEY}"})
    assert error_of(response) == (status, code)
    if status == 405:
        assert response.headers["allow"]


def pass_the_ttl(mock: Mock, run_id: str, file_name: str) -> None:
    """Make the run ``--run-ttl`` old on the store's wall clock (Redis: check the deadline of
    its keys, then do what Redis does at it; a test cannot move Redis' clock)."""
    store = mock.client.app.state.service.store  # type: ignore[attr-defined]
    ttl_ms = round(mock.settings.run_ttl_s * 1000)
    if isinstance(store, MemoryStore):
        store.wall_clock = lambda: wall_ms() + ttl_ms
        return
    keys = [store.k("run", run_id), store.k("file", file_name)]
    with redis.Redis.from_url(mock.settings.store) as client:
        assert all(0 < client.pttl(key) <= ttl_ms for key in keys)
        assert client.delete(*keys) == 2


def test_a_run_past_its_ttl_is_gone_from_every_read(make_mock: MockFactory) -> None:
    mock = make_mock(run_ttl_s=60)
    run_id = mock.create().json()["id"]
    mock.advance(30)  # the mock's clock; the TTL is real time
    url = mock.get(run_id).json()["output"]["urls"][0]
    assert mock.client.get(url).status_code == 200
    pass_the_ttl(mock, run_id, url.rsplit("/", 1)[-1])
    gone, unknown = mock.get(run_id), mock.get("run_unknown")
    assert error_of(gone) == error_of(unknown) == (404, "run_not_found")
    assert gone.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
        "run_unknown", run_id
    )
    assert error_of(mock.client.get(url)) == (404, "file_not_found")
    assert mock.client.get("/_mock/runs").json()["runs"] == []
    forced = mock.client.post(f"/_mock/runs/{run_id}/state", json={"status": "failed"})
    assert error_of(forced) == (404, "run_not_found")
    assert mock.account()["spentUsd"] == 50_000  # runs are forgotten, money is not


def test_health_and_spec(mock: Mock) -> None:
    assert mock.client.get("/healthz").json() == {"status": "ok"}
    spec = mock.client.get("/openapi.yaml")
    assert spec.headers["content-type"].startswith("application/yaml")
    assert spec.content.startswith(b"openapi: 3.1")


def test_clock_advance_needs_the_virtual_clock(make_mock: MockFactory) -> None:
    mock = make_mock()
    response = mock.client.post("/_mock/clock/advance", json={"seconds": 2.5})
    assert response.json() == {"now": "2026-06-01T12:00:02.500Z", "virtual": True}
    for bad in [{"seconds": -1}, {"seconds": "1"}, {}, [], {"seconds": True}]:
        assert error_of(mock.client.post("/_mock/clock/advance", json=bad)) == (
            400,
            "invalid_request",
        )
    real = make_mock(clock="real")
    assert error_of(real.client.post("/_mock/clock/advance", json={"seconds": 1})) == (
        409,
        "clock_not_virtual",
    )


def test_reset_forgets_runs_and_money(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    mock.advance(5)
    assert mock.client.post("/_mock/reset").json() == {"reset": True, "account": None}
    assert mock.get(run_id).status_code == 404
    assert mock.account()["runs"] == 0
    assert mock.account()["balanceUsd"] == 100_000_000
    assert mock.client.get("/_mock/clock").json()["now"] == "2026-06-01T12:00:00.000Z"
