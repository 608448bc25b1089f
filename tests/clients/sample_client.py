"""A small Runbase client (standard library only), robust, or with one deliberate flaw.

    python -m tests.clients.sample_client [--flaw NAME] [--poll-interval S]

It does one job: create a GPT Image 2 run, poll it until it ends, download its image. It
exits 0 when it handled what happened (a failed run or a refused request reported, a run
that never ends given up on) and non-zero when it crashed. The robust client retries
transient failures (500, 429 RATE_LIMITED after its Retry-After, broken connections, a file
not there yet) with back-off, never retries 400-404, and gives up on a run after
``MAX_POLLS`` polls. Each flaw breaks one of those (``FLAWS``), for the tests of
``check-client`` and of ``runbase_mock.assert_client_conformed`` to catch.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

FLAWS = {
    "ignores-retry-after": "retries a 429 at once, whatever its Retry-After says",
    "crashes-on-failed-run": "reads error.detail of a failed run (there is no such field)",
    "dropped-create-is-success": "takes a create that got no answer for a run made",
    "polls-stuck-run-for-ever": "polls until the run ends, however long that takes",
}
MAX_ATTEMPTS = 8
MAX_POLLS = 10
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
BROKEN = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class Refused(Exception):
    """A 4xx the client cannot get past by asking again."""


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        flaw: str | None = None,
        poll_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        out: Callable[[str], None] = print,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.flaw = flaw
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.out = out

    def call(self, method: str, url: str, body: dict[str, Any] | None = None) -> bytes:
        """The answer's body; retries what is transient; ``Refused`` for any other 4xx."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        least = self.poll_interval if method == "GET" and "/runs/" in url else 0.0
        for attempt in range(MAX_ATTEMPTS):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    content: bytes = answer.read()
                    return content
            except urllib.error.HTTPError as error:
                status, retry_after = error.code, error.headers.get("Retry-After")
                error.read()
                is_file = "/files/" in url
                if status not in TRANSIENT_STATUSES and not (is_file and status == 404):
                    raise Refused(f"{status} {error.reason}") from None
                wait = max(least, 0.05 * 2**attempt)  # a poll again: no sooner than a poll
                if status == 429 and retry_after and self.flaw != "ignores-retry-after":
                    wait = max(wait, float(retry_after))
                if status == 429 and self.flaw == "ignores-retry-after":
                    wait = 0.01
                self.sleep(wait)
            except BROKEN:
                if self.flaw == "dropped-create-is-success" and method == "POST":
                    raise
                self.sleep(max(least, 0.05 * 2**attempt))
        raise Refused(f"{method} {url}: still failing after {MAX_ATTEMPTS} attempts")

    def generate(self, prompt: str) -> int:
        try:
            created = json.loads(self.call("POST", f"{self.base_url}/runs", {
                "model": "openai/gpt-image-2", "input": {"prompt": prompt}}))  # fmt: skip
        except BROKEN:  # only with the flaw dropped-create-is-success
            self.out("created (the answer was lost, but it must have worked)")
            return 0
        except Refused as refused:
            self.out(f"refused: {refused}")
            return 0
        run = created
        polls = 0
        while run["status"] not in ("succeeded", "failed"):
            if polls >= MAX_POLLS and self.flaw != "polls-stuck-run-for-ever":
                self.out(f"gave up on {created['id']} after {polls} polls")
                return 0
            self.sleep(self.poll_interval)
            try:
                run = json.loads(self.call("GET", f"{self.base_url}/runs/{created['id']}"))
            except Refused as refused:
                self.out(f"refused: {refused}")
                return 0
            polls += 1
        if run["status"] == "failed":
            detail = run["error"]["detail"] if self.flaw == "crashes-on-failed-run" else ""
            self.out(f"failed: {run['error'].get('message')} {detail}".rstrip())
            return 0
        for url in run["output"]["urls"]:
            try:
                image = self.call("GET", url)
            except Refused as refused:
                self.out(f"download refused: {refused}")
                return 0
            self.out(f"succeeded: {len(image)} bytes from {url}")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flaw", choices=sorted(FLAWS))
    parser.add_argument("--poll-interval", type=float, default=1.0)
    options = parser.parse_args(argv)
    client = Client(
        os.environ["RUNBASE_BASE_URL"],
        os.environ["RUNBASE_API_KEY"],
        flaw=options.flaw,
        poll_interval=options.poll_interval,
    )
    return client.generate("a lighthouse at dawn")


if __name__ == "__main__":
    sys.exit(main())
