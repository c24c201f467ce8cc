"""Request bodies of OpenAI's chat completions and completions endpoints.

The models validate what the router itself reads; the raw body travels beside them, so
fields this router does not know (``parallel_tool_calls``, ``reasoning_effort``, vendor
extensions) still reach an OpenAI-compatible provider.

Types are strict, as OpenAI's own API is: ``"max_tokens": "5"``, ``"stream": "true"`` or
``5.0`` for an integer are a 400 naming the field, never coerced (an integer where a
number is expected, ``"temperature": 1``, is a number). Unknown fields are ignored: the
SDKs send extras (``store``, ``service_tier``, ``prediction``, ``prompt_cache_key``,
vendor ``extra_body`` fields) that only tune cost or latency.

Some fields change what a client gets back, so a provider that cannot honour one refuses
the request with a 400 naming it rather than drop it silently (see
:data:`OUTPUT_SHAPING`): ``n > 1`` everywhere but on the OpenAI-compatible hosts that
offer it; ``tools``, ``tool_choice``, ``response_format``, ``logit_bias`` and the like
for first-party models; ``logprobs`` and ``logit_bias`` for Anthropic and Google.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, TypeGuard, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Engine field (as named in its INVALID_ARGUMENT messages) -> the OpenAI request field.
ENGINE_FIELD_TO_PARAM = {
    "sampling.temperature": "temperature",
    "sampling.top_p": "top_p",
    "sampling.max_tokens": "max_tokens",
    "sampling.stop": "stop",
    "sampling.seed": "seed",
    "sampling.presence_penalty": "presence_penalty",
    "sampling.frequency_penalty": "frequency_penalty",
    "sampling.logprobs": "logprobs",
    "input.text": "prompt",
    "input.token_ids": "prompt",
    "input.chat.messages": "messages",
}


class _Lenient(BaseModel):
    # Lenient about unknown fields, strict about the types of known ones.
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Lenient):
    name: str = Field(min_length=1)
    # A JSON document as a string, exactly as the model produced it.
    arguments: str


class ToolCall(_Lenient):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # None is what SDKs send for an assistant turn that only carried tool calls.
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _tool_result_names_its_call(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return self

    def text(self) -> str:
        """The text parts, joined; images are left out (see :meth:`has_images`)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(
            isinstance(part, ImagePart) for part in self.content
        )


class FunctionDefinition(_Lenient):
    name: str = Field(min_length=1)
    description: str | None = None
    # A JSON Schema object; None means the function takes no arguments.
    parameters: dict[str, Any] | None = None


