"""The router's HTTP API: OpenAI's chat completions, completions and models endpoints,
liveness and readiness probes, and Prometheus metrics.

Every failure is answered in OpenAI's error shape with a meaningful status (400 with the
field named, 401, 404, 413, 503, 504); an unexpected exception is logged here and the
client gets a generic 500, never a stack trace. A failure after a stream has started
cannot change the status any more, so it is sent as a last ``data: {"error": ...}``
event, as OpenRouter does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from switchyard.router.auth import KeyChecker
from switchyard.router.config import ResolvedProvider, RouterConfig
from switchyard.router.errors import APIError, invalid_request, server_error
from switchyard.router.field_paths import field_path
from switchyard.router.metrics import CONTENT_TYPE, Observation, RouterMetrics
from switchyard.router.openai_types import ChatCompletionRequest, CompletionRequest
from switchyard.router.providers import first_party
from switchyard.router.providers.upstream import Endpoint, ProviderModel, UpstreamClient
from switchyard.router.registry import Registry

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def parse_body(body: bytes, model: type[M]) -> tuple[dict[str, Any], M]:
    """The raw JSON object (forwarded to OpenAI-compatible providers as it came) and its
    validated model (what the router itself reads)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise invalid_request(f"the request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise invalid_request("the request body must be a JSON object")
    try:
        return data, model.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        param = field_path(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise invalid_request(f"{param}: {message}" if param else message, param) from None


def sse_frame(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def sse_body(
    first: list[dict[str, Any]], batches: AsyncGenerator[list[dict[str, Any]]]
) -> AsyncIterator[bytes]:
    """Frame the chunks, one write per batch; the provider's stream is iterated here, in
    the response's task, so a client disconnect cancels it."""
    try:
        yield b"".join(map(sse_frame, first))
        async for batch in batches:
            yield b"".join(map(sse_frame, batch))
        yield b"data: [DONE]\n\n"
    except APIError as error:
        yield sse_frame(error.body())
    except Exception:
        log.exception("stream failed after it started")
        yield sse_frame(server_error(500, "internal error", "internal_error").body())
    finally:
        await batches.aclose()


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, cancelling it (and so the engine call) if the client leaves.

    Servers cancel a streaming body on disconnect, but not a handler still computing a
    whole response; without this a dropped non-streaming request would keep the engine
    busy until it finished."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        raise APIError(499, "the client closed the request", code="client_closed_request")
    return task.result()


def _has_content(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries output (text or a tool call), not just a role or a finish."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("text"):
            return True
    return False


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Router:
    """The request handlers, with what they share."""

    def __init__(
        self, config: RouterConfig, keys: KeyChecker, providers: list[ResolvedProvider]
    ) -> None:
        self.config = config
        self.keys = keys
        self.registry = Registry(config, providers)
        self.upstream = UpstreamClient()
        self.metrics = RouterMetrics()
        self.started = int(time.time())

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        too_large = APIError(
            413, f"the request body exceeds {limit} bytes", code="request_too_large"
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise too_large
        return bytes(body)

    async def _serve(
        self, request: Request, model: type[ChatCompletionRequest | CompletionRequest]
    ) -> Response:
        endpoint: Endpoint = "chat" if model is ChatCompletionRequest else "completions"
        observation: Observation | None = None
        # Once a stream is set up, its wrapper reports the request to the metrics.
        streaming = False
        try:
            self.keys.check(request.headers.get("authorization"))
            raw, body = parse_body(await self._read_body(request), model)
            target = self.registry.find(body.model)
            if target is None:
                raise APIError(
                    404,
                    f"the model {body.model!r} does not exist",
                    param="model",
                    code="model_not_found",
                )
            request_id = uuid.uuid4().hex
            observation = self.metrics.start(body.model, target.owned_by, endpoint)
            if not body.stream:
                if isinstance(target, ProviderModel):
                    work = self.upstream.complete(target, raw, body, endpoint, request_id)
                else:
                    work = first_party.complete(target, body, request_id)
                result = await _unless_disconnected(request, work)
                observation.record_usage(result.get("usage"))
                self.metrics.finish(observation, 200)
                return JSONResponse(result)
            if isinstance(target, ProviderModel):
                events = self.upstream.stream(target, raw, body, endpoint, request_id)
            else:
                events = first_party.stream(target, body, request_id)
            streaming = True
            observed = self._observed(events, observation, body.include_usage)
            try:
                first = await anext(observed)
            except BaseException:
                await observed.aclose()
                raise
            return StreamingResponse(
                sse_body(first, observed),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        except APIError as error:
            if observation is None:
                self.metrics.unrouted(endpoint, error.status)
            elif not streaming:
                self.metrics.finish(observation, error.status)
            return error.response()
        except BaseException:
            if observation is not None and not streaming:
                self.metrics.finish(observation, 500)
            raise

    async def _observed(
        self,
        batches: AsyncGenerator[list[dict[str, Any]]],
        observation: Observation,
        include_usage: bool,
    ) -> AsyncGenerator[list[dict[str, Any]]]:
        """Pass the chunks on, noting the first token and the usage for the metrics.

        Every provider ends its stream with a usage chunk (``choices: []``) so the token
        counters never miss a request; it reaches the client only if the client asked
        (``stream_options.include_usage``)."""
        status = 200
        try:
            async for batch in batches:
                passed = []
                for chunk in batch:
                    usage = chunk.get("usage")
                    if usage and not chunk.get("choices"):
                        observation.record_usage(usage)
                        if not include_usage:
                            continue
                    elif observation.first_token_at is None and _has_content(chunk):
                        observation.first_token_at = time.perf_counter()
                    passed.append(chunk)
                if passed:
                    yield passed
        except APIError as error:
            status = error.status
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = 499  # the client went away
            raise
        except Exception:
            status = 500
            raise
        finally:
            await batches.aclose()
            self.metrics.finish(observation, status)

    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, ChatCompletionRequest)

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, CompletionRequest)

    async def models(self, request: Request) -> Response:
        try:
            self.keys.check(request.headers.get("authorization"))
        except APIError as error:
            return error.response()
        data = [
            {"id": m.model_id, "object": "model", "created": self.started, "owned_by": m.owned_by}
            for m in self.registry.models()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def metrics_text(self, request: Request) -> Response:
        loads = await self.registry.loads()
        return Response(self.metrics.render(loads), media_type=CONTENT_TYPE)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        states = await self.registry.readiness()
        ready = bool(states) and all(state == "serving" for state in states.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "engines": states},
            status_code=200 if ready else 503,
        )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return APIError(error.status_code, error.detail, code="http_error").response()


async def _unexpected_error(request: Request, error: Exception) -> Response:
    # Starlette re-raises after this answer, so the server logs the traceback once.
    return server_error(500, "internal error", "internal_error").response()


def create_app(
    config: RouterConfig,
    *,
    insecure_no_auth: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Starlette:
    """Build the app; raises InsecureConfigError when no client key is configured and
    ConfigError when a provider's key is not in the environment."""
    keys = KeyChecker(config.auth.resolve_keys(environ), insecure_no_auth=insecure_no_auth)
    router = Router(config, keys, config.resolve_providers(environ))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        router.registry.open()
        router.upstream.open()
        resolving = asyncio.create_task(router.registry.resolve_until_done())
        try:
            yield
        finally:
            resolving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resolving
            await router.registry.close()
            await router.upstream.close()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", router.chat_completions, methods=["POST"]),
            Route("/v1/completions", router.completions, methods=["POST"]),
            Route("/v1/models", router.models, methods=["GET"]),
            Route("/metrics", router.metrics_text, methods=["GET"]),
            Route("/health", router.health, methods=["GET"]),
            Route("/ready", router.ready, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
        lifespan=lifespan,
    )
    app.state.router = router
    return app
