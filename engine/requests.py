"""Turn a ``GenerateRequest`` into prompt token ids and vLLM ``SamplingParams``.

Every check names the offending field, so a client learns what to fix from the
INVALID_ARGUMENT message alone, and nothing invalid reaches the engine (where it would
fail later, less clearly, or crash a step for every request in the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jinja2 import TemplateError
from vllm import SamplingParams
from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import RequestOutputKind

from switchyard.api.v1 import engine_pb2

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
SAMPLING_FIELDS = frozenset(engine_pb2.SamplingParams.DESCRIPTOR.fields_by_name)
MAX_LOGPROBS = 20
# vLLM's own bound; above it SamplingParams refuses the request.
MAX_TEMPERATURE = 2.0


class InvalidRequest(ValueError):
    """A request field is invalid; ``str()`` starts with the field's path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def rejected_by_vllm(error: Exception, field: str) -> InvalidRequest:
    """vLLM's own refusal of a request, under our field's name where vLLM names one of ours
    (its validation errors carry the parameter; its messages name it too)."""
    parameter = getattr(error, "parameter", None)
    if parameter in SAMPLING_FIELDS:
        field = f"sampling.{parameter}"
    return InvalidRequest(field, str(error.args[0]) if error.args else str(error))


@dataclass(frozen=True)
class ModelLimits:
    max_context_length: int
    vocab_size: int
    default_max_tokens: int
    eos_token_ids: tuple[int, ...]
    # Speculative decoding is on: vLLM then ignores min_p (it warns once at start).
    speculative: bool = False


@dataclass(frozen=True)
class PreparedRequest:
    prompt_token_ids: list[int]
    sampling_params: SamplingParams


def prompt_token_ids(
    request: engine_pb2.GenerateRequest, tokenizer, limits: ModelLimits
) -> list[int]:
    kind = request.WhichOneof("input")
    if kind is None:
        raise InvalidRequest("input", "one of text, token_ids or chat is required")
    if kind == "text":
        if not request.text:
            raise InvalidRequest("input.text", "is empty")
        ids = tokenizer(request.text).input_ids
    elif kind == "token_ids":
        ids = list(request.token_ids.ids)
        if not ids:
            raise InvalidRequest("input.token_ids", "is empty")
        outside = next((i for i in ids if i >= limits.vocab_size), None)
        if outside is not None:
            raise InvalidRequest(
                "input.token_ids",
                f"id {outside} is outside the vocabulary (size {limits.vocab_size})",
            )
    else:
        ids = _chat_token_ids(request.chat, tokenizer)
    if len(ids) >= limits.max_context_length:
        raise InvalidRequest(
            f"input.{kind}",
            f"the prompt has {len(ids)} tokens; the model's context holds "
            f"{limits.max_context_length}, and at least one must be left to generate",
        )
    return ids


def _chat_token_ids(chat: engine_pb2.ChatInput, tokenizer) -> list[int]:
    if not chat.messages:
        raise InvalidRequest("input.chat.messages", "is empty")
    for index, message in enumerate(chat.messages):
        if message.role not in CHAT_ROLES:
            raise InvalidRequest(
                f"input.chat.messages[{index}].role",
                f"unknown role {message.role!r}; expected one of {', '.join(CHAT_ROLES)}",
            )
    if not tokenizer.chat_template:
        raise InvalidRequest("input.chat", "this model has no chat template; send text")
    messages = [{"role": m.role, "content": m.content} for m in chat.messages]
    try:
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
    except TemplateError as error:
        # Templates raise on conversations they do not support (roles that must
        # alternate, a system message where none is allowed): the request's fault.
        raise InvalidRequest(
            "input.chat", f"the model's chat template rejected the messages: {error}"
        ) from error
    # The template writes its own BOS where the model wants one.
    return tokenizer(rendered, add_special_tokens=False).input_ids


def _check_range(
    field: str, value: float, low: float, high: float, *, open_low: bool = False
) -> None:
    # NaN fails every comparison, so it is named; infinities fall outside the bounds.
    if math.isnan(value) or value > high or value < low or (open_low and value == low):
        bracket = "(" if open_low else "["
        raise InvalidRequest(
            f"sampling.{field}", f"must be in {bracket}{low}, {high}], got {value}"
        )


