"""The ``multi-turn`` workload: conversations whose later turns resend the earlier ones.

Each conversation is a fixed list of user turns of exact token lengths (seeded random
text, as in ``random``). Turn k+1 carries the whole history, every earlier user turn and
the reply the server actually gave, as a chat client does; so it can only be built, and
is only sent, once turn k has finished. That history is the prefix a server's prefix
cache can reuse, which the server-side hit rate then shows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from switchyard.bench.serving.record import RequestRecord
from switchyard.bench.serving.workloads import BenchRequest, candidate_ids, exact_length_prompt

Messages = Sequence[dict[str, str]]
Render = Callable[[Messages], str]
Send = Callable[[BenchRequest], Awaitable[RequestRecord]]


@dataclass(frozen=True)
class Conversation:
    """User turns to send one after another, each asking for ``output_len`` tokens.

    ``render`` turns the history into one prompt for the completions endpoint; without
    it the prompt is the turns' text joined (chat endpoints and gRPC send the messages).
    """

    user_turns: tuple[str, ...]
    user_lens: tuple[int, ...]
    output_len: int
    render: Render | None = None

    def _request(self, messages: Messages, prompt_len: int) -> BenchRequest:
        prompt = self.render(messages) if self.render else "\n".join(m["content"] for m in messages)
        return BenchRequest(
            messages=tuple(messages),
            prompt=prompt,
            prompt_len=prompt_len,
            output_len=self.output_len,
        )

    def first_request(self) -> BenchRequest:
        """Turn 1 alone, the only turn that needs no earlier reply (used for warm-up)."""
        return self._request([{"role": "user", "content": self.user_turns[0]}], self.user_lens[0])

    async def play(self, send: Send) -> list[RequestRecord]:
        """Send every turn after the previous one's reply; stop at the first failed turn,
        since the turns after it would need its reply.

        ``prompt_len`` counts the turns' content tokens (user lengths plus the replies'
        output tokens), a fallback for servers that report no usage.
        """
        messages: list[dict[str, str]] = []
        prompt_len = 0
        records = []
        for user, user_len in zip(self.user_turns, self.user_lens, strict=True):
            messages.append({"role": "user", "content": user})
            prompt_len += user_len
            record = await send(self._request(messages, prompt_len))
            records.append(record)
            if not record.success:
                break
            messages.append({"role": "assistant", "content": record.generated_text})
            prompt_len += record.output_tokens
        return records


def chat_template_renderer(tokenizer: Any) -> Render:
    """Render a history as the model's chat template would, for the completions endpoint.

    A leading BOS the template writes is dropped when the tokenizer adds one itself, as
    servers tokenize completion prompts with special tokens (otherwise the model sees two).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer {tokenizer.name_or_path!r} has no chat template to render "
            "multi-turn conversations for --endpoint completions; use --endpoint chat "
            "or a --tokenizer with a chat template"
        )
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer.encode("")[:1] == [tokenizer.bos_token_id]

    def render(messages: Messages) -> str:
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return text.removeprefix(bos) if adds_bos else text

    return render


def multi_turn_workload(
    tokenizer: Any,
    *,
    num_conversations: int,
    turns: int,
    user_len: int,
    output_len: int,
    seed: int = 0,
    render: Render | None = None,
) -> list[Conversation]:
    """``num_conversations`` conversations of ``turns`` user turns of ``user_len`` tokens."""
    rng = np.random.default_rng(seed)
    candidates = candidate_ids(tokenizer)
    conversations = []
    for _ in range(num_conversations):
        texts, lens = [], []
        for _ in range(turns):
            text, ids = exact_length_prompt(tokenizer, user_len, rng, candidates)
            texts.append(text)
            lens.append(len(ids))
        conversations.append(Conversation(tuple(texts), tuple(lens), output_len, render))
    return conversations
