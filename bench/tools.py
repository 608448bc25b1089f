"""Tools the benchmark needs, installed on demand, and facts about the machine.

``wrk`` and ``redis-server`` come from Debian (``apt-get``), Prism from the npm registry into
``bench/.cache`` (reused across runs), matplotlib from PyPI into the running interpreter's
environment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "CACHE_DIR",
    "REPO_DIR",
    "apt_installed",
    "apt_required",
    "common_facts",
    "ensure_matplotlib",
    "ensure_prism",
    "ensure_py_spy",
    "ensure_redis_server",
    "ensure_wrk",
    "free_port",
    "machine_facts",
    "pinned",
    "positive",
    "positive_seconds",
    "seconds",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
PRISM_PACKAGE = "@stoplight/prism-cli"
APT_LISTS = Path("/var/lib/apt/lists")


STARTED = time.perf_counter()


SERVER_CPU = 1  # pinned: the server on this core, wrk (started by this process) on the other
LOAD_CPU = 0


@contextmanager
def pinned(pid: int, *, wanted: bool = True) -> Iterator[bool]:
    """Every thread of the server ``pid`` on one core and this process (so the wrk it starts)
    on the other, as the issue's first measurements were made: steadier figures on a 2-core
    machine than letting the scheduler move the two around. Both get all cores back after.
    Yields whether it pinned (not unless ``wanted``, nor on one core)."""
    everything = os.sched_getaffinity(0)
    if not wanted or len(everything) < 2 or not {SERVER_CPU, LOAD_CPU} <= everything:
        yield False
        return
    set_affinity(pid, {SERVER_CPU})
    os.sched_setaffinity(0, {LOAD_CPU})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, everything)
        set_affinity(pid, everything)


def set_affinity(pid: int, cpus: set[int]) -> None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, ValueError):  # a thread that ended meanwhile
            continue


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the benchmark started."""
    print(f"[bench {time.perf_counter() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def run_quiet(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def seconds(text: str) -> float:
    """An argparse type: a duration in seconds, 0 or more (a finite number)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a duration in seconds, more than 0."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be more than 0 s")
    return value


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package (``apt-get update`` first if needed)."""
    return apt_required("wrk", "wrk", "bench")


def apt_required(package: str, binary: str, tool: str) -> str:
    """The path of ``binary`` as ``apt_installed`` gives it; ``tool`` exits if it cannot."""
    found = apt_installed(package, binary)
    if not found:
        raise SystemExit(f"{tool}: {binary} could not be installed (apt-get install {package})")
    return found


def ensure_redis_server() -> tuple[str | None, str]:
    """(path, note): Debian's ``redis-server``, installed like wrk when missing.

    The path is None when it cannot be had; the note then says why, else gives the version.
    """
    found = apt_installed("redis-server", "redis-server")
    if not found:
        return None, "redis-server could not be installed (apt-get install redis-server)"
    words = run_quiet([found, "--version"], timeout=30).stdout.split()
    version = next((w.removeprefix("v=") for w in words if w.startswith("v=")), "unknown")
    return found, f"redis-server {version}"


def apt_installed(package: str, binary: str) -> str | None:
    """The path of ``binary``, installing Debian's ``package`` if missing (``apt-get update``
    first if needed); None if that failed."""
    found = shutil.which(binary)
    if found:
        return found
    log(f"{binary} is missing: apt-get install -y {package}")
    apt = ["sudo", "-n", "apt-get"] if os.geteuid() != 0 else ["apt-get"]
    env_ok = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*apt, "install", "-y", "--no-install-recommends", package]
    try:
        if not any(APT_LISTS.glob("*Packages*")) or subprocess.call(install, env=env_ok) != 0:
            subprocess.run([*apt, "update"], check=True, env=env_ok)
            subprocess.run(install, check=True, env=env_ok)
    except (OSError, subprocess.CalledProcessError) as problem:
        log(f"apt-get install {package} failed: {problem}")
    return shutil.which(binary)


def prism_command() -> list[str] | None:
    """How to run Prism: the copy in bench/.cache, else one on PATH, else None."""
    local = CACHE_DIR / "node_modules" / ".bin" / "prism"
    if local.exists():
        return [str(local)]
    on_path = shutil.which("prism")
    return [on_path] if on_path else None


def ensure_prism() -> tuple[list[str] | None, str]:
    """(command, note): Prism installed into bench/.cache from the npm registry if missing.

    The command is None when Prism cannot be had; the note then says why.
    """
    command = prism_command()
    if command is None:
        if not shutil.which("npm"):
            return None, "npm not found"
        log(f"installing {PRISM_PACKAGE} into {CACHE_DIR} (npm install --prefix)")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        done = run_quiet(
            ["npm", "install", "--prefix", str(CACHE_DIR), "--no-audit", "--no-fund", PRISM_PACKAGE]
        )
        command = prism_command()
        if done.returncode != 0 or command is None:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, "npm install failed: " + " | ".join(tail)
    version = run_quiet([*command, "--version"], timeout=60).stdout.strip()
    return command, f"prism {version}"


def ensure_matplotlib() -> bool:
    """True once matplotlib imports; installs bench/requirements.txt with pip when missing."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    log("matplotlib is missing: pip install -r bench/requirements.txt")
    requirements = str(BENCH_DIR / "requirements.txt")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "-r", requirements]
    if subprocess.call(pip) != 0:
        return False
    importlib.invalidate_caches()
    return importlib.util.find_spec("matplotlib") is not None


def ensure_py_spy() -> str | None:
    """py-spy (for ``--profile`` only; not a dependency of the project or the benchmark)."""
    here = Path(sys.executable).parent / "py-spy"
    if here.exists():
        return str(here)
    found = shutil.which("py-spy")
    if found:
        return found
    log("py-spy is missing: pip install py-spy (profiling only)")
    if subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"]) != 0:
        return None
    return str(here) if here.exists() else shutil.which("py-spy")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def source_state() -> str:
    """The commit benchmarked, and whether the work tree had changes then."""
    head = run_quiet(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = run_quiet(["git", "-C", str(REPO_DIR), "status", "--porcelain", "mock_runbase"])
    changed = " (mock_runbase/ modified)" if dirty.stdout.strip() else ""
    return (head or "unknown") + changed


def common_facts() -> dict[str, str]:
    """When, at which commit and on what machine a benchmark ran."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": source_state(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }


def machine_facts(wrk: str) -> dict[str, str]:
    wrk_version = run_quiet([wrk, "-v"]).stdout.strip().splitlines()
    node = run_quiet(["node", "--version"]).stdout.strip() if shutil.which("node") else "none"
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        **common_facts(),
        "uvicorn": package_version("uvicorn"),
        "starlette": package_version("starlette"),
        "uvloop": package_version("uvloop"),
        "httptools": package_version("httptools"),
        "wrk": wrk_version[0] if wrk_version else "unknown",
        "node": node,
        "load average at start": load,
    }
