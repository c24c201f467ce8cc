"""Calls to third-party providers over HTTP: what every protocol shares.

Each protocol module (``openai_compatible``, ``anthropic``, ``google``) holds only its
request, response, stream and error transforms, behind :class:`Adapter`; this module
sends the request, reads the SSE stream, and turns transport failures and upstream
statuses into the router's errors. One :class:`HTTPClient` (one keep-alive pool per
origin) serves every provider, so a request costs no TLS handshake once the pool is warm.

The upstream stream is read inside the generator that produces the client's response:
when the client goes away, the server cancels the generator, which drops the upstream
connection, so the provider stops generating too.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from switchyard.router import wire_json
from switchyard.router.backend import Backend
from switchyard.router.errors import APIError, server_error, unsupported
from switchyard.router.openai_types import Endpoint, OpenAIRequest
from switchyard.router.providers import openai_shape
from switchyard.router.providers.catalog import ResolvedProvider
from switchyard.router.providers.http_client import (
    BodyTooLarge,
    HTTPClient,
    Response,
    TransportError,
)
from switchyard.router.redaction import Redactor

log = logging.getLogger(__name__)
# What translating a provider's answer of an unexpected shape raises: a key it lacks, a
# value of another type, or what ``openai_shape`` finds missing in the result.
WRONG_SHAPE = (KeyError, IndexError, TypeError, AttributeError, ValueError)

Json = dict[str, Any]
# Longest error body read from a provider: enough for any real message, bounded.
MAX_ERROR_BODY_BYTES = 64 << 10
# Longest SSE line accepted from a provider (a Gemini event is one whole response).
MAX_SSE_LINE_BYTES = 8 << 20
# Sent with every provider request. Compressed SSE would be held back by the decoder, so
# bodies are asked for plain.
COMMON_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "Accept-Encoding": "identity",
    "User-Agent": "switchyard-router",
}


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str

    def json(self) -> Json:
        try:
            value = wire_json.loads(self.data)
        except (wire_json.DecodeError, RecursionError):
            raise server_error(
                502, "the provider sent a malformed stream event", "bad_upstream_response"
            ) from None
        if not isinstance(value, dict):
            raise server_error(
                502, "the provider sent a malformed stream event", "bad_upstream_response"
            )
        return value


class StreamTranslator(ABC):
    """Turns one upstream stream into OpenAI chunk objects, event by event."""

    #: Whether the protocol's end of stream has been seen; an upstream connection that
    #: closes before it has failed mid-way.
    done: bool = False

    @abstractmethod
    def feed(self, event: SSEEvent) -> Iterable[Json]:
        """The OpenAI chunks this event makes; raises APIError for an error event."""


class Adapter(ABC):
    """The transforms of one wire protocol; no I/O."""

    #: The OpenAI endpoints this protocol can serve.
    endpoints: frozenset[Endpoint] = frozenset({"chat"})

    @abstractmethod
    def url(self, base_url: str, model: str, endpoint: Endpoint, stream: bool) -> str: ...

    @abstractmethod
    def headers(self, api_key: str | None) -> dict[str, str]: ...

    @abstractmethod
    def request(self, body: Json, request: OpenAIRequest, model: str) -> Json:
        """The provider's request body; raises APIError (400) for what it cannot carry."""

    @abstractmethod
    def response(self, data: Json, model_id: str, request_id: str) -> Json:
        """The OpenAI response object of a whole (non-streaming) provider response.

        ``model_id`` is what its ``model`` says: the id the client asked for (a named
        router's ``router/<name>`` included), as on every chunk of a stream; which model
        served a routed request is in its ``metadata.attempts``."""

    @abstractmethod
    def stream(self, model_id: str, request: OpenAIRequest, request_id: str) -> StreamTranslator:
        """A translator for one streamed response; ``model_id`` as for :meth:`response`."""

    @abstractmethod
    def error_message(self, data: Any) -> str | None:
        """The human message in the provider's error body, if it has one."""

    def error_param_and_code(self, data: Any) -> tuple[str | None, str | None]:
        """The field at fault and the machine-readable code in the provider's error
        body, for protocols whose errors name them (OpenAI's do)."""
        return None, None

    def retry_after(self, data: Any) -> str | None:
        """A ``Retry-After`` value (whole seconds) from the provider's error body, for
        providers that put the delay there rather than in the header."""
        return None


@dataclass(frozen=True)
class ProviderModel:
    """One model of a third-party provider, as the router serves it."""

    provider: ResolvedProvider
    adapter: Adapter
    model: str
    # The router's one client of every provider.
    client: UpstreamClient

    @cached_property
    def model_id(self) -> str:
        # Cached: every attempt at the model reads it.
        return f"{self.provider.name}/{self.model}"

    @property
    def owned_by(self) -> str:
        return self.provider.name

    def sole_backend(
        self, raw: Json, body: OpenAIRequest, endpoint: Endpoint, request_id: str
    ) -> Backend:
        return ProviderBackend(self, raw, body, endpoint, request_id)

    def backends(
        self,
        raw: Json,
        body: OpenAIRequest,
        endpoint: Endpoint,
        request_id: str,
        available: Callable[[str], bool],
    ) -> list[Backend]:
        # One host, one backend: a cooling provider is put last by the fallback run.
        return [ProviderBackend(self, raw, body, endpoint, request_id)]


