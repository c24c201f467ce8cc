"""Request bodies of OpenAI's chat completions and completions endpoints.

The models validate what the router itself reads; the raw body travels beside them, so
fields this router does not know (``response_format``, ``parallel_tool_calls``, vendor
extensions) still reach an OpenAI-compatible provider. Fields no provider behind the
router can honour in a way a client would notice are refused with a 400 naming them
(``n > 1``); each provider refuses what only it lacks (images for first-party models,
logprobs for Anthropic).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
    "input.chat.messages": "messages",
}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


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


class _Common(_Lenient):
    model: str = Field(min_length=1)
    # OpenRouter's fallback list: tried in order after `model` fails.
    models: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, max_length=16)
    provider: ProviderPreferences | None = None
    # OpenRouter's older spelling of "use `models` as fallbacks"; the only value it has.
    route: Literal["fallback"] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # vLLM's extension, accepted by its OpenAI server too: benchmarks use it to get
    # outputs of exactly max_tokens.
    ignore_eos: bool = False
    n: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    @field_validator("n")
    @classmethod
    def _single_choice(cls, n: int | None) -> int | None:
        if n is not None and n > 1:
            raise ValueError("n > 1 is not supported")
        return n

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


class ChatCompletionRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI's newer name for max_tokens; it wins when both are set.
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

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
    prompt: str | list[str]
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("exactly one prompt is supported")
        if not (prompt if isinstance(prompt, str) else prompt[0]):
            raise ValueError("the prompt must not be empty")
        return prompt

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def output_limit(self) -> int | None:
        return self.max_tokens
