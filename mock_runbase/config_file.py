"""The ``--config`` file: accounts, their keys, fault rules present from the start, and
``strict_keys``. TOML or YAML.

The file is checked whole before the mock starts: its shape by the pydantic models below
(``extra="forbid"``: a misspelled key such as ``balance`` or ``acounts`` is an error, with a
"did you mean" when a known key is close), each rule by the control API's ``MockRuleInput``
schema and the rule parser. Every problem names the file and the key path
(``mock.yaml: accounts.acme.keys[0].expires_at: ...``).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from mock_runbase.accounts import (
    KEY_PREFIX,
    MAX_IP_ALLOW_LIST,
    AccountSettings,
    ConfigError,
    Directory,
    KeySettings,
    usd_to_micro,
)
from mock_runbase.catalog import Catalog
from mock_runbase.control_spec import ControlSpec
from mock_runbase.own_media import MediaDirectory
from mock_runbase.rule_checks import RuleError, checked_rule

__all__ = [
    "CONTROL_KEY_FIELDS",
    "EMPTY",
    "ConfigFile",
    "KeyEntry",
    "LoadedConfig",
    "RuleProblem",
    "key_path",
    "key_settings",
    "load_config",
    "rule_checker",
]

CONTROL_KEY_FIELDS = {  # a key's fields in the control API (camelCase) -> here (snake_case)
    "key": "key",
    "spendLimitCents": "spend_limit_cents",
    "ipAllowList": "ip_allow_list",
    "disabled": "disabled",
    "expiresAt": "expires_at",
    "usageQuota": "usage_quota",
}

# A problem with one rule, as the control API would phrase it (None: the rule is good).
RuleCheck = Callable[[Mapping[str, Any]], "RuleProblem | None"]


@dataclass(frozen=True)
class RuleProblem:
    path: Sequence[str | int]  # inside the rule
    message: str


def api_key(value: str) -> str:
    if not re.fullmatch(rf"{KEY_PREFIX}[!-~]+", value):  # as a client sends it: Bearer sk-...
        raise PydanticCustomError(
            "api_key", "keys are 'sk-' then visible ASCII characters (no spaces)"
        )
    return value


def ip_entry(value: Any) -> str:
    text = str(value)
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PydanticCustomError(
            "ip", "{value} is not an IP address or CIDR network", {"value": repr(text)}
        ) from None
    return text


def account_name(value: str) -> str:
    if not value or "/" in value:
        raise PydanticCustomError("account", "an account name is not empty and has no '/'")
    return value


def key_shorthand(value: Any) -> Any:
    return {"key": value} if isinstance(value, str) else value


def empty_mapping(value: Any) -> Any:
    return {} if value is None else value


# Exact as a double too: the Redis store's scripts compare counts in Lua numbers.
Count = Annotated[int, Field(ge=0, le=10**15)]


class KeyEntry(BaseModel):
    """A key as the config file and ``PUT /_mock/accounts`` declare it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[str, AfterValidator(api_key)]
    spend_limit_cents: Count | None = None
    usage_quota: Count | None = None
    ip_allow_list: Annotated[
        list[Annotated[str, BeforeValidator(ip_entry)]], Field(max_length=MAX_IP_ALLOW_LIST)
    ] = []
    expires_at: datetime | None = None
    disabled: bool = False


class AccountEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    balance_usd: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] | None = None
    keys: list[Annotated[KeyEntry, BeforeValidator(key_shorthand)]] = []


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: dict[
        Annotated[str, AfterValidator(account_name)],
        Annotated[AccountEntry, BeforeValidator(empty_mapping)],
    ] = {}
    rules: list[dict[str, Any]] = []  # checked against the control API's MockRuleInput
    strict_keys: bool = False


@dataclass(frozen=True)
class LoadedConfig:
    file: ConfigFile
    path: Path | None = None

    @property
    def rules(self) -> list[dict[str, Any]]:
        return self.file.rules

    def directory(self, *, strict_keys: bool, default_balance_usd: int) -> Directory:
        directory = Directory(
            strict_keys=strict_keys or self.file.strict_keys,
            default_balance_usd=default_balance_usd,
        )
        for name, entry in self.file.accounts.items():
            balance = entry.balance_usd
            directory.accounts[name] = AccountSettings(
                name, default_balance_usd if balance is None else usd_to_micro(balance)
            )
            for key in entry.keys:
                directory.keys[key.key] = key_settings(name, key)
        return directory


EMPTY = LoadedConfig(ConfigFile())