def sampling_params(
    sampling: engine_pb2.SamplingParams, prompt_tokens: int, limits: ModelLimits
) -> SamplingParams:
    room = limits.max_context_length - prompt_tokens
    max_tokens = limits.default_max_tokens
    if sampling.HasField("max_tokens"):
        if sampling.max_tokens < 1:
            raise InvalidRequest("sampling.max_tokens", f"must be >= 1, got {sampling.max_tokens}")
        max_tokens = sampling.max_tokens
    temperature = sampling.temperature if sampling.HasField("temperature") else 1.0
    _check_range("temperature", temperature, 0.0, MAX_TEMPERATURE)
    top_p = sampling.top_p if sampling.HasField("top_p") else 1.0
    _check_range("top_p", top_p, 0.0, 1.0, open_low=True)
    top_k = sampling.top_k if sampling.HasField("top_k") else 0
    if top_k < -1:
        raise InvalidRequest("sampling.top_k", f"must be >= 1, or 0/-1 for off, got {top_k}")
    min_p = sampling.min_p if sampling.HasField("min_p") else 0.0
    _check_range("min_p", min_p, 0.0, 1.0)
    if min_p and limits.speculative:
        raise InvalidRequest(
            "sampling.min_p", "is not supported while speculative decoding is on; send 0"
        )
    presence = sampling.presence_penalty if sampling.HasField("presence_penalty") else 0.0
    _check_range("presence_penalty", presence, -2.0, 2.0)
    frequency = sampling.frequency_penalty if sampling.HasField("frequency_penalty") else 0.0
    _check_range("frequency_penalty", frequency, -2.0, 2.0)
    repetition = sampling.repetition_penalty if sampling.HasField("repetition_penalty") else 1.0
    if not math.isfinite(repetition) or repetition <= 0:
        raise InvalidRequest(
            "sampling.repetition_penalty", f"must be a finite number > 0, got {repetition}"
        )
    logprobs = None
    if sampling.HasField("logprobs"):
        if not 0 <= sampling.logprobs <= MAX_LOGPROBS:
            raise InvalidRequest(
                "sampling.logprobs", f"must be in [0, {MAX_LOGPROBS}], got {sampling.logprobs}"
            )
        logprobs = sampling.logprobs
    for index, stop in enumerate(sampling.stop):
        if not stop:
            raise InvalidRequest(f"sampling.stop[{index}]", "is empty")
    outside = next((i for i in sampling.stop_token_ids if i >= limits.vocab_size), None)
    if outside is not None:
        raise InvalidRequest("sampling.stop_token_ids", f"id {outside} is outside the vocabulary")
    # Stop on every end-of-generation id the model declares (Gemma's <end_of_turn> as
    # well as <eos>), unless the caller asked to ignore EOS.
    stop_token_ids = list(sampling.stop_token_ids)
    if not sampling.ignore_eos:
        stop_token_ids += [i for i in limits.eos_token_ids if i not in stop_token_ids]
    try:
        return SamplingParams(
            n=1,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            max_tokens=min(max_tokens, room),
            stop=list(sampling.stop) or None,
            stop_token_ids=stop_token_ids or None,
            seed=sampling.seed if sampling.HasField("seed") else None,
            presence_penalty=presence,
            frequency_penalty=frequency,
            repetition_penalty=repetition,
            ignore_eos=sampling.ignore_eos,
            logprobs=logprobs,
            include_stop_str_in_output=sampling.include_stop_str_in_output,
            output_kind=RequestOutputKind.DELTA,
        )
    except (VLLMValidationError, ValueError) as error:
        # A rule of vLLM's that the checks above do not repeat: still the request's fault.
        raise rejected_by_vllm(error, "sampling") from error


def prepare_request(
    request: engine_pb2.GenerateRequest, tokenizer, limits: ModelLimits
) -> PreparedRequest:
    ids = prompt_token_ids(request, tokenizer, limits)
    return PreparedRequest(ids, sampling_params(request.sampling, len(ids), limits))
