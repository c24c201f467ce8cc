"""The ``vllm.general_plugins`` entry point: how our patches reach every vLLM process.

vLLM loads general plugins in the API process, the engine core and every worker, so a
registration made here holds wherever attention and linear layers are built. Registering
is idempotent and imports nothing heavy: what needs a heavy vLLM module is deferred until
vLLM imports that module itself (``engine/import_hooks.py``).
"""

from __future__ import annotations

import os
from types import ModuleType

from switchyard.engine.import_hooks import after_import

# Set by `switchyard engine serve --attention-backend switchyard`; inherited by the engine
# core and worker processes vLLM spawns.
ATTENTION_BACKEND_ENV = "SWITCHYARD_ATTENTION_BACKEND"
BACKEND_MODULE = "switchyard.engine.attention.backend"
# vLLM's linear-kernel registry: seconds to import, and only model-building processes do.
LINEAR_KERNELS_MODULE = "vllm.model_executor.kernels.linear"


def install_cpu_nvfp4(linear_kernels: ModuleType) -> None:
    """Our NVFP4 linear kernel for the CPU, which vLLM lacks (engine/quantization/cpu_nvfp4.py)."""
    from switchyard.engine.quantization.cpu_nvfp4 import install

    install(linear_kernels)


def register() -> None:
    from vllm.platforms import current_platform
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    register_backend(AttentionBackendEnum.CUSTOM, f"{BACKEND_MODULE}.SwitchyardAttentionBackend")
    if current_platform.is_cpu():
        # Before vLLM registers its CPU kernel stand-ins, which one of these corrects.
        from switchyard.engine.vllm_fixes import apply_cpu_fixes

        apply_cpu_fixes()
        after_import(LINEAR_KERNELS_MODULE, install_cpu_nvfp4)
    if os.environ.get(ATTENTION_BACKEND_ENV) == "switchyard" and current_platform.is_cpu():
        # The CPU platform always picks CPU_ATTN, whatever backend was selected; stand in
        # for it so the same engine runs our backend end to end.
        register_backend(
            AttentionBackendEnum.CPU_ATTN, f"{BACKEND_MODULE}.SwitchyardCPUAttentionBackend"
        )