class ProviderBackend:
    """One request to one third-party model; the raw body goes to the provider as it
    came, so fields the router does not know still reach an OpenAI-compatible host."""

    __slots__ = ("_body", "_endpoint", "_raw", "_request_id", "_target")

    def __init__(
        self,
        target: ProviderModel,
        raw: Json,
        body: OpenAIRequest,
        endpoint: Endpoint,
        request_id: str,
    ) -> None:
        self._target = target
        self._raw = raw
        self._body = body
        self._endpoint = endpoint
        self._request_id = request_id

    @property
    def model(self) -> str:
        return self._target.model_id

    @property
    def provider(self) -> str:
        return self._target.provider.name

    @property
    def health_key(self) -> str:
        return self._target.provider.name

    def complete(self, first_token_timeout_s: float | None = None) -> Coroutine[Any, Any, Json]:
        # No first token arrives before the whole answer (see Backend.complete).
        target = self._target
        return target.client.complete(
            target, self._raw, self._body, self._endpoint, self._request_id
        )

    def stream(self) -> AsyncGenerator[list[Json]]:
        target = self._target
        return target.client.stream(target, self._raw, self._body, self._endpoint, self._request_id)


def _status_error(
    status: int,
    message: str,
    provider: str,
    retry_after: str | None,
    param_and_code: tuple[str | None, str | None],
) -> APIError:
    """The router's answer to a provider's error status.

    Client mistakes (400, 404, 413, 422) keep their status and the provider's message, so
    the caller can fix the request; a 400 also keeps the provider's ``param`` and
    ``code``. The provider refusing *our* key is a gateway fault the caller cannot fix
    (502). 429 keeps its Retry-After; 5xx and Anthropic's 529 (overloaded) become 502/503.
    """
    text = f"{provider}: {message}"
    if status in (400, 413, 422):
        param, code = param_and_code
        return APIError(400, text, param=param, code=code)
    if status == 404:
        return APIError(404, text, code="model_not_found")
    if status in (401, 403):
        return server_error(502, f"{provider} refused the router's credentials", "upstream_auth")
    if status == 429:
        headers = {"Retry-After": retry_after} if retry_after else None
        return APIError(429, text, type="rate_limit_error", code="rate_limited", headers=headers)
    if status in (503, 529):
        return server_error(503, text, "upstream_unavailable")
    if status == 504:
        return server_error(504, f"{provider} timed out", "upstream_timeout")
    return server_error(502, text, "upstream_error")


