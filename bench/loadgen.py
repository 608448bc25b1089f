"""Driving a server with wrk and a script of bench/lua/, and reading what its done() printed."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools import BENCH_DIR

__all__ = ["LoadSettings", "WrkResult", "run_wrk"]

LUA_DIR = BENCH_DIR / "lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class LoadSettings:
    wrk: str
    threads: int
    connections: int
    duration_s: float
    warmup_s: float


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    errors: int  # socket errors, timeouts and answers >= 400
    late: int  # paced runs: send slots more than 1 ms late
    mb_per_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def run_wrk(
    settings: LoadSettings,
    base_url: str,
    script: str,
    env: dict[str, str],
    *,
    duration_s: float | None = None,
    connections: int | None = None,
    warmup: bool = True,
) -> WrkResult:
    """One wrk run of ``bench/lua/{script}.lua`` (after a short warm-up run, unmeasured)."""
    if warmup and settings.warmup_s > 0:
        wrk_once(settings, base_url, script, env, settings.warmup_s, connections)
    return wrk_once(settings, base_url, script, env, duration_s or settings.duration_s, connections)


def wrk_once(
    settings: LoadSettings,
    base_url: str,
    script: str,
    env: dict[str, str],
    duration_s: float,
    connections: int | None,
) -> WrkResult:
    conns = connections or settings.connections
    threads = min(settings.threads, conns)
    command = [
        settings.wrk,
        f"-t{threads}",
        f"-c{conns}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_DIR / f"{script}.lua"),
        base_url,
    ]
    full_env = {
        **os.environ,
        **env,
        "BENCH_THREADS": str(threads),
        "BENCH_CONNECTIONS": str(conns),
    }
    done = subprocess.run(
        command, capture_output=True, text=True, env=full_env, timeout=duration_s + 120, check=False
    )
    return parse(done.stdout, done.stderr)


def parse(stdout: str, stderr: str) -> WrkResult:
    line = next((x for x in stdout.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {(stderr or stdout).strip()[-400:]}")
    raw = json.loads(line.removeprefix(MARKER))
    duration_s = raw["duration_us"] / 1e6

    def ms(name: str) -> float:
        return float(raw[name]) / 1000

    errors = sum(
        raw[name]
        for name in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=raw["requests"],
        duration_s=duration_s,
        p50_ms=ms("p50_us"),
        p90_ms=ms("p90_us"),
        p99_ms=ms("p99_us"),
        p999_ms=ms("p999_us"),
        max_ms=ms("max_us"),
        mean_ms=ms("mean_us"),
        errors=errors,
        late=raw["late"],
        mb_per_s=raw["bytes"] / duration_s / 1e6 if duration_s else 0.0,
    )


def write_ids(path: Path, ids: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{run_id}\n" for run_id in ids))
    return str(path)
