"""The vLLM plugin entry point registers our backend where vLLM looks for it."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from vllm.v1.attention.backends.registry import AttentionBackendEnum

from switchyard.engine import plugin


def test_entry_point_is_installed() -> None:
    names = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert names.get("switchyard") == "switchyard.engine.plugin:register"


def test_register_is_idempotent_and_overrides_cpu_only_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = AttentionBackendEnum.CPU_ATTN.get_path()
    try:
        monkeypatch.delenv(plugin.ATTENTION_BACKEND_ENV, raising=False)
        plugin.register()
        assert AttentionBackendEnum.CUSTOM.get_path().endswith("SwitchyardAttentionBackend")
        assert AttentionBackendEnum.CPU_ATTN.get_path() == original

        monkeypatch.setenv(plugin.ATTENTION_BACKEND_ENV, "switchyard")
        plugin.register()
        plugin.register()
        assert AttentionBackendEnum.CPU_ATTN.get_path().endswith("SwitchyardCPUAttentionBackend")
    finally:
        from vllm.v1.attention.backends.registry import register_backend

        register_backend(AttentionBackendEnum.CPU_ATTN, original)
