r"""The router's HTTP API: OpenAI's chat completions, completions and models endpoints,
liveness and readiness probes, and Prometheus metrics.

Every failure is answered in OpenAI's error shape with a meaningful status (400 with the
field named, 401, 404, 413, 503, 504); an unexpected exception is logged here and the
client gets a generic 500, never a stack trace. A failure after a stream has started
cannot change the status any more, so it is sent as a last ``data: {"error": ...}``
event, as OpenRouter does.

The handlers here only put the pieces together: ``body`` reads and checks a request,
the registry's models hand out ``backend``\ s that serve it (first-party or a
provider's, alike), ``config_store`` holds the routers in force, and ``fast_path`` is
the ASGI entry in front of it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.router import wire_json
from switchyard.router.admin import Admin
from switchyard.router.auth import KeyChecker
from switchyard.router.backend import Backend, Call
from switchyard.router.body import parse_body, read_body
from switchyard.router.config import RouterConfig
from switchyard.router.config_store import ConfigStore
from switchyard.router.errors import APIError, server_error
from switchyard.router.fast_path import RouterApp
from switchyard.router.metrics import CONTENT_TYPE, Observation, RouterMetrics
from switchyard.router.openai_types import (
    ROUTER_ONLY_FIELDS,
    ChatCompletionRequest,
    CompletionRequest,
    Endpoint,
    OpenAIRequest,
)
from switchyard.router.redaction import Redactor
from switchyard.router.registry import Registry
from switchyard.router.responses import DisconnectWatch, EventStream
from switchyard.router.routing import preferences
from switchyard.router.routing.attempts import Attempt, FallbackRun, Limits, has_content
from switchyard.router.routing.health import HealthBoard
from switchyard.router.routing.live_stats import LiveStats
from switchyard.router.routing.table import ROUTER_PREFIX, apply_variant

log = logging.getLogger(__name__)


def _request_id() -> str:
    # Unique, not secret: 128 random bits from the process's PRNG, where uuid4 would make
    # a system call for every request.
    return f"{random.getrandbits(128):032x}"


def _seconds(milliseconds: int | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000


class Router:
    """The request handlers, with what they share."""

    def __init__(
        self, store: ConfigStore, keys: KeyChecker, registry: Registry, health: HealthBoard
    ) -> None:
        self.store = store
        self.keys = keys
        self.registry = registry
        self.target_health = health
        self.metrics = RouterMetrics()
        self.stats = LiveStats()
        self.started = int(time.time())
        # Read once: only the routers and health settings change without a restart.
        self._max_body_bytes = store.config.max_body_bytes

    async def _serve(
        self, request: Request, model: type[ChatCompletionRequest | CompletionRequest]
    ) -> Response:
        endpoint: Endpoint = "chat" if model is ChatCompletionRequest else "completions"
        observation: Observation | None = None
        # Once a stream is set up, its wrapper reports the request to the metrics.
        streaming = False
        try:
            self.keys.check(request.headers.getlist("authorization"))
            raw, body = parse_body(await read_body(request, self._max_body_bytes), model)
            request_id = _request_id()
            backend = self._sole_backend(raw, body, endpoint, request_id)
            call: Call
            if backend is not None:
                observation = self.metrics.start(body.model, backend.provider, endpoint)
                call = backend
            else:
                run, body = self._fallback_run(raw, body, endpoint, request_id)
                # Labelled "router" until an attempt serves it (see _attempted).
                observation = self.metrics.start(body.model, "router", endpoint)
                run.on_attempt = functools.partial(self._attempted, observation)
                call = run
            # Nothing above waits once the body is read, so from here the watch covers the
            # whole request: a client that leaves before the answer, or before a stream's
            # first token, cancels the engine or provider call. A stream takes it over.
            watch = DisconnectWatch(request.receive)
            try:
                if not body.stream:
                    try:
                        result = await call.complete()
                    finally:
                        watch.stop()
                    observation.record_usage(result.get("usage"))
                    self.metrics.finish(observation, 200)
                    return wire_json.JSONBody(result)
                streaming = True
                observed = self._observed(call.stream(), observation, body.include_usage)
                try:
                    first = await anext(observed)
                except BaseException:
                    watch.stop()
                    await observed.aclose()
                    raise
                return EventStream(first, observed, watch)
            except asyncio.CancelledError as cancelled:
                watch.absorb(cancelled)
                raise APIError(
                    499, "the client closed the request", code="client_closed_request"
                ) from None
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

    def _sole_backend(
        self, raw: dict[str, Any], body: OpenAIRequest, endpoint: Endpoint, request_id: str
    ) -> Backend | None:
        """The one backend of a plain request, served without the fallback machinery;
        None when the request needs a decision (a named router, OpenRouter extras,
        several hosts of a model name, several engine replicas)."""
        if body.models or body.provider is not None:
            return None
        served = self.registry.find(body.model)
        return None if served is None else served.sole_backend(raw, body, endpoint, request_id)

    def _fallback_run(
        self,
        raw: dict[str, Any],
        body: OpenAIRequest,
        endpoint: Endpoint,
        request_id: str,
    ) -> tuple[FallbackRun, OpenAIRequest]:
        """The candidates to try, in order, and the body they get (a variant's
        overrides applied); raises 404/400 when there is nothing to try."""
        if any(name in raw for name in ROUTER_ONLY_FIELDS):
            raw = {k: v for k, v in raw.items() if k not in ROUTER_ONLY_FIELDS}
        offers = self.registry.offers()
        labels: dict[str, str] = {}
        limits = Limits()
        if body.model.startswith(ROUTER_PREFIX):
            decision = self.store.routing.decide(body.model.removeprefix(ROUTER_PREFIX), body)
            variant = decision.variant
            raw = apply_variant(raw, variant, body)
            body = type(body).model_validate(raw)
            chain = preferences.chain(
                variant.model, variant.fallbacks, offers, None, self.stats, endpoint
            )
            labels = decision.labels()
            loop_now = asyncio.get_running_loop().time()
            limits = Limits(
                attempt_timeout_s=_seconds(variant.attempt_timeout_ms),
                ttft_timeout_s=_seconds(variant.ttft_timeout_ms),
                deadline_s=None
                if decision.deadline_ms is None
                else loop_now + decision.deadline_ms / 1000,
            )
        else:
            chain = preferences.chain(
                body.model, body.models or [], offers, body.provider, self.stats, endpoint
            )
        backends: list[Backend] = []
        available = self.target_health.available
        for offer in chain:
            served = self.registry.find(offer.model_id)
            if served is not None:
                backends.extend(served.backends(raw, body, endpoint, request_id, available))
        run = FallbackRun(backends, limits, self.target_health, self.stats, labels)
        return run, body

    def _attempted(self, observation: Observation, attempt: Attempt) -> None:
        """Count one attempt of a routed request; the one that succeeds served it, so
        the request's latency, first token and tokens go under its model and provider."""
        self.metrics.attempt(attempt)
        if attempt.status == 200:
            observation.served_by(attempt.model, attempt.provider)

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
                    elif observation.first_token_at is None and has_content(chunk):
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
            self.keys.check(request.headers.getlist("authorization"))
        except APIError as error:
            return error.response()
        data = [
            {"id": m.model_id, "object": "model", "created": self.started, "owned_by": m.owned_by}
            for m in self.registry.models()
        ]
        data += [
            {
                "id": ROUTER_PREFIX + name,
                "object": "model",
                "created": self.started,
                "owned_by": "router",
            }
            for name in self.store.routing.routers
        ]
        return wire_json.JSONBody({"object": "list", "data": data})

    async def metrics_text(self, request: Request) -> Response:
        loads = await self.registry.loads()
        self.metrics.set_target_health(self.target_health.report(self.registry.health_targets()))
        return Response(self.metrics.render(loads), media_type=CONTENT_TYPE)

    async def health(self, request: Request) -> Response:
        return wire_json.JSONBody({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Ready when every engine serves and its model is known; providers have nothing
        to wait for, so a router with providers only is ready at once."""
        states = await self.registry.readiness()
        ready = all(state == "serving" for state in states.values())
        return wire_json.JSONBody(
            {"status": "ready" if ready else "unavailable", "engines": states},
            status_code=200 if ready else 503,
        )


def _on_hangup(callback: Callable[[], None]) -> bool:
    """Reload on SIGHUP where signals can be handled (the main thread of a process);
    whether the handler is in place."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, callback)
    except (ValueError, RuntimeError, NotImplementedError):
        return False
    return True


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return APIError(error.status_code, error.detail, code="http_error").response()


async def _unexpected_error(request: Request, error: Exception) -> Response:
    # Starlette re-raises after this answer, so the server logs the traceback once.
    return server_error(500, "internal error", "internal_error").response()


def create_app(
    config: RouterConfig,
    *,
    config_path: str | None = None,
    insecure_no_auth: bool = False,
    environ: Mapping[str, str] | None = None,
) -> RouterApp:
    """Build the app; raises InsecureConfigError when no client key is configured and
    ConfigError when a provider's key is not in the environment. With ``config_path``
    the admin API's reload and SIGHUP re-read that file."""
    client_keys = config.auth.resolve_keys(environ)
    keys = KeyChecker(client_keys, insecure_no_auth=insecure_no_auth)
    admin_keys = config.admin.resolve_keys(environ)
    providers = config.resolve_providers(environ)
    # Every secret the router holds, to be kept out of what providers say.
    redact = Redactor([*client_keys, *admin_keys, *(p.api_key for p in providers)])
    registry = Registry(config, providers, redact)
    health = HealthBoard(config.health.failure_threshold, config.health.cooldown_s)
    store = ConfigStore(config, health, config_path)
    router = Router(store, keys, registry, health)
    admin = Admin(store, health, registry, KeyChecker(admin_keys) if admin_keys else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry.open()
        resolving = asyncio.create_task(registry.resolve_until_done())
        hangup = config_path is not None and _on_hangup(store.reload_or_log)
        try:
            yield
        finally:
            if hangup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            resolving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resolving
            await registry.close()

    completions = {
        "/v1/chat/completions": router.chat_completions,
        "/v1/completions": router.completions,
    }
    app = Starlette(
        routes=[
            # POSTs never get here (RouterApp); the routes answer other methods with 405.
            Route("/v1/chat/completions", router.chat_completions, methods=["POST"]),
            Route("/v1/completions", router.completions, methods=["POST"]),
            Route("/v1/models", router.models, methods=["GET"]),
            Route("/metrics", router.metrics_text, methods=["GET"]),
            Route("/health", router.health, methods=["GET"]),
            Route("/ready", router.ready, methods=["GET"]),
            *admin.routes(),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
        lifespan=lifespan,
    )
    app.state.router = router
    return RouterApp(app, completions)