def key_settings(account: str, entry: KeyEntry) -> KeySettings:
    expires = entry.expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # a time without a zone is UTC, as Runbase's
    return KeySettings(
        key=entry.key,
        account=account,
        spend_limit_cents=entry.spend_limit_cents,
        ip_allow_list=tuple(entry.ip_allow_list),
        disabled=entry.disabled,
        expires_ms=None if expires is None else round(expires.timestamp() * 1000),
        usage_quota=entry.usage_quota,
    )


def load_config(path: str | Path, check_rule: RuleCheck) -> LoadedConfig:
    """The file at ``path``, checked whole; ConfigError naming the file and every problem."""
    path = Path(path)
    data = read(path)
    try:
        config = ConfigFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(
            "\n".join(f"{path}: {problem}" for problem in shape_problems(error))
        ) from None
    problems = [
        f"{path}: {key_path(('rules', index, *problem.path))}: {problem.message}"
        for index, rule in enumerate(config.rules)
        if (problem := check_rule(rule)) is not None
    ]
    problems += [f"{path}: {problem}" for problem in duplicate_keys(config)]
    if problems:
        raise ConfigError("\n".join(problems))
    return LoadedConfig(config, path)


def read(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as stream:  # a YAML error names the stream's file
            data = (
                tomllib.loads(stream.read()) if path.suffix == ".toml" else yaml.safe_load(stream)
            )
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read: {error}") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        kind = "TOML" if path.suffix == ".toml" else "YAML"
        detail = " ".join(str(error).split())
        raise ConfigError(f"{path}: not valid {kind}: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (accounts, rules, strict_keys)")
    return data


def key_path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def shape_problems(error: ValidationError) -> list[str]:
    problems = []
    for detail in error.errors(include_url=False):
        loc = [part for part in detail["loc"] if part != "[key]"]
        if detail["type"] == "extra_forbidden":
            problems.append(f"{key_path(loc)}: {unknown_key(str(loc[-1]), allowed_at(loc[:-1]))}")
        else:
            message = detail["msg"].removeprefix("Value error, ")
            if detail["type"].startswith("datetime"):
                message += ", e.g. 2027-01-01T00:00:00Z"
            problems.append(f"{key_path(loc)}: {message} (got {detail['input']!r})")
    return problems


def unknown_key(name: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"not a known key; {hint}(allowed: {', '.join(allowed)})"


def allowed_at(loc: Sequence[str | int]) -> list[str]:
    """The keys of the model found at ``loc`` inside ``ConfigFile``."""
    found: Any = ConfigFile
    for part in loc:
        found = bare(found)
        if isinstance(found, type) and issubclass(found, BaseModel):
            found = found.model_fields[str(part)].annotation
        else:
            found = get_args(found)[-1]  # list[X] or dict[K, X]: X
    found = bare(found)
    if isinstance(found, type) and issubclass(found, BaseModel):
        return list(found.model_fields)
    return []


def bare(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` as ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation


def duplicate_keys(config: ConfigFile) -> list[str]:
    first: dict[str, str] = {}
    problems = []
    for name, entry in config.accounts.items():
        for index, key in enumerate(entry.keys):
            where = key_path(("accounts", name, "keys", index))
            if key.key in first:
                problems.append(
                    f"{where}: key ...{key.key[-4:]} is declared twice ({first[key.key]})"
                )
            else:
                first[key.key] = where
    return problems


def rule_checker(
    control: ControlSpec, catalog: Catalog, media: MediaDirectory | None = None
) -> RuleCheck:
    """Why a rule of the file cannot be added, as ``POST /_mock/rules`` would say
    (``rule_checks.checked_rule``; ``media`` is ``--media-dir``), a misspelled key with the
    closest known one."""
    schema = control.document["components"]["schemas"]["MockRuleInput"]
    validator = control.compile("#/components/schemas/MockRuleInput")

    def check(rule: Mapping[str, Any]) -> RuleProblem | None:
        misspelled = misspelled_key(schema, validator, rule)
        if misspelled is not None:
            return misspelled
        try:
            checked_rule(rule, catalog, validator, media)
        except RuleError as error:
            return RuleProblem(error.field.split(".") if error.field else [], error.message)
        return None

    return check


def misspelled_key(
    schema: Mapping[str, Any], validator: Any, rule: Mapping[str, Any]
) -> RuleProblem | None:
    """A key of ``rule`` the schema does not know, with the closest one it does."""
    for error in validator.iter_errors(rule):
        unexpected = getattr(error.kind, "unexpected", None)
        if unexpected:
            node: Any = schema
            for part in error.instance_path:
                node = node.get("properties", {}).get(part, {})
            name = str(unexpected[0])
            allowed = list(node.get("properties", {}))
            return RuleProblem([*error.instance_path, name], unknown_key(name, allowed))
    return None
