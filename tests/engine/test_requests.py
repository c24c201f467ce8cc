"""Request validation and vLLM parameters, without an engine: every field's bounds, and
what reaches vLLM for a valid request."""

from __future__ import annotations

import math

import pytest
from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import RequestOutputKind

from switchyard.api.client import build_request
from switchyard.engine.requests import (
    InvalidRequest,
    ModelLimits,
    prepare_request,
    rejected_by_vllm,
    sampling_params,
)

LIMITS = ModelLimits(
    max_context_length=100, vocab_size=1000, default_max_tokens=32, eos_token_ids=(2, 7)
)


def params(**sampling: object):
    return sampling_params(build_request(text="x", **sampling).sampling, 10, LIMITS)


def test_defaults() -> None:
    p = params()
    assert p.n == 1
    assert p.temperature == 1.0
    assert p.top_p == 1.0
    assert p.top_k == 0
    assert p.min_p == 0.0
    assert (p.presence_penalty, p.frequency_penalty, p.repetition_penalty) == (0.0, 0.0, 1.0)
    assert p.max_tokens == 32
    assert p.logprobs is None
    assert p.seed is None
    assert p.stop == []
    # Every end-of-generation id the model declares stops it.
    assert p.stop_token_ids == [2, 7]
    assert not p.ignore_eos
    assert not p.include_stop_str_in_output
    assert p.output_kind == RequestOutputKind.DELTA


def test_fields_reach_vllm() -> None:
    p = params(
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repetition_penalty=1.2,
        seed=-3,
        stop=["END"],
        include_stop_str_in_output=True,
        max_tokens=5,
    )
    assert p.temperature == 0.5
    assert p.top_p == pytest.approx(0.9)
    assert p.top_k == 40
    assert p.min_p == pytest.approx(0.05)
    assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.5)
    assert p.repetition_penalty == pytest.approx(1.2)
    assert p.seed == -3
    assert p.stop == ["END"]
    assert p.include_stop_str_in_output
    assert p.max_tokens == 5


def test_max_tokens_is_capped_by_the_room_left_in_the_context() -> None:
    prompt_tokens = 95
    sampling = build_request(text="x", max_tokens=50).sampling
    assert sampling_params(sampling, prompt_tokens, LIMITS).max_tokens == 5
    # The default is capped too.
    assert sampling_params(build_request(text="x").sampling, 90, LIMITS).max_tokens == 10


def test_stop_token_ids_join_the_eos_ids_without_duplicates() -> None:
    assert params(stop_token_ids=[7, 11]).stop_token_ids == [7, 11, 2]
    # ignore_eos keeps only the caller's ids.
    assert params(stop_token_ids=[11], ignore_eos=True).stop_token_ids == [11]
    assert params(ignore_eos=True).stop_token_ids == []


def test_logprobs_zero_is_the_sampled_token_only() -> None:
    assert params(logprobs=0).logprobs == 0
    assert params(logprobs=20).logprobs == 20


def test_top_k_off() -> None:
    assert params(top_k=-1).top_k == -1
    assert params(top_k=0).top_k == 0


INF, NAN = math.inf, math.nan
BAD_SAMPLING = [
    ({"temperature": INF}, "sampling.temperature"),
    ({"temperature": NAN}, "sampling.temperature"),
    ({"temperature": -0.1}, "sampling.temperature"),
    ({"temperature": 2.5}, "sampling.temperature"),
    ({"top_p": NAN}, "sampling.top_p"),
    ({"top_p": 0.0}, "sampling.top_p"),
    ({"top_p": INF}, "sampling.top_p"),
    ({"top_k": -2}, "sampling.top_k"),
    ({"min_p": NAN}, "sampling.min_p"),
    ({"min_p": 1.5}, "sampling.min_p"),
    ({"presence_penalty": INF}, "sampling.presence_penalty"),
    ({"presence_penalty": NAN}, "sampling.presence_penalty"),
    ({"frequency_penalty": -INF}, "sampling.frequency_penalty"),
    ({"repetition_penalty": INF}, "sampling.repetition_penalty"),
    ({"repetition_penalty": NAN}, "sampling.repetition_penalty"),
    ({"repetition_penalty": 0.0}, "sampling.repetition_penalty"),
    ({"max_tokens": 0}, "sampling.max_tokens"),
    ({"logprobs": -1}, "sampling.logprobs"),
    ({"logprobs": 21}, "sampling.logprobs"),
    ({"stop": ["ok", ""]}, "sampling.stop[1]"),
    ({"stop_token_ids": [1000]}, "sampling.stop_token_ids"),
]


@pytest.mark.parametrize(
    ("sampling", "field"),
    BAD_SAMPLING,
    ids=[",".join(f"{k}={v}" for k, v in s.items()) for s, _ in BAD_SAMPLING],
)
def test_bad_sampling_names_the_field(sampling: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        params(**sampling)
    assert error.value.field == field
    assert str(error.value).startswith(field + ": ")


def test_min_p_is_refused_while_speculating() -> None:
    limits = ModelLimits(100, 1000, 32, (2,), speculative=True)
    with pytest.raises(InvalidRequest, match=r"^sampling\.min_p: .*speculative"):
        sampling_params(build_request(text="x", min_p=0.1).sampling, 10, limits)
    assert sampling_params(build_request(text="x").sampling, 10, limits).min_p == 0.0


def test_vllm_validation_errors_name_our_field() -> None:
    named = rejected_by_vllm(VLLMValidationError("top_k is bad", parameter="top_k"), "input")
    assert str(named) == "sampling.top_k: top_k is bad"
    # A parameter of vLLM's that is none of ours keeps the caller's field.
    other = rejected_by_vllm(VLLMValidationError("no", parameter="prompt_embeds"), "input")
    assert str(other) == "input: no"
    assert str(rejected_by_vllm(ValueError("Token id 5 is out of vocabulary"), "input")) == (
        "input: Token id 5 is out of vocabulary"
    )


def test_token_ids_outside_the_vocabulary_are_refused() -> None:
    request = build_request(token_ids=[1, 2, 1000])
    with pytest.raises(InvalidRequest, match=r"^input\.token_ids: id 1000 is outside"):
        prepare_request(request, None, LIMITS)
    prepared = prepare_request(build_request(token_ids=[1, 2]), None, LIMITS)
    assert prepared.prompt_token_ids == [1, 2]


def test_chat_template_errors_are_the_requests_fault(
    smollm_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template that refuses a conversation (as many official ones do when roles do not
    alternate) is the request's fault, named as such, not an engine failure."""
    template = (
        "{% for m in messages %}{% if m['role'] == 'user' and loop.index0 % 2 == 1 %}"
        "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    monkeypatch.setattr(smollm_tokenizer, "chat_template", template)
    limits = ModelLimits(2048, smollm_tokenizer.vocab_size, 32, (2,))
    twice = build_request(messages=[{"role": "user", "content": "a"}] * 2)
    with pytest.raises(InvalidRequest) as error:
        prepare_request(twice, smollm_tokenizer, limits)
    assert error.value.field == "input.chat"
    assert "roles must alternate user/assistant" in str(error.value)
    once = build_request(messages=[{"role": "user", "content": "a"}])
    assert prepare_request(once, smollm_tokenizer, limits).prompt_token_ids