class UpstreamClient:
    """Sends requests to providers; one per router, opened on the serving loop.

    A provider's words reach the router's errors in two places only, an error status's
    body and an error event in a stream; both pass through ``redact`` there."""

    def __init__(self, redact: Redactor, max_connections_per_origin: int) -> None:
        self._http: HTTPClient | None = None
        self._redact = redact
        self._max_connections_per_origin = max_connections_per_origin

    def open(self) -> None:
        self._http = HTTPClient(max_connections_per_origin=self._max_connections_per_origin)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _post(
        self, target: ProviderModel, body: Json, request: OpenAIRequest, endpoint: Endpoint
    ) -> Response:
        """The provider's response once its status says success; raises APIError otherwise."""
        assert self._http is not None, "UpstreamClient.open() was not called"
        provider, adapter = target.provider, target.adapter
        if endpoint not in adapter.endpoints:
            raise unsupported(
                f"the {provider.name} provider does not offer the {endpoint} endpoint; "
                "use /v1/chat/completions",
                "model",
            )
        if provider.single_choice and request.first_field_in_use(("n",)):
            raise unsupported(f"n > 1 is not supported by {provider.name} models", "n")
        payload = wire_json.dumps(adapter.request(body, request, target.model))
        url = adapter.url(provider.base_url, target.model, endpoint, request.stream)
        headers = {**COMMON_HEADERS, **adapter.headers(provider.api_key)}
        try:
            response = await self._http.post(url, headers, payload, provider.timeout_s)
        except TimeoutError:
            raise server_error(504, f"{provider.name} did not answer in time", "timeout") from None
        except TransportError as error:
            log.warning("%s: request failed: %s", provider.name, error)
            raise server_error(
                502, f"could not reach the {provider.name} provider", "upstream_unreachable"
            ) from None
        if response.status < 300:
            return response
        try:
            raw = await response.read(MAX_ERROR_BODY_BYTES)
        except (TransportError, TimeoutError):
            raw = b""
        finally:
            response.release()
        try:
            data = wire_json.loads(raw)
        except (wire_json.DecodeError, RecursionError):  # not JSON, not UTF-8, nested absurdly
            data = None
        log.warning("%s answered %d", provider.name, response.status)
        raise self._redact.error(
            _status_error(
                response.status,
                adapter.error_message(data) or f"HTTP {response.status}",
                provider.name,
                response.headers.get("retry-after") or adapter.retry_after(data),
                adapter.error_param_and_code(data),
            )
        )

    async def complete(
        self,
        target: ProviderModel,
        body: Json,
        request: OpenAIRequest,
        endpoint: Endpoint,
        request_id: str,
    ) -> Json:
        response = await self._post(target, body, request, endpoint)
        provider = target.provider
        try:
            data = wire_json.loads(await response.read_whole(provider.max_response_bytes))
        except BodyTooLarge as error:
            log.warning("%s: response refused: %s", provider.name, error)
            raise server_error(
                502,
                f"{provider.name} sent a response larger than the router accepts "
                f"({provider.max_response_bytes} bytes, providers.{provider.name}"
                ".max_response_bytes)",
                "upstream_response_too_large",
            ) from None
        except (TransportError, TimeoutError, wire_json.DecodeError, RecursionError):
            data = None
        finally:
            response.release()
        if not isinstance(data, dict):
            raise server_error(
                502, f"{target.provider.name} sent an unreadable response", "bad_upstream_response"
            )
        try:
            result = target.adapter.response(data, request.model, request_id)
            openai_shape.check_response(result)
        except WRONG_SHAPE as error:
            raise wrong_shape(target.provider.name, "response", error) from None
        return result

    async def stream(
        self,
        target: ProviderModel,
        body: Json,
        request: OpenAIRequest,
        endpoint: Endpoint,
        request_id: str,
    ) -> AsyncGenerator[list[Json]]:
        """Yield OpenAI chunks, a batch per network read, as the provider's events arrive;
        raise APIError on failure.

        Events that arrived together leave together (one write to the client instead of
        one per event). Nothing is yielded before the provider has accepted the request,
        so a caller that awaits the first batch learns of a refusal while it can still
        answer with a status.
        """
        response = await self._post(target, body, request, endpoint)
        translator = target.adapter.stream(request.model, request, request_id)
        parser = SSEParser()
        try:
            ended = False
            while not ended:
                data = await response.read_some()
                # At the end of the body, the events its last bytes left open still count.
                ended = not data
                events = parser.feed(data) if data else parser.finish()
                batch, failure = _translate(translator, events, target.provider.name)
                if batch:
                    yield batch
                if failure is not None:
                    raise self._redact.error(failure)
                if translator.done:
                    return
        except TimeoutError:
            raise server_error(
                504, f"{target.provider.name} stopped answering mid-stream", "timeout"
            ) from None
        except (TransportError, ValueError):
            # A dropped connection, an undecodable or over-long line: the stream broke.
            pass
        finally:
            # A stream read to its end leaves its connection for the next request; one left
            # before (the client went away, an error) is dropped, which is how the provider
            # learns that nobody reads the rest.
            response.release()
        raise server_error(
            502, f"{target.provider.name} ended the stream before it finished", "upstream_error"
        )


def _translate(
    translator: StreamTranslator, events: list[SSEEvent], provider: str
) -> tuple[list[Json], APIError | None]:
    """The chunks of ``events`` up to the protocol's end of stream, and the error event
    or the event of the wrong shape that cut them short, if one did (the chunks before
    it still reach the client)."""
    chunks: list[Json] = []
    for event in events:
        try:
            translated = list(translator.feed(event))
            for chunk in translated:
                openai_shape.check_chunk(chunk)
        except APIError as error:
            return chunks, error
        except WRONG_SHAPE as error:
            return chunks, wrong_shape(provider, "stream event", error)
        chunks.extend(translated)
        if translator.done:
            break
    return chunks, None


def wrong_shape(provider: str, what: str, error: Exception) -> APIError:
    """The 502 for a provider answer the router cannot read as the protocol's: the field
    when ``openai_shape`` named it, else only the kind of the failure (its text could
    quote the provider's payload)."""
    detail = str(error) if isinstance(error, openai_shape.WrongShape) else type(error).__name__
    log.warning("%s sent a %s of the wrong shape: %s", provider, what, detail)
    return server_error(
        502, f"{provider} sent a {what} of the wrong shape ({detail})", "bad_upstream_response"
    )


class SSEParser:
    """Server-sent events as the spec frames them, from bytes as they arrive:
    ``event:``/``data:`` fields up to a blank line; comment lines (``: keep-alive``) are
    skipped; LF and CRLF line ends both work."""

    def __init__(self) -> None:
        self._pending = b""  # an incomplete last line
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[SSEEvent]:
        *lines, self._pending = (self._pending + data).split(b"\n")
        if len(self._pending) > MAX_SSE_LINE_BYTES:
            raise ValueError("an SSE line exceeds the size limit")
        events = []
        for raw in lines:
            event = self._line(raw.decode().rstrip("\r"))
            if event is not None:
                events.append(event)
        return events

    def finish(self) -> list[SSEEvent]:
        """Events still open when the stream ends without a final blank line."""
        events = self.feed(b"\n") if self._pending else []
        if self._data:
            events.append(SSEEvent(self._event or "message", "\n".join(self._data)))
            self._event, self._data = "", []
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            event = (
                SSEEvent(self._event or "message", "\n".join(self._data)) if self._data else None
            )
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None
