"""Config validation: every error names the field to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchyard.router.config import ConfigError, config_schema, load_config, parse_config

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
        ({"providers": {"Local": {"models": ["m"]}}}, "providers.Local"),
        ({"providers": {"router": {"models": ["m"]}}}, "providers.router"),
        ({"providers": {"local": {"models": ["m"]}}}, "providers.local.protocol"),
        (
            {"providers": {"local": {"protocol": "openai", "models": ["m"]}}},
            "providers.local.base_url",
        ),
        ({"providers": {"openai": {"models": []}}}, "providers.openai.models"),
        ({"providers": {"openai": {"models": [" "]}}}, "providers.openai.models"),
        (
            {"providers": {"openai": {"models": ["m"], "base_url": "ftp://x"}}},
            "providers.openai.base_url",
        ),
        (
            {"providers": {"openai": {"models": ["m"], "protocol": "soap"}}},
            "providers.openai.protocol",
        ),
        # A key in the file would end up in version control: only its variable's name goes there.
        (
            {"providers": {"openai": {"models": ["m"], "api_key": "sk-x"}}},
            "providers.openai.api_key",
        ),
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


def test_providers_take_catalog_defaults_and_keys_from_the_environment() -> None:
    config = parse_config(
        {
            "providers": {
                "anthropic": {"models": ["claude-opus-4-7"]},
                "mine": {
                    "protocol": "openai",
                    "base_url": "http://127.0.0.1:8000/v1/",
                    "api_key_env": "MINE_KEY",
                    "models": ["llama"],
                },
                "local": {
                    "protocol": "openai",
                    "base_url": "http://127.0.0.1:8001/v1",
                    "models": ["x"],
                },
            }
        }
    )
    anthropic, mine, local = config.resolve_providers({"ANTHROPIC_API_KEY": "a", "MINE_KEY": "m"})
    assert (anthropic.protocol, anthropic.base_url, anthropic.api_key) == (
        "anthropic",
        "https://api.anthropic.com/v1",
        "a",
    )
    assert (mine.base_url, mine.api_key, mine.models) == (
        "http://127.0.0.1:8000/v1",
        "m",
        ("llama",),
    )
    assert local.api_key is None  # no variable named: a local server without auth
    with pytest.raises(ConfigError) as error:
        config.resolve_providers({"MINE_KEY": "m"})
    assert str(error.value).startswith("providers.anthropic.api_key_env")
    assert "ANTHROPIC_API_KEY" in str(error.value)


def test_example_config_loads_with_and_without_its_providers(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "router.example.yaml"
    assert load_config(example).providers == {}
    lines = example.read_text().splitlines()
    start = lines.index("# providers:")
    uncommented = lines[:start] + [line.removeprefix("# ") for line in lines[start:]]
    path = tmp_path / "router.yaml"
    path.write_text("\n".join(uncommented))
    config = load_config(path)
    keys = {"OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}
    resolved = {p.name: p for p in config.resolve_providers(keys)}
    assert sorted(resolved) == ["anthropic", "google-ai-studio", "my-vllm", "openai"]
    assert resolved["my-vllm"].api_key is None


def test_the_published_json_schema_is_current() -> None:
    published = Path(__file__).parents[2] / "docs" / "router-config.schema.json"
    assert published.read_text() == config_schema(), (
        "regenerate it: switchyard router schema > docs/router-config.schema.json"
    )


def test_the_schema_describes_the_routers_section() -> None:
    schema = json.loads(config_schema())
    assert "routers" in schema["properties"]
    variant = schema["$defs"]["VariantConfig"]
    assert {"id", "model", "weight"} <= set(variant["required"])
