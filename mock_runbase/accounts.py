"""Accounts and API keys: their settings (from a config file), auth, and the money checks.

Settings are declared in ``--config`` (or implied for any ``sk-`` key when keys are not
strict) and changed at run time by ``PUT /_mock/accounts/{name}``: those changes are
``AccountOverride``s kept in the store, laid over the config's directory
(``with_overrides``), so every process sharing a store sees them. A PUT's ``keys`` are the
account's keys from then on: a key it drops is revoked (401, as a disabled key), never
turned into an implicit key of an account of its own. What changes with use
(spend, refunds, usage) lives in the store's ledgers. The checks here are pure functions of
both, so every store applies exactly the same rules.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

from mock_runbase.errors import RunbaseError

__all__ = [
    "AccountOverride",
    "AccountSettings",
    "ConfigError",
    "Directory",
    "KeySettings",
    "Ledger",
    "check_charge",
    "check_ip",
    "insufficient_balance",
    "key_from_data",
    "key_from_header",
    "merged_override",
    "spend_limit_exceeded",
    "spend_limit_micro",
    "usage_exceeded",
    "usd_to_micro",
    "with_overrides",
]

KEY_PREFIX = "sk-"
MAX_IP_ALLOW_LIST = 10
MICRO = 1_000_000


class ConfigError(ValueError):
    """The config file cannot be used; the message names the entry and the problem."""


def usd_to_micro(usd: float | int | str) -> int:
    return round(float(usd) * MICRO)


@dataclass(frozen=True)
class KeySettings:
    key: str
    account: str
    spend_limit_cents: int | None = None
    ip_allow_list: tuple[str, ...] = ()
    disabled: bool = False
    expires_ms: int | None = None
    usage_quota: int | None = None

    @property
    def last4(self) -> str:
        return self.key[-4:]

    def allows_ip(self, client_ip: str | None) -> bool:
        if not self.ip_allow_list:
            return True
        if client_ip is None:
            return False
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        return any(
            address in ipaddress.ip_network(entry, strict=False) for entry in self.ip_allow_list
        )


@dataclass(frozen=True)
class AccountSettings:
    name: str
    starting_balance_usd: int  # micro-USD


@lru_cache(maxsize=16384)  # an undeclared account's settings: not built again on each create
def default_account(name: str, starting_balance_usd: int) -> AccountSettings:
    return AccountSettings(name=name, starting_balance_usd=starting_balance_usd)


@dataclass
class Ledger:
    """What an account or a key has been charged and refunded (micro-USD), and its usage."""

    charged: int = 0
    refunded: int = 0
    runs: int = 0

    @property
    def net_spent(self) -> int:
        return self.charged - self.refunded


@dataclass
class Directory:
    """Every account and key the mock knows, and the rule for keys it does not."""

    accounts: dict[str, AccountSettings] = field(default_factory=dict)
    keys: dict[str, KeySettings] = field(default_factory=dict)
    strict_keys: bool = False
    default_balance_usd: int = 100 * MICRO
    revoked: dict[str, str] = field(default_factory=dict)  # key -> the account that dropped it

    def authenticate(self, authorization: str | None, now_ms: int) -> KeySettings:
        token = key_from_header(authorization)
        declared = self.keys.get(token)
        if declared is None:
            if self.strict_keys or not token.startswith(KEY_PREFIX) or token in self.revoked:
                raise RunbaseError(
                    401, "invalid_api_key", "API key is invalid, disabled or expired"
                )
            return self.implicit_key(token)
        if declared.disabled or (declared.expires_ms is not None and declared.expires_ms <= now_ms):
            raise RunbaseError(401, "invalid_api_key", "API key is invalid, disabled or expired")
        return declared

    def account_of(self, authorization: str | None) -> str | None:
        """The account an Authorization header names, or None; never raises."""
        try:
            token = key_from_header(authorization)
        except RunbaseError:
            return None
        declared = self.keys.get(token)
        if declared is not None:
            return declared.account
        if token in self.revoked:
            return self.revoked[token]
        if self.strict_keys or not token.startswith(KEY_PREFIX):
            return None
        return self.implicit_key(token).account

    def keys_of(self, account: str) -> list[KeySettings]:
        return [key for key in self.keys.values() if key.account == account]

    def implicit_key(self, token: str) -> KeySettings:
        """An undeclared ``sk-`` key owns an account of its own, named after its hash."""
        return implicit_key(token)

    def account(self, name: str) -> AccountSettings:
        found = self.accounts.get(name)
        return found or default_account(name, self.default_balance_usd)

    def listed_keys(self, account: str, used: list[str]) -> list[KeySettings]:
        """The keys an account lists: its declared ones, and of the keys ``used`` on it (its
        ledger's), the implicit key it is named after; never a key it dropped."""
        keys = self.keys_of(account)
        declared = {key.key for key in keys}
        for token in used:
            if token not in declared and token not in self.keys and token not in self.revoked:
                implied = self.implicit_key(token)
                if implied.account == account:
                    keys.append(implied)
        return keys


@dataclass(frozen=True)
class AccountOverride:
    """An account as ``PUT /_mock/accounts/{name}`` left it: its starting balance and, when
    given, the keys that replace its declared ones; ``dropped``, the keys earlier PUTs gave
    it and later ones took away (the config's own are known from the config)."""

    starting_balance_usd: int
    keys: tuple[KeySettings, ...] | None = None
    dropped: tuple[str, ...] = ()

    def to_data(self) -> dict[str, Any]:
        keys = None if self.keys is None else [asdict(key) for key in self.keys]
        data = {"startingBalanceUsd": self.starting_balance_usd, "keys": keys}
        return {**data, "dropped": list(self.dropped)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AccountOverride:
        keys = data.get("keys")
        return cls(
            starting_balance_usd=int(data["startingBalanceUsd"]),
            keys=None if keys is None else tuple(key_from_data(key) for key in keys),
            dropped=tuple(data.get("dropped") or ()),
        )


def merged_override(old: AccountOverride | None, new: AccountOverride) -> AccountOverride:
    """``new``, keeping ``old``'s keys when ``new`` does not replace them, and remembering
    every key a PUT gave the account that the latest keys no longer hold."""
    if old is None:
        return new
    if new.keys is None:
        return replace(new, keys=old.keys, dropped=old.dropped)
    held = {key.key for key in new.keys}
    given = {*old.dropped, *(key.key for key in old.keys or ())}
    return replace(new, dropped=tuple(sorted(given - held)))


def key_from_data(data: Mapping[str, Any]) -> KeySettings:
    return KeySettings(**{**data, "ip_allow_list": tuple(data.get("ip_allow_list") or ())})


def with_overrides(base: Directory, overrides: Mapping[str, AccountOverride]) -> Directory:
    """The directory in effect: the config's, with the account overrides laid over it.

    Keys are replaced in two passes (drop every overridden account's keys, then add the
    new ones), so the result does not depend on the order of the overrides. A dropped key
    that no account holds any more is revoked. Raises ConfigError if an override claims a
    key another account holds.
    """
    accounts = dict(base.accounts)
    replaced = {name for name, override in overrides.items() if override.keys is not None}
    keys = {token: key for token, key in base.keys.items() if key.account not in replaced}
    dropped = {token: key.account for token, key in base.keys.items() if token not in keys}
    for name, override in overrides.items():
        accounts[name] = AccountSettings(name, override.starting_balance_usd)
        dropped.update(dict.fromkeys(override.dropped, name))
        for key in override.keys or ():
            owner = keys.get(key.key)
            if owner is not None and owner.account != name:
                raise ConfigError(f"key ...{key.last4} belongs to account {owner.account!r}")
            keys[key.key] = key
    revoked = {token: name for token, name in dropped.items() if token not in keys}
    return replace(base, accounts=accounts, keys=keys, revoked=revoked)


@lru_cache(maxsize=16384)  # hashed once per key, not once per request
def implicit_key(token: str) -> KeySettings:
    name = "acct_" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return KeySettings(key=token, account=name)


def key_from_header(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise RunbaseError(
            401, "missing_api_key", "Missing API key: send the header Authorization: Bearer sk-..."
        )
    return token


def check_ip(key: KeySettings, client_ip: str | None) -> None:
    if not key.allows_ip(client_ip):
        raise RunbaseError(
            403, "ip_not_allowed", f"IP address {client_ip} is not allowed for this API key"
        )


def check_charge(
    key: KeySettings,
    key_ledger: Ledger,
    account: AccountSettings,
    account_ledger: Ledger,
    cost_usd: int,
) -> None:
    """Quota, then the key's spend limit, then the balance; raises the first that fails.

    ``redis_store.CREATE`` applies the same three checks inside Redis (tests/test_store.py
    holds both to the same outcomes)."""
    if key.usage_quota is not None and key_ledger.runs >= key.usage_quota:
        raise usage_exceeded()
    limit = spend_limit_micro(key)
    if limit is not None and key_ledger.net_spent >= limit:
        raise spend_limit_exceeded()
    balance = account.starting_balance_usd - account_ledger.net_spent
    if balance < cost_usd:
        raise insufficient_balance(cost_usd, balance)


def spend_limit_micro(key: KeySettings) -> int | None:
    return None if key.spend_limit_cents is None else key.spend_limit_cents * 10_000


def usage_exceeded() -> RunbaseError:
    return RunbaseError(429, "USAGE_EXCEEDED", "Usage quota exceeded for this API key")


def spend_limit_exceeded() -> RunbaseError:
    return RunbaseError(403, "api_key_spend_limit_exceeded", "API key spend limit exceeded")


def insufficient_balance(cost_usd: int, balance: int) -> RunbaseError:
    return RunbaseError(
        402,
        "insufficient_balance",
        f"Insufficient balance: this run costs {cost_usd} micro-USD, the balance is {balance}",
    )
