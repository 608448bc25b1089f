"""What one benchmark run measured: filled in by suite.py, rendered by report.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from loadgen import WrkResult

__all__ = ["Outcome", "Probe", "Render", "Results", "StallTest", "StoredLevel"]

Outcome = WrkResult | str  # a measurement, or why there is none ("n/a: ...")


@dataclass(frozen=True)
class Probe:
    label: str
    value: float | None
    unit: str
    note: str = ""


@dataclass(frozen=True)
class StoredLevel:
    """A mock holding many runs: how it was filled, its RSS, and the workloads then."""

    wanted: int
    held: int  # runs stored when the workloads started
    held_after: int  # ... and when they ended (the create workload adds runs)
    filled: int  # runs the fill created
    fill_s: float
    rss_mb: float  # right after the fill
    load: dict[str, Outcome]  # workload -> result (the round of median requests/s)
    rounds: dict[str, list[Outcome]] = field(default_factory=dict)  # workload -> each round

    @property
    def fill_rate(self) -> float:
        return self.filled / self.fill_s if self.fill_s else 0.0


@dataclass(frozen=True)
class Render:
    what: str  # "4K PNG", "1080p MP4"
    started_s: float  # after the measured poll run began
    took_s: float  # the GET that rendered it, or NaN if it failed


@dataclass(frozen=True)
class StallTest:
    """Polls with nothing rendering, then the same while fresh media render."""

    idle: Outcome
    rendering: Outcome
    renders: list[Render]


@dataclass
class Results:
    machine: dict[str, str]
    settings: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)  # target name -> label, in run order
    load: dict[str, dict[str, Outcome]] = field(default_factory=dict)  # workload -> target ->
    fixed: dict[str, Outcome] = field(default_factory=dict)  # target -> paced mix
    rounds: list[str] = field(default_factory=list)  # each round's requests/s, when several
    rate: int = 500
    probes: dict[str, Probe] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)  # Redis target -> "Redis, 2 workers"
    spread: dict[str, list[int]] = field(default_factory=dict)  # target -> wrk conns per worker
    stored: list[StoredLevel] = field(default_factory=list)  # fewest runs first
    rss_start_mb: float | None = None  # of the stored-runs mock, before it held any run
    stall: StallTest | None = None

    def outcome(self, workload: str, target: str) -> Outcome:
        return self.load.get(workload, {}).get(target, "not run")

    def rps(self, workload: str, target: str) -> float | None:
        found = self.outcome(workload, target)
        return found.rps if isinstance(found, WrkResult) and found.requests else None

    def value(self, probe: str) -> float | None:
        found = self.probes.get(probe)
        return found.value if found else None

    def add(self, key: str, label: str, value: float | None, unit: str, note: str = "") -> None:
        self.probes[key] = Probe(label, value, unit, note)
