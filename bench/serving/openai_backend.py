"""Streaming requests to an OpenAI-compatible server (vLLM, SGLang, our router).

One aiohttp session, and so one connection pool with no size cap, serves every request
of a run, so the benchmark measures the server rather than connection set-up. Each
``data:`` event is timestamped as soon as it is read.

What counts as a chunk, and where output tokens come from, follows ``vllm bench serve``
(``vllm/benchmarks/lib/endpoint_request_func.py``) line for line, so that the two tools
report the same numbers for the same stream: every event whose ``choices`` list is not
empty is a chunk, whatever its delta holds (vLLM's role-only first chunk, a content
chunk, an empty ``delta: {}`` finish chunk); ``usage`` is read only from events without
choices (the final usage chunk).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp

from switchyard.bench.serving.record import RequestRecord
from switchyard.bench.serving.workloads import BenchRequest

ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}

log = logging.getLogger(__name__)


class OpenAIBackend:
    """Sends each request as a streamed chat or text completion with usage reporting.

    ``tokenizer`` counts the output tokens of replies whose stream reports no
    ``usage.completion_tokens``, as vLLM's benchmark does; without one they are estimated
    as the chunks that carried text.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        endpoint: str = "chat",
        api_key: str | None = None,
        timeout_s: float | None = None,
        connect_timeout_s: float | None = None,
        tokenizer: Any | None = None,
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        self.url = base_url.rstrip("/").removesuffix("/v1") + ENDPOINTS[endpoint]
        self.model = model
        self.endpoint = endpoint
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.connect_timeout_s = connect_timeout_s
        self.tokenizer = tokenizer
        self._warned_estimate = False
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s),
        )

    async def close(self) -> None:
        await self._session.close()

    def body(self, request: BenchRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.endpoint == "chat":
            body["messages"] = list(request.messages)
        else:
            body["prompt"] = request.prompt
        if request.output_len is not None:
            body["max_tokens"] = request.output_len
            body["ignore_eos"] = True
        return body

    def _text(self, choice: dict[str, Any]) -> str:
        """The reply text a chunk adds: the chat delta's content, or the completion text."""
        if self.endpoint == "chat":
            return (choice.get("delta") or {}).get("content") or ""
        return choice.get("text") or ""

    async def send(self, request: BenchRequest) -> RequestRecord:
        record = RequestRecord(start_s=time.perf_counter(), prompt_tokens=request.prompt_len)
        try:
            async with self._session.post(
                self.url, json=self.body(request), headers=self.headers
            ) as response:
                if response.status != 200:
                    text = await response.text()
                    return record.fail(f"http_{response.status}", text or str(response.reason))
                await self._read_stream(response, record)
        except aiohttp.ConnectionTimeoutError:  # before TimeoutError: it is one too
            return record.fail(
                "connect_timeout", f"no connection within {self.connect_timeout_s:g} s"
            )
        except TimeoutError:
            return record.fail("timeout", "request timed out")
        except aiohttp.ClientConnectionError as error:
            return record.fail("connection", f"{type(error).__name__}: {error}")
        except aiohttp.ClientPayloadError as error:
            return record.fail("payload", f"{type(error).__name__}: {error}")
        except (json.JSONDecodeError, AttributeError, TypeError) as error:
            return record.fail("bad_stream", f"{type(error).__name__}: {error}")
        except Exception as error:  # one broken request must not end the benchmark
            return record.fail("exception", f"{type(error).__name__}: {error}")
        return record

    async def _read_stream(self, response: aiohttp.ClientResponse, record: RequestRecord) -> None:
        last: float | None = None
        pieces: list[str] = []
        completion_tokens: int | None = None
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # blank separators, comments (pings), event names
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            now = time.perf_counter()
            data = json.loads(payload)
            if "error" in data:
                record.fail("stream_error", json.dumps(data["error"]))
                return
            if choices := data.get("choices"):
                last = record.add_chunk(now, 1, last)
                pieces.append(self._text(choices[0]))
            elif usage := data.get("usage"):
                completion_tokens = usage.get("completion_tokens")
                if (prompt_tokens := usage.get("prompt_tokens")) is not None:
                    record.prompt_tokens = prompt_tokens
        if last is None:
            record.fail("no_content", "the stream ended without a chunk with choices")
            return
        record.generated_text = "".join(pieces)
        record.output_tokens = completion_tokens or self._count_tokens(pieces)
        record.success = True

    def _count_tokens(self, pieces: list[str]) -> int:
        """Output tokens of a reply whose stream reported none (or 0): the text re-tokenized
        as vLLM's benchmark does, or without a tokenizer the chunks that carried text."""
        if self.tokenizer is not None:
            text = "".join(pieces)
            return len(self.tokenizer(text, add_special_tokens=False).input_ids)
        if not self._warned_estimate:
            self._warned_estimate = True
            log.warning(
                "%s reported no usage.completion_tokens; counting one output token per chunk "
                "with text (give --tokenizer to count them as vllm bench serve does)",
                self.url,
            )
        return sum(1 for piece in pieces if piece)
