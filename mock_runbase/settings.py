"""Everything ``mock-runbase serve`` can be told, with the defaults a local user wants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mock_runbase.accounts import MICRO
from mock_runbase.ratelimit import DOCUMENTED, RateLimit

__all__ = ["MockSettings"]


@dataclass(frozen=True)
class MockSettings:
    timing: str = "realistic"  # a key of runs.TIMING_PROFILES
    clock: str = "real"  # "real" or "virtual"
    seed: int = 0
    rate_limit: RateLimit | None = field(default=DOCUMENTED)
    balance_usd: int = 100 * MICRO  # micro-USD for each account not declared in --config
    config: Path | None = None
    strict_keys: bool = False
    public_url: str | None = None
    image_cache_mb: int = 256
    max_body_bytes: int = 32 * 1024 * 1024
    spec: Path | None = None
    models: Path | None = None  # a YAML file of new and changed models (user_catalog)
    admin_token: str | None = None  # when set, every /_mock call must send it
    journal_size: int = 1000
    store: str = "memory"  # or redis://host:port/db, shared by every worker and replica
    store_prefix: str | None = None  # Redis key namespace (None: the store's own default)
    run_ttl_s: float = 24 * 3600  # runs are forgotten this long after they were created
