"""Config validation: every error names the field to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.router.config import ConfigError, load_config, parse_config

ENGINE = {"target": "127.0.0.1:50051"}


def test_defaults() -> None:
    config = parse_config({"engines": [ENGINE]})
    assert config.max_body_bytes == 4 << 20
    assert config.engines[0].label == "127.0.0.1:50051"
    assert config.auth.resolve_keys({"SWITCHYARD_API_KEYS": " a, b ,,"}) == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "engines"),
        ({"engines": []}, "engines"),
        ({"engines": [{"target": "no-port"}]}, "engines[0].target"),
        ({"engines": [ENGINE, {"target": "h:99999"}]}, "engines[1].target"),
        ({"engines": [{"name": "a"}]}, "engines[0].target"),
        ({"engines": [{**ENGINE, "modle": "x"}]}, "engines[0].modle"),
        ({"engines": [ENGINE], "max_body_bytes": 0}, "max_body_bytes"),
        ({"engines": [ENGINE], "request_timeout_s": -1}, "request_timeout_s"),
        ({"engines": [ENGINE], "auth": {"keys": ["k"], "keys_env": "X"}}, "auth"),
        ({"engines": [ENGINE], "auth": {"keys": [""]}}, "auth"),
        ({"engines": [ENGINE, ENGINE]}, "engines[1]"),
    ],
)
def test_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert str(error.value).startswith(field), str(error.value)


def test_load_yaml(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(
        "engines:\n  - name: small\n    target: 127.0.0.1:50051\n"
        "auth:\n  keys_env: MY_KEYS\nrequest_timeout_s: 30\n"
    )
    config = load_config(path)
    assert config.engines[0].label == "small"
    assert config.auth.resolve_keys({"MY_KEYS": "k1"}) == ["k1"]
    assert config.request_timeout_s == 30


def test_load_reports_bad_yaml_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("engines: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
