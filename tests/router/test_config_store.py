"""The config in force: routers and health settings change live, the rest at restart."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchyard.router.config import ConfigError, parse_config
from switchyard.router.config_store import ConfigStore
from switchyard.router.routing.health import HealthBoard


def _router(model: str) -> dict[str, Any]:
    return {"default_route": {"variants": [{"id": "only", "model": model, "weight": 100}]}}


def _data(**overrides: Any) -> dict[str, Any]:
    return {
        "providers": {"openai": {"api_key_env": "KEY", "models": ["gpt-5.5", "gpt-5.5-mini"]}},
        "routers": {"chat": _router("openai/gpt-5.5")},
        **overrides,
    }


def _store(path: Path | None = None) -> tuple[ConfigStore, HealthBoard]:
    health = HealthBoard()
    return ConfigStore(parse_config(_data()), health, str(path) if path else None), health


def test_replaced_routers_are_in_force_and_in_the_data_later_changes_build_on() -> None:
    store, _ = _store()
    store.replace_routers({"mini": _router("openai/gpt-5.5-mini")})
    assert list(store.routing.routers) == ["mini"]
    assert list(store.config.routers) == ["mini"]
    assert list(store.data["routers"]) == ["mini"]


def test_invalid_routers_change_nothing() -> None:
    store, _ = _store()
    routing, config, data = store.routing, store.config, store.data
    with pytest.raises(ConfigError, match="not a configured provider's model"):
        store.replace_routers({"chat": _router("openai/gpt-6")})
    assert (store.routing, store.config, store.data) == (routing, config, data)


def test_a_reload_takes_routers_and_health_and_leaves_the_rest_for_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "router.yaml"
    store, health = _store(path)
    path.write_text(
        yaml.safe_dump(
            _data(
                routers={"mini": _router("openai/gpt-5.5-mini")},
                health={"failure_threshold": 7, "cooldown_s": 2.5},
                max_body_bytes=10,
            )
        )
    )
    store.reload()
    assert list(store.routing.routers) == ["mini"]
    assert (health.failure_threshold, health.cooldown_s) == (7, 2.5)
    assert store.config.max_body_bytes == parse_config(_data()).max_body_bytes


def test_a_reload_without_a_file_is_refused() -> None:
    store, _ = _store()
    with pytest.raises(ConfigError, match="not started from a config file"):
        store.reload()


def test_a_bad_file_on_sighup_is_logged_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "router.yaml"
    store, _ = _store(path)
    routing = store.routing
    path.write_text("routers: [")
    with caplog.at_level(logging.ERROR):
        store.reload_or_log()
    assert store.routing is routing
    assert "reload refused" in caplog.text