class Tool(_Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoice(_Lenient):
    class _Name(_Lenient):
        name: str = Field(min_length=1)

    type: Literal["function"]
    function: _Name


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JSONSchemaFormat(_Lenient):
    """``response_format.json_schema``; typed because adapters translate it (Gemini's
    ``responseJsonSchema``), so a wrong shape must be a 400 naming the field, not a
    failure in the translation. ``name`` is left optional: hosts differ on it."""

    name: str | None = None
    description: str | None = None
    # ``schema`` would shadow a BaseModel attribute.
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    # Any string: OpenAI-compatible hosts add their own types (``regex``, ``grammar``);
    # a provider that cannot honour one refuses it.
    type: str | None = None
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


Sort = Literal["price", "latency", "throughput"]


class ProviderPreferences(_Lenient):
    """OpenRouter's ``provider`` object: which hosts of a model to use, in what order."""

    order: list[str] | None = None
    allow_fallbacks: bool = True
    only: list[str] | None = None
    ignore: list[str] | None = None
    sort: Sort | None = None


# Fields only the router reads; never forwarded to a provider, which could refuse them.
ROUTER_ONLY_FIELDS = ("models", "provider", "route")

# Integer ranges of the engine's protobuf fields, so that a huge value is a 400 naming
# its field rather than a failure to build the engine request.
OutputLimit = Annotated[int, Field(ge=1, lt=1 << 31)]
Int64 = Annotated[int, Field(ge=-(1 << 63), lt=1 << 63)]
TokenIds = list[Annotated[int, Field(ge=0, lt=1 << 32)]]


def _asks_for_more_than_text(choice: object) -> bool:
    """Whether a ``tool_choice``/``function_call`` value can make the model call a tool;
    ``"none"`` and ``"auto"`` (with no tools given) cannot."""
    return choice is not None and choice not in ("none", "auto")


# Fields that change what a client gets back, and how to tell that a request uses one
# (``tools: []`` or ``response_format: {"type": "text"}`` ask for nothing). A provider
# that cannot honour one refuses it by name (see ``_Common.first_field_in_use``).
OUTPUT_SHAPING: dict[str, Callable[[Any], bool]] = {
    "n": lambda n: n is not None and n > 1,
    "tools": bool,
    "tool_choice": _asks_for_more_than_text,
    "functions": bool,
    "function_call": _asks_for_more_than_text,
    "response_format": lambda spec: spec is not None and spec.type not in (None, "text"),
    "logit_bias": bool,
    "audio": lambda audio: audio is not None,
    "modalities": lambda modalities: any(m != "text" for m in modalities or ()),
    "web_search_options": lambda options: options is not None,
    "suffix": bool,
    "echo": bool,
    "best_of": lambda best_of: best_of is not None and best_of > 1,
}


class _Common(_Lenient):
    model: str = Field(min_length=1)
    # OpenRouter's fallback list: tried in order after `model` fails.
    models: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, max_length=16)
    provider: ProviderPreferences | None = None
    # OpenRouter's older spelling of "use `models` as fallbacks"; the only value it has.
    route: Literal["fallback"] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: OutputLimit | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: Int64 | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # vLLM's extension, accepted by its OpenAI server too: benchmarks use it to get
    # outputs of exactly max_tokens.
    ignore_eos: bool = False
    # Choices per request: passed to the OpenAI-compatible hosts that offer it, refused
    # by every other provider (see OUTPUT_SHAPING).
    n: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    # Not read by the router; declared so that their types are checked and a provider
    # that cannot honour them can refuse them (OUTPUT_SHAPING).
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences are supported")
        return stop

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def first_field_in_use(self, fields: Iterable[str]) -> str | None:
        """The first of ``fields`` (names in OUTPUT_SHAPING) this request uses."""
        for name in fields:
            if name in type(self).model_fields and OUTPUT_SHAPING[name](getattr(self, name)):
                return name
        return None


class ChatCompletionRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI's newer name for max_tokens; it wins when both are set.
    max_completion_tokens: OutputLimit | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    # Not read by the router (the raw body carries them); see _Common.logit_bias.
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    web_search_options: dict[str, Any] | None = None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def prompt_text(self) -> str:
        """The conversation as one text, roles included, for matching prompt prefixes
        across requests (the same messages always give the same text)."""
        return "".join(f"<{message.role}>{message.text()}\n" for message in self.messages)

    def engine_logprobs(self) -> int | None:
        """The engine's alternatives count: unset means no logprobs at all."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Common):
    # A text, token ids, or a batch of either; which of these a provider takes is its
    # own business (first-party models take one prompt, OpenAI-compatible hosts all).
    prompt: str | list[str] | TokenIds | list[TokenIds]
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    # Not read by the router (the raw body carries them); see _Common.logit_bias.
    suffix: str | None = None
    echo: bool = False
    best_of: Annotated[int, Field(ge=1)] | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: str | list[Any]) -> str | list[Any]:
        prompts = [prompt] if isinstance(prompt, str) or _is_token_ids(prompt) else prompt
        if not prompts or not all(prompts):
            raise ValueError("the prompt must not be empty")
        return prompt

    def prompts(self) -> list[str | list[int]]:
        """Each prompt of the request: a text or a list of token ids."""
        prompt = self.prompt
        if isinstance(prompt, str) or _is_token_ids(prompt):
            return [prompt]
        # A batch, of texts or of token id lists: _is_token_ids told it from one prompt.
        return list(cast("list[str] | list[TokenIds]", prompt))

    def prompt_text(self) -> str:
        """The prompts as one text, for matching prompt prefixes across requests and for
        routing conditions; token ids are written out as numbers."""
        return "\n".join(p if isinstance(p, str) else " ".join(map(str, p)) for p in self.prompts())

    def output_limit(self) -> int | None:
        return self.max_tokens


def _is_token_ids(prompt: object) -> TypeGuard[TokenIds]:
    """``[1, 2, 3]`` (one prompt of token ids), as opposed to a batch of prompts; ``[]``
    counts as a batch (of none)."""
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], int)


# Either endpoint's request, as the code that serves both sees it.
OpenAIRequest = ChatCompletionRequest | CompletionRequest
Endpoint = Literal["chat", "completions"]
