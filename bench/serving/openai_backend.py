"""Streaming requests to an OpenAI-compatible server (vLLM, SGLang, our router).

One aiohttp session, and so one connection pool with no size cap, serves every request
of a run, so the benchmark measures the server rather than connection set-up. Each
``data:`` line is timestamped as soon as it is read.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from switchyard.bench.serving.record import RequestRecord
from switchyard.bench.serving.workloads import BenchRequest

ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


class OpenAIBackend:
    """Sends each request as a streamed chat or text completion with usage reporting."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        endpoint: str = "chat",
        api_key: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        self.url = base_url.rstrip("/").removesuffix("/v1") + ENDPOINTS[endpoint]
        self.model = model
        self.endpoint = endpoint
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
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

    def _content(self, choice: dict[str, Any]) -> str | None:
        if self.endpoint == "chat":
            delta = choice.get("delta") or {}
            content = delta.get("content")
            return content if content is not None else delta.get("reasoning_content")
        return choice.get("text")

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
            data = json.loads(payload)
            if "error" in data:
                record.fail("stream_error", json.dumps(data["error"]))
                return
            choices = data.get("choices")
            if choices and (content := self._content(choices[0])) is not None:
                last = record.add_chunk(time.perf_counter(), 1, last)
                pieces.append(content)
            if usage := data.get("usage"):
                completion_tokens = usage.get("completion_tokens", completion_tokens)
                record.prompt_tokens = usage.get("prompt_tokens") or record.prompt_tokens
        if last is None:
            record.fail("no_content", "the stream ended without a content chunk")
            return
        # Without a usage chunk, count one token per content chunk (an estimate).
        record.output_tokens = completion_tokens if completion_tokens is not None else len(pieces)
        record.generated_text = "".join(pieces)
        record.success = True
