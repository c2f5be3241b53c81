"""The typed configuration: defaults, precedence, and errors naming source, field, value, expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from raylens.config import (
    DEFAULT_LISTEN_ADDRESS,
    ConfigError,
    RaylensConfig,
    load_config,
    parse_listen_address,
)


def write(tmp_path: Path, data: object, name: str = "raylens.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_without_file_or_environment() -> None:
    config = load_config(None, environ={})
    assert config == RaylensConfig()
    assert config.exporter.listen_address == DEFAULT_LISTEN_ADDRESS
    assert config.exporter.collectors == ("node",)
    assert (config.log.level, config.log.format) == ("info", "json")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), environ={}) == RaylensConfig()


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"log": {"level": "error", "format": "text"}})
    environ = {"RAYLENS_LOG_LEVEL": "warning", "RAYLENS_COLLECTORS": "node"}
    config = load_config(path, environ=environ)
    assert config.log.level == "warning"
    assert config.log.format == "text"
    config = load_config(path, environ=environ, overrides={("log", "level"): ("flag --log.level", "debug")})
    assert config.log.level == "debug"


def test_every_problem_is_reported_at_once_with_its_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "exporter": {"listen_address": "nonsense", "collectors": ["node", "nope"]},
            "log": {"level": "loud"},
            "node": {"market": "reserved", "colour": "blue"},
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"RAYLENS_LOG_FORMAT": "xml"})
    problems = {problem.field: problem for problem in caught.value.problems}
    assert set(problems) == {
        "exporter.listen_address",
        "exporter.collectors.1",
        "log.level",
        "log.format",
        "node.market",
        "node.colour",
    }
    assert problems["log.format"].source == "environment variable RAYLENS_LOG_FORMAT"
    assert all(problems[field].source == str(path) for field in problems if field != "log.format")
    message = str(caught.value)
    assert "6 problems" in message
    assert f"{path}: exporter.listen_address: got 'nonsense': expected host:port" in message
    assert f"{path}: log.level: got 'loud': expected 'debug', 'info', 'warning' or 'error'" in message
    assert "node.colour: got 'blue': unknown field; expected one of:" in message
    assert "market" in problems["node.colour"].expected


def test_invalid_regex_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"node": {"disk_device_exclude": "(unclosed"}}), environ={})
    assert caught.value.problems[0].field == "node.disk_device_exclude"
    assert "regular expression" in caught.value.problems[0].expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exporter: [1, 2", ": line 2: not valid YAML, column 1"),
        ("- a\n- b\n", "expected a mapping of sections at the top level"),
        ("exporter: 5\n", "exporter: got 5"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.yaml", environ={})


@pytest.mark.parametrize(
    ("address", "expected"),
    [(":9965", ("", 9965)), ("127.0.0.1:1", ("127.0.0.1", 1)), ("[::1]:9965", ("::1", 9965))],
)
def test_listen_addresses(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_listen_address_is_accepted_only_when_parseable(address: str) -> None:
    try:
        _host, port = parse_listen_address(address)
    except ValueError:
        with pytest.raises(ConfigError) as caught:
            load_config(
                None,
                environ={"RAYLENS_WEB_LISTEN_ADDRESS": address} if address else {},
                overrides={("exporter", "listen_address"): ("flag --web.listen-address", address)},
            )
        assert caught.value.problems[0].field == "exporter.listen_address"
        assert caught.value.problems[0].source == "flag --web.listen-address"
        return
    assert 0 < port < 65536
    config = load_config(None, environ={}, overrides={("exporter", "listen_address"): ("flag", address)})
    assert config.exporter.listen_address == address


SECTIONS = {
    "exporter": ["listen_address", "web_config_file", "collectors"],
    "log": ["level", "format"],
    "node": ["hostname", "ray_node_id", "instance_type", "market", "disk_device_exclude"],
}
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(SECTIONS)).flatmap(lambda s: st.tuples(st.just(s), st.sampled_from(SECTIONS[s]))),
    values,
)
def test_any_value_either_loads_or_fails_naming_that_field(
    tmp_path_factory: pytest.TempPathFactory, field: tuple[str, str], value: object
) -> None:
    section, key = field
    path = write(tmp_path_factory.mktemp("cfg"), {section: {key: value}})
    try:
        config = load_config(path, environ={})
    except ConfigError as error:
        assert error.problems, "an error must carry at least one problem"
        for problem in error.problems:
            assert problem.source == str(path)
            assert problem.field.startswith(f"{section}.{key}")
            assert problem.expected
            assert str(path) in str(error) and problem.field in str(error)
        return
    # Accepted: the other sections keep their defaults, nothing else was touched.
    defaults = RaylensConfig()
    for other in SECTIONS:
        if other != section:
            assert getattr(config, other) == getattr(defaults, other)


def test_config_check_command(tmp_path: Path) -> None:
    good = write(tmp_path, {"log": {"level": "debug"}}, "good.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "raylens", "config", "check", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"{good}: OK" in result.stdout
    bad = write(tmp_path, {"log": {"level": "loud"}, "exporter": {"listen_address": "x"}}, "bad.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "raylens", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid configuration (2 problems)" in result.stderr
    assert f"{bad}: log.level: got 'loud'" in result.stderr
