"""Renders run in worker processes below the server's priority (no interpreter lock shared
with the server), give the same bytes as in the server's thread, and fall back to that thread
where no worker process can be made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

import pytest

from mock_runbase.media.images import render_png
from mock_runbase.media.render_pool import RENDER_NICENESS, RenderPool


def niceness() -> int:
    return os.nice(0)


def die() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@pytest.fixture
def pool() -> Iterator[RenderPool]:
    made = RenderPool(workers=1)
    yield made
    made.close()


def test_a_render_runs_in_another_process_below_the_servers_priority(pool: RenderPool) -> None:
    assert pool.render(os.getpid) != os.getpid()
    assert pool.render(niceness) == min(19, niceness() + RENDER_NICENESS)


def test_a_render_in_a_worker_is_the_same_bytes_as_in_the_thread(pool: RenderPool) -> None:
    args = {"width": 320, "height": 200, "seed": 7, "lines": ["a fox", "320x200"]}
    assert pool.render(partial(render_png, **args)) == render_png(**args)


def test_a_dead_worker_is_replaced_and_the_next_render_works(pool: RenderPool) -> None:
    with pytest.raises(BrokenProcessPool):  # killed again in the replacement: then it says so
        pool.render(die)
    assert pool.render(os.getpid) != os.getpid()


def test_without_worker_processes_renders_run_in_the_calling_thread(
    pool: RenderPool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import multiprocessing

    def no_fork_server(method: str) -> None:
        raise ValueError(f"cannot find context for {method!r}")

    monkeypatch.setattr(multiprocessing, "get_context", no_fork_server)
    assert pool.render(os.getpid) == os.getpid()
    assert pool.warm() is None
    assert "renders run in the server's threads" in caplog.text


def test_render_workers_end_with_a_server_killed_without_a_clean_exit() -> None:
    script = (
        "import os, sys\n"
        "from mock_runbase.media.render_pool import RenderPool\n"
        "pool = RenderPool(workers=1)\n"
        "print(pool.render(os.getpid), flush=True)\n"
        "sys.stdin.read()\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    worker = int(server.stdout.readline())
    os.kill(server.pid, signal.SIGKILL)  # no atexit, no shutdown of the pool
    server.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(worker):
        time.sleep(0.05)  # waiting for another process to end, not for mock time
    assert not alive(worker)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


UNGUARDED_SCRIPT = """
import httpx, mock_runbase
from mock_runbase.media.render_pool import RENDER_POOL

with mock_runbase.serve() as mock:
    headers = {"Authorization": f"Bearer {mock.api_key}"}
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "a fox"}}
    run = httpx.post(f"{mock.base_url}/runs", headers=headers, json=body).json()
    done = httpx.get(f"{mock.base_url}/runs/{run['id']}", headers=headers).json()
    image = httpx.get(done["output"]["urls"][0])
    in_workers = RENDER_POOL._executor is not None and not RENDER_POOL._unavailable
    print("script ran", image.status_code, image.content[:4] == b"\\x89PNG", in_workers)
"""


def test_a_script_without_a_main_guard_runs_once_and_renders_in_workers(tmp_path: Path) -> None:
    """multiprocessing re-runs the main script in new processes; the render workers must not
    run a user's script again (the README's plain-script example has no main guard)."""
    script = tmp_path / "my_script.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script ran 200 True True"]
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
