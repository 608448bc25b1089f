"""The dashboard and the docs in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which ``.ci/run`` installs) driven by Selenium, against
``mock-runbase serve --clock virtual`` in a subprocess.

Screenshots land in ``tests/artifacts/browser/`` (ignored by git); a failed wait also saves
the page's HTML and the browser's console there. ``docs/dashboard.png`` in the README is
``dashboard.png`` of this run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests import served

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "browser"
GPT = "openai/gpt-image-2"
KEY = "sk-browser-alice"
WAIT_SECONDS = 20
STALE = (StaleElementReferenceException,)
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
]


def binary(env: str, *names: str) -> str | None:
    found = os.environ.get(env)
    if found:
        return found
    for name in names:
        if path := shutil.which(name):
            return path
    return None


CHROMIUM = binary("CHROMIUM_BINARY", "chromium", "chromium-browser")
CHROMEDRIVER = binary("CHROMEDRIVER", "chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason=(
        "no headless browser here: chromium and chromedriver are not on PATH "
        "(apt-get install chromium chromium-driver; .ci/run does so when it can)"
    ),
)


# --- the mock, in its own process ---------------------------------------------------------------


class Server(served.Server):
    """``mock-runbase serve`` on a free loopback port, and an HTTP client of it."""

    def __init__(self, *args: str) -> None:
        super().__init__(*args)
        self.http = httpx.Client(base_url=self.base, timeout=10)

    def create(
        self, prompt: str, scenario: str | None = None, model: str = GPT, **input_fields: Any
    ) -> str:
        headers = {"Authorization": f"Bearer {KEY}"}
        if scenario:
            headers["X-Mock-Scenario"] = scenario
        body = {"model": model, "input": {"prompt": prompt, **input_fields}}
        response = self.http.post("/v1/runs", json=body, headers=headers)
        assert response.status_code == 200, response.text
        run_id: str = response.json()["id"]
        return run_id

    def clock(self) -> datetime:
        now: str = self.http.get("/_mock/clock").json()["now"]
        return datetime.fromisoformat(now)

    def stop(self) -> tuple[int, str]:
        self.http.close()
        return super().stop()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = Server("--clock", "virtual", "--timing", "realistic", "--no-rate-limit")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield browser
        finally:
            browser.quit()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")
    return ARTIFACTS


class Page:
    """The dashboard open in the browser, with waits on the DOM (never fixed sleeps)."""

    def __init__(self, driver: WebDriver, server: Server, artifacts: Path, name: str) -> None:
        self.driver = driver
        self.server = server
        self.artifacts = artifacts
        self.name = name

    def open(self, path: str = "/_mock/ui") -> None:
        self.driver.get(self.server.base + path)

    def until(self, what: str, condition: Callable[[WebDriver], Any]) -> Any:
        try:
            return WebDriverWait(self.driver, WAIT_SECONDS, ignored_exceptions=STALE).until(
                condition
            )
        except TimeoutException:
            stem = self.artifacts / f"FAILED-{self.name}"
            self.driver.save_screenshot(f"{stem}.png")
            Path(f"{stem}.html").write_text(self.driver.page_source)
            console = "\n".join(str(entry) for entry in self.driver.get_log("browser"))
            Path(f"{stem}.console.txt").write_text(console)
            raise AssertionError(f"timed out waiting until {what}; see {stem}.png") from None

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        """The text of the first match, read in one step (rows are redrawn as the state moves)."""
        script = "const n = document.querySelector(arguments[0]); return n ? n.innerText : ''"
        found: str = self.driver.execute_script(script, css)
        return found

    def texts(self, css: str) -> list[str]:
        script = "return [...document.querySelectorAll(arguments[0])].map(n => n.innerText)"
        found: list[str] = self.driver.execute_script(script, css)
        return found

    def attributes(self, css: str, name: str) -> list[str]:
        """``data-NAME`` of each match."""
        script = (
            "return [...document.querySelectorAll(arguments[0])].map(n => n.dataset[arguments[1]])"
        )
        found: list[str] = self.driver.execute_script(script, css, name)
        return found

    def loaded_images(self, css: str) -> list[str]:
        """The ``src`` of each matching image that has loaded."""
        script = (
            "return [...document.querySelectorAll(arguments[0])]"
            ".filter(i => i.complete && i.naturalWidth > 0).map(i => i.src)"
        )
        found: list[str] = self.driver.execute_script(script, css)
        return found

    def run_status(self, run_id: str) -> str | None:
        script = "const n = document.querySelector(arguments[0]); return n && n.dataset.status"
        found: str | None = self.driver.execute_script(script, f'tr.run[data-id="{run_id}"]')
        return found

    def until_status(self, run_id: str, status: str) -> None:
        self.until(f"run {run_id} is {status}", lambda d: self.run_status(run_id) == status)

    def live(self) -> None:
        self.until(
            "the page is live",
            lambda d: self.find("#connection").get_attribute("data-state") == "live",
        )

    def advance(self, seconds: float) -> None:
        """Move the clock from the page's form, and wait until the server has moved it: the
        click only starts the page's request, and a run created before it lands would move too.
        """
        before = self.server.clock()
        box = self.find("#advance-seconds")
        box.clear()
        box.send_keys(str(seconds))
        self.find("#advance").click()
        self.until(
            f"the server's clock has moved {seconds} s",
            lambda d: self.server.clock() >= before + timedelta(seconds=seconds),
        )

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / name
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture
def page(
    driver: WebDriver, server: Server, artifacts: Path, request: pytest.FixtureRequest
) -> Page:
    assert server.http.post("/_mock/reset").status_code == 200
    opened = Page(driver, server, artifacts, request.node.name)
    opened.open()
    opened.live()
    return opened


# --- the tests ----------------------------------------------------------------------------------


def test_a_run_appears_and_succeeds_with_its_thumbnail_when_the_page_advances_the_clock(
    page: Page,
) -> None:
    run_id = page.server.create("a lighthouse at dawn", aspect_ratio="16:9", resolution="1K")
    page.until_status(run_id, "pending")
    row = f'tr.run[data-id="{run_id}"]'
    assert "a lighthouse at dawn" in page.text(row)
    assert "16:9" in page.text(row) and "1K" in page.text(row)
    assert "\u2026" + KEY[-4:] in page.text(row)

    page.advance(1)
    page.until_status(run_id, "processing")
    page.advance(60)
    page.until_status(run_id, "succeeded")
    [source] = page.until(
        "the thumbnail has loaded", lambda d: page.loaded_images(f"{row} img.thumb")
    )
    assert source.startswith("blob:")  # fetched by the page's script, with the admin header
    steps = page.texts(f"{row} .timeline .step.done")
    assert [step.split()[0] for step in steps] == ["pending", "processing", "succeeded"]
    page.screenshot("run-succeeded.png")


def test_a_video_run_shows_its_poster_and_length_and_links_to_the_mp4(page: Page) -> None:
    run_id = page.server.create(
        "a drone over a canyon",
        model="bytedance/seedance-1-lite",
        resolution="480p",
        duration="5",
        aspect_ratio="16:9",
    )
    page.advance(600)  # videos take minutes under realistic timing
    page.until_status(run_id, "succeeded")
    row = f'tr.run[data-id="{run_id}"]'
    assert "864\u00d7480 \u00b7 5 s video" in page.text(row)
    [source] = page.until("the poster has loaded", lambda d: page.loaded_images(f"{row} img.thumb"))
    assert source.startswith("blob:")
    link = page.find(f"{row} a").get_attribute("href")
    assert link is not None and link.endswith(".mp4")
    assert page.server.http.get(link).headers["content-type"] == "video/mp4"


def test_a_failed_run_is_marked_failed_and_its_refund_shows_in_the_balance(page: Page) -> None:
    done = page.server.create("a fox", resolution="1K")
    page.advance(60)
    page.until_status(done, "succeeded")
    failing = page.server.create("this one fails", scenario="fail", resolution="1K")
    page.until_status(failing, "pending")
    account = page.server.http.get("/_mock/accounts").json()["accounts"][0]
    name = account["account"]
    balance = f'[data-account="{name}"] .balance'
    charged = usd(account["balanceUsd"])
    page.until(
        f"the balance shows both charges ({charged})", lambda d: page.text(balance) == charged
    )

    page.find('#advance-form .quick[data-seconds="60"]').click()
    page.until_status(failing, "failed")
    row = f'tr.run[data-id="{failing}"]'
    assert "generation_failed" in page.text(row)
    assert "refunded" in page.text(row)
    refunded = usd(page.server.http.get(f"/_mock/accounts/{name}").json()["balanceUsd"])
    assert refunded != charged
    page.until(
        f"the balance shows the refund ({refunded})", lambda d: page.text(balance) == refunded
    )
    page.screenshot("run-failed-refunded.png")


def test_a_rule_added_from_the_form_counts_its_hits(page: Page) -> None:
    page.until(
        "the scenarios are listed",
        lambda d: d.find_elements(By.CSS_SELECTOR, '#rule-scenario option[value="fail"]'),
    )
    Select(page.find("#rule-scenario")).select_by_value("fail")
    Select(page.find("#rule-endpoint")).select_by_value("create")
    page.find("#rule-code").send_keys("content_policy")
    page.find("#rule-message").send_keys("Prompt rejected")
    page.find("#rule-times").send_keys("2")
    page.find("#rule-add").click()
    [rule_id] = page.until("the rule is listed", lambda d: page.attributes("tr.rule", "id"))
    hits = f'tr.rule[data-id="{rule_id}"] .hits'
    assert page.text(hits).startswith("0")

    first = page.server.create("first")
    page.until("the rule has fired once", lambda d: page.text(hits).startswith("1"))
    page.server.create("second")
    page.until("the rule has fired twice", lambda d: page.text(hits).startswith("2"))
    third = page.server.create("third: the rule is used up")
    page.advance(60)
    page.until_status(first, "failed")
    page.until_status(third, "succeeded")
    assert "content_policy" in page.text(f'tr.run[data-id="{first}"]')
    page.screenshot("rule-hits.png")


def test_the_journal_highlights_errors_and_filters_them(page: Page) -> None:
    page.server.create("fine")
    missing = page.server.http.get(
        "/v1/runs/run_missing", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert missing.status_code == 404
    page.until(
        "the 404 is highlighted", lambda d: d.find_elements(By.CSS_SELECTOR, "tr.request.error")
    )
    assert "run_not_found" in page.text("tr.request.error")
    Select(page.find("#filter-status")).select_by_value("errors")
    page.until(
        "only errors are listed",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.request")) == 1,
    )
    Select(page.find("#filter-status")).select_by_value("")
    page.until(
        "both are listed again", lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.request")) == 2
    )


def test_dashboard_with_a_few_runs(page: Page) -> None:
    """The README's screenshot: runs in every state, a rule, and an error in the journal."""
    server = page.server
    server.http.post(
        "/_mock/rules",
        json={
            "match": {"endpoint": "create", "resolution": "4K"},
            "effect": {"scenario": "fail", "code": "content_policy", "message": "Prompt rejected"},
            "times": 1,
        },
    )
    done = [
        server.create("a lighthouse at dawn, oil painting", aspect_ratio="16:9", resolution="2K"),
        server.create("a red fox in fresh snow", aspect_ratio="1:1", resolution="1K"),
        server.create("test: a poster of a city at night", aspect_ratio="21:9", resolution="4K"),
    ]
    page.advance(10)
    working = server.create("a bowl of ramen, studio light", aspect_ratio="4:3", resolution="1K")
    server.http.post("/_mock/clock/advance", json={"seconds": 1})
    waiting = server.create("a sailing boat at sunset", aspect_ratio="16:9", resolution="1K")
    server.http.get("/v1/runs/run_unknown", headers={"Authorization": f"Bearer {KEY}"})
    for run_id, status in [
        *zip(done, ["succeeded", "succeeded", "failed"], strict=True),
        (working, "processing"),
        (waiting, "pending"),
    ]:
        page.until_status(run_id, status)
    page.until("both thumbnails have loaded", lambda d: len(page.loaded_images("img.thumb")) == 2)
    page.driver.set_window_size(1400, 1250)
    page.screenshot("dashboard.png")


def test_docs_render_offline_from_the_bundled_swagger_ui(page: Page) -> None:
    page.open("/docs")
    page.until(
        "Swagger UI lists Runbase's two operations",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == 2,
    )
    assert "Runbase runs API" in page.text(".info .title")
    servers = page.text(".servers select")
    assert servers.splitlines()[0].startswith(f"{page.server.base}/v1")
    page.screenshot("docs.png")
    # The top bar's selector switches to the mock's own API.
    Select(page.find(".topbar select")).select_by_visible_text(
        "mock-runbase's own API (mock-openapi.yaml)"
    )
    page.until(
        "Swagger UI lists the mock's own operations",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 25,
    )
    assert "mock-runbase's own API" in page.text(".info .title")
    assert page.text(".servers select").splitlines()[0].startswith(page.server.base)
    severe = [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []  # nothing failed to load: no CDN, no online validator


def usd(micro: int) -> str:
    """As the page writes money."""
    digits = 2 if micro % 10_000 == 0 else 4
    return f"${micro / 1_000_000:.{digits}f}"
