"""A client as Runbase's Rate Limits page teaches: ``requests``, exponential back-off on 429.

Written from the page's advice (back off exponentially on 429 RATE_LIMITED, poll every
1-2 s); only the base URL and key come from outside, as a user would configure it.
"""

from __future__ import annotations

import time
from typing import Any

import requests


class RunbaseClient:
    def __init__(
        self,
        api_key: str,
        base_url: str = "https://runbase.net/api/v1",
        max_retries: int = 5,
        poll_interval: float = 1.5,
        sleep: Any = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        self.sleep = sleep

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            response = requests.request(
                method, f"{self.base_url}{path}", headers=self.headers, timeout=30, **kwargs
            )
            if response.status_code == 429 and attempt < self.max_retries:
                self.sleep(2**attempt)  # 1 s, 2 s, 4 s, ...
                continue
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body
        raise RuntimeError("unreachable")

    def create_run(self, model: str, input: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/runs", json={"model": model, "input": input})

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/runs/{run_id}")

    def wait(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        waited = 0.0
        while waited <= timeout:
            run = self.get_run(run_id)
            if run["status"] in ("succeeded", "failed"):
                return run
            self.sleep(self.poll_interval)
            waited += self.poll_interval
        raise TimeoutError(run_id)
