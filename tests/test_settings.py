"""Every setting of ``mock-runbase serve`` is checked before the mock starts: a bad flag, a bad
``MOCK_RUNBASE_*`` variable or a mistake in the ``--config`` file stops it with exit status 2 and
a message naming the setting as the user spelled it and what is allowed."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mock_runbase.accounts import ConfigError
from mock_runbase.cli import main
from mock_runbase.config_file import allowed_at, load_config, rule_checker
from mock_runbase.control_spec import load_control_spec
from mock_runbase.serve_options import (
    ServeOptions,
    SettingsError,
    load_serve_options,
    variable_name,
)
from mock_runbase.settings import MockSettings
from mock_runbase.spec import load_spec
from tests.served import Server

# setting -> a value it refuses, and words its message must hold
BAD_VALUES = {
    "timing": ("Fast", ["fast, instant, polls, realistic"]),
    "clock": ("Virtual", ["'real' or 'virtual'"]),
    "seed": ("-1", ["greater than or equal to 0"]),
    "rate_limit": ("abc", ["N/SECONDS", "20/10"]),
    "balance_usd": ("-1", ["greater than or equal to 0"]),
    "image_cache_mb": ("0", ["greater than or equal to 1"]),
    "journal_size": ("0", ["greater than or equal to 1"]),
    "run_ttl": ("0", ["greater than 0"]),
    "workers": ("0", ["greater than or equal to 1"]),
    "port": ("70000", ["less than or equal to 65535"]),
    "store": ("postgres://db", ["memory", "redis://host:port/db"]),
    "store_prefix": ("has space", ["letters, digits"]),
    "public_url": ("ftp://files", ["http(s)://host"]),
    "log_level": ("loud", ["'info'"]),
    "config": ("/nowhere/mock.yaml", ["no such file"]),
    "models": ("/nowhere/models.yaml", ["no such file"]),
    "spec": ("/", ["a directory, not a file"]),
    "replay": ("/nowhere/cassette.json", ["no such file"]),
    "state": ("/nowhere/state.json", ["no such directory: /nowhere"]),
    "no_rate_limit": ("perhaps", ["valid boolean"]),
    "strict_keys": ("perhaps", ["valid boolean"]),
    "cors": ("localhost:3000", ["not an origin", "scheme://host[:port]"]),
    "media_dir": ("/nowhere/media", ["no such directory"]),
    "replay_strict": ("perhaps", ["valid boolean"]),
}


@pytest.fixture(autouse=True)
def no_mock_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's own environment must not leak into these checks."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("MOCK_RUNBASE_"):
            monkeypatch.delenv(name)


def refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``mock-runbase serve ARGV`` in process; it must refuse (exit 2) before listening."""
    assert main(["serve", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_every_option_has_a_refused_value() -> None:
    assert set(BAD_VALUES) == set(ServeOptions.model_fields) - {"host", "admin_token"}


# no value to get wrong on the command line
SWITCHES = {"no_rate_limit", "strict_keys", "replay_strict"}


@pytest.mark.parametrize("field", sorted(set(BAD_VALUES) - SWITCHES))
def test_a_bad_flag_stops_serve_naming_the_flag(
    field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    value, words = BAD_VALUES[field]
    flag = "--" + field.replace("_", "-")
    error = refusal(capsys, flag, value)
    assert error.startswith(f"mock-runbase: {flag} "), error
    for word in words:
        assert word in error, error
    assert "parse_rate_limit" not in error and "Traceback" not in error


@pytest.mark.parametrize("field", sorted(BAD_VALUES))
def test_a_bad_variable_stops_serve_naming_the_variable(
    field: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    value, words = BAD_VALUES[field]
    monkeypatch.setenv(variable_name(field), value)
    error = refusal(capsys)
    assert error.startswith(f"mock-runbase: {variable_name(field)}="), error
    for word in words:
        assert word in error, error


@pytest.mark.parametrize("field", sorted(set(BAD_VALUES) - SWITCHES))
def test_a_flag_and_its_variable_get_the_same_verdict(
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    value, _ = BAD_VALUES[field]
    with pytest.raises(SettingsError) as by_flag:
        load_serve_options({field: value}, {})
    monkeypatch.setenv(variable_name(field), value)
    with pytest.raises(SettingsError) as by_variable:
        load_serve_options({}, {variable_name(field): value})
    assert str(by_flag.value).partition(": ")[2] == str(by_variable.value).partition(": ")[2]


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_RUNBASE_TIMING", "Fast")
    assert load_serve_options({"timing": "instant"}).timing == "instant"
    monkeypatch.setenv("MOCK_RUNBASE_TIMING", "fast")
    assert load_serve_options({}).timing == "fast"


def test_a_misspelled_variable_is_refused_with_the_closest_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOCK_RUNBASE_TIMNIG", "fast")
    error = refusal(capsys)
    assert "MOCK_RUNBASE_TIMNIG is not a setting" in error
    assert "did you mean MOCK_RUNBASE_TIMING?" in error


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--store-prefix", "team-a"], ["--store-prefix team-a", "needs a Redis store"]),
        (["--no-rate-limit", "--rate-limit", "5/1"], ["--rate-limit 5/1", "choose one"]),
        (["--workers", "2"], ["--workers 2 needs a shared store"]),
        (["--strict-keys"], ["no key declared", "every request would be refused 401"]),
        (
            ["--replay-strict"],
            ["--replay-strict answers only what a cassette recorded", "add --replay FILE"],
        ),
    ],
)
def test_settings_that_make_no_sense_together_are_refused(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    error = refusal(capsys, *argv)
    for word in words:
        assert word in error, error


def test_every_problem_is_reported_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    error = refusal(capsys, "--timing", "warp", "--balance-usd", "-1", "--run-ttl", "0")
    assert len(error.strip().splitlines()) == 3, error


def test_settings_made_in_code_follow_the_same_rules() -> None:
    for changes in ({"timing": "Fast"}, {"run_ttl_s": 0}, {"store_prefix": "x"}):
        with pytest.raises(ValidationError):
            MockSettings(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a timing profile"):
        replace(MockSettings(), timing="warp")
    assert MockSettings(rate_limit="5/1").rate_limit is not None  # type: ignore[arg-type]


# --- the config file -------------------------------------------------------------------------

VALID_CONFIG = {
    "strict_keys": False,
    "accounts": {
        "acme": {
            "balance_usd": 5,
            "keys": [
                {
                    "key": "sk-acme-prod",
                    "spend_limit_cents": 500,
                    "usage_quota": 100,
                    "ip_allow_list": ["203.0.113.7", "10.0.0.0/8"],
                    "expires_at": "2027-01-01T00:00:00Z",
                    "disabled": False,
                },
                "sk-acme-ci",
            ],
        },
        "beta": None,
    },
    "rules": [
        {
            "match": {"endpoint": "create", "resolution": "4K", "prompt_regex": "^test"},
            "effect": {"scenario": "fail", "code": "content_policy", "message": "no"},
            "times": 2,
            "probability": 0.5,
            "seed": 3,
        }
    ],
}

CHECK_RULE = rule_checker(load_control_spec(), load_spec().catalog)


def config_problem(tmp_path: Path, data: object, name: str = "mock.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else str(data))
    with pytest.raises(ConfigError) as refused:
        load_config(path, CHECK_RULE)
    message = str(refused.value)
    assert all(line.startswith(f"{path}: ") for line in message.splitlines()), message
    return message


def test_the_documented_example_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text(yaml.safe_dump(VALID_CONFIG))
    loaded = load_config(path, CHECK_RULE)
    directory = loaded.directory(strict_keys=False, default_balance_usd=100_000_000)
    assert directory.accounts["acme"].starting_balance_usd == 5_000_000
    assert directory.accounts["beta"].starting_balance_usd == 100_000_000
    prod = directory.keys["sk-acme-prod"]
    assert prod.expires_ms == 1798761600000
    assert prod.ip_allow_list == ("203.0.113.7", "10.0.0.0/8")
    assert directory.keys["sk-acme-ci"].account == "acme"
    assert len(loaded.rules) == 1


@pytest.mark.parametrize(
    ("path", "typo", "meant"),
    [
        ((), "acounts", "accounts"),
        ((), "strict_key", "strict_keys"),
        (("accounts", "acme"), "balance", "balance_usd"),
        (("accounts", "acme", "keys", 0), "spend_limit", "spend_limit_cents"),
        (("accounts", "acme", "keys", 0), "usage_qouta", "usage_quota"),
        (("rules", 0), "tims", "times"),
        (("rules", 0, "match"), "modle", "model"),
        (("rules", 0, "effect"), "scenaro", "scenario"),
    ],
)
def test_a_config_typo_is_refused_with_the_key_it_meant(
    tmp_path: Path, path: tuple[str | int, ...], typo: str, meant: str
) -> None:
    data = misspelled(VALID_CONFIG, path, meant, typo)
    message = config_problem(tmp_path, data)
    assert typo in message and f"did you mean {meant!r}" in message, message


def test_a_bad_value_names_its_key_path(tmp_path: Path) -> None:
    data = misspelled(VALID_CONFIG, ("accounts", "acme", "keys", 0), "expires_at", "expires_at")
    data["accounts"]["acme"]["keys"][0]["expires_at"] = "tomorrow"
    message = config_problem(tmp_path, data)
    assert "accounts.acme.keys[0].expires_at:" in message and "'tomorrow'" in message
    data["accounts"]["acme"]["keys"][0]["expires_at"] = "2027-01-01T00:00:00Z"
    data["accounts"]["acme"]["balance_usd"] = -5
    assert "accounts.acme.balance_usd: Input should be greater than or equal to 0" in (
        config_problem(tmp_path, data)
    )


def test_a_key_declared_twice_is_refused(tmp_path: Path) -> None:
    data = {"accounts": {"a": {"keys": ["sk-same"]}, "b": {"keys": ["sk-same"]}}}
    assert "accounts.b.keys[0]: key ...same is declared twice (accounts.a.keys[0])" in (
        config_problem(tmp_path, data)
    )


def test_a_bad_rule_in_the_file_names_it(tmp_path: Path) -> None:
    data = {"rules": [{"match": {}, "effect": {"scenario": "slw"}}]}
    message = config_problem(tmp_path, data)
    assert "rules[0].effect.scenario" in message and "slw" in message


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("mock.yaml", "accounts:\n  a: [\n", ["not valid YAML", "line 3"]),
        ("mock.toml", "[accounts\n", ["not valid TOML"]),
        ("mock.yaml", "- just\n- a list\n", ["top level must be a mapping"]),
    ],
)
def test_a_file_that_does_not_parse_is_named(
    tmp_path: Path, name: str, text: str, words: list[str]
) -> None:
    message = config_problem(tmp_path, text, name)
    for word in words:
        assert word in message, message


def test_serve_refuses_a_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text("accounts:\n  acme:\n    balance: 5\n")
    error = refusal(capsys, "--config", str(path))
    assert f"{path}: accounts.acme.balance: not a known key; did you mean 'balance_usd'?" in error


def misspelled(data: dict, path: tuple[str | int, ...], key: str, typo: str) -> dict:  # type: ignore[type-arg]
    """A copy of ``data`` whose mapping at ``path`` has ``key`` renamed ``typo``."""
    copy = yaml.safe_load(yaml.safe_dump(data))
    node = copy
    for part in path:
        node = node[part]
    node[typo] = node.pop(key) if key in node else 1
    return copy  # type: ignore[no-any-return]


def key_paths(node: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """The path of every key of every mapping inside ``node`` (account names excepted: any
    name is a valid account)."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if path != ("accounts",):
                found.append((*path, key))
            found += key_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += key_paths(value, (*path, index))
    return found


def typos(word: str) -> st.SearchStrategy[str]:
    """One slip of the keyboard: a letter dropped, doubled, swapped or changed."""
    positions = st.integers(0, len(word) - 1)
    letters = st.sampled_from("abcdefghijklmnopqrstuvwxyz_")
    return st.one_of(
        positions.map(lambda i: word[:i] + word[i + 1 :]),
        positions.map(lambda i: word[:i] + word[i] + word[i:]),
        positions.filter(lambda i: i < len(word) - 1).map(
            lambda i: word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        ),
        st.tuples(positions, letters).map(lambda p: word[: p[0]] + p[1] + word[p[0] + 1 :]),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_misspelled_key_anywhere_is_refused_naming_it(data: st.DataObject) -> None:
    import tempfile

    path = data.draw(st.sampled_from(key_paths(VALID_CONFIG)), label="key")
    typo = data.draw(typos(str(path[-1])).filter(lambda t: t != path[-1] and t), label="typo")
    parent = path[:-1]
    siblings = set(misspelled_parent(VALID_CONFIG, parent))
    if typo in siblings or typo in known_keys_at(parent):
        return  # another real key of that mapping, not a misspelling
    broken = misspelled(VALID_CONFIG, parent, str(path[-1]), typo)
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "mock.yaml"
        target.write_text(yaml.safe_dump(broken))
        with pytest.raises(ConfigError) as refused:
            load_config(target, CHECK_RULE)
    message = str(refused.value)
    assert re.search(rf"\b{re.escape(typo)}\b", message), message


def misspelled_parent(data: dict, path: tuple[str | int, ...]) -> dict:  # type: ignore[type-arg]
    node = data
    for part in path:
        node = node[part]
    return node


def known_keys_at(path: tuple[str | int, ...]) -> set[str]:
    """Every key the file or a rule may have at ``path`` (a typo may land on one)."""
    if path and path[0] == "rules":
        schema = load_control_spec().document["components"]["schemas"]["MockRuleInput"]
        for part in path[2:]:
            schema = schema["properties"][part]
        return set(schema["properties"])
    return set(allowed_at(path))


# --- the start-up summary --------------------------------------------------------------------


def test_serve_prints_what_it_loaded(tmp_path: Path) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text(yaml.safe_dump(VALID_CONFIG))
    server = Server("--config", str(path), "--clock", "virtual", "--timing", "fast")
    _, output = server.stop()
    summary = output[: output.index("try:")]
    for expected in (
        f"http://localhost:{server.port}/_mock/ui",
        f"http://localhost:{server.port}/docs",
        "models:     15 (8 image, 7 video)",
        "accounts:   2 declared (acme $5.00, beta $100.00), 2 keys",
        "rules:      1 from --config",
        "timing:     fast",
        "clock:      virtual, at 2026-06-01T12:00:00.000Z",
        "rate limit: 20 requests per 10 s per key",
        "store:      memory",
    ):
        assert expected in summary, summary


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("A config file (`--config mock.yaml`):") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", 8)]
    path = tmp_path / "mock.yaml"
    path.write_text(example)
    directory = load_config(path, CHECK_RULE).directory(
        strict_keys=False, default_balance_usd=100_000_000
    )
    assert set(directory.keys) == {"sk-acme-prod", "sk-acme-old", "sk-acme-ci"}
