"""What one benchmark run measured: filled in by suite.py, rendered by report.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from loadgen import WrkResult

__all__ = ["Outcome", "Probe", "Results"]

Outcome = WrkResult | str  # a measurement, or why there is none ("n/a: ...")


@dataclass(frozen=True)
class Probe:
    label: str
    value: float | None
    unit: str
    note: str = ""


@dataclass
class Results:
    machine: dict[str, str]
    settings: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)  # target name -> label, in run order
    load: dict[str, dict[str, Outcome]] = field(default_factory=dict)  # workload -> target ->
    fixed: dict[str, Outcome] = field(default_factory=dict)  # target -> paced mix
    rate: int = 500
    probes: dict[str, Probe] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)  # Redis target -> "Redis, 2 workers"
    spread: dict[str, list[int]] = field(default_factory=dict)  # target -> wrk conns per worker

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
