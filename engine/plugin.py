"""The ``vllm.general_plugins`` entry point: how our patches reach every vLLM process.

vLLM loads general plugins in the API process, the engine core and every worker, so a
registration made here holds wherever attention layers are built. Registering is
idempotent (it only records class paths) and imports nothing heavy.
"""

from __future__ import annotations

import os

# Set by `switchyard engine serve --attention-backend switchyard`; inherited by the engine
# core and worker processes vLLM spawns.
ATTENTION_BACKEND_ENV = "SWITCHYARD_ATTENTION_BACKEND"
BACKEND_MODULE = "switchyard.engine.attention.backend"


def register() -> None:
    from vllm.platforms import current_platform
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    register_backend(AttentionBackendEnum.CUSTOM, f"{BACKEND_MODULE}.SwitchyardAttentionBackend")
    if current_platform.is_cpu():
        # Before vLLM registers its CPU kernel stand-ins, which one of these corrects.
        from switchyard.engine.vllm_fixes import apply_cpu_fixes

        apply_cpu_fixes()
    if os.environ.get(ATTENTION_BACKEND_ENV) == "switchyard" and current_platform.is_cpu():
        # The CPU platform always picks CPU_ATTN, whatever backend was selected; stand in
        # for it so the same engine runs our backend end to end.
        register_backend(
            AttentionBackendEnum.CPU_ATTN, f"{BACKEND_MODULE}.SwitchyardCPUAttentionBackend"
        )
