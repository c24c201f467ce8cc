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
import functools
import logging
import random
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from switchyard.common.validation import problems
from switchyard.router import wire_json
from switchyard.router.admin import Admin, reload_from
from switchyard.router.auth import KeyChecker
from switchyard.router.config import (
    ConfigError,
    ResolvedProvider,
    RouterConfig,
    parse_config,
    read_config_data,
)
from switchyard.router.errors import APIError, invalid_request, server_error
from switchyard.router.metrics import CONTENT_TYPE, Observation, RouterMetrics
from switchyard.router.openai_types import (
    ROUTER_ONLY_FIELDS,
    ChatCompletionRequest,
    CompletionRequest,
)
from switchyard.router.providers import first_party
from switchyard.router.providers.upstream import Endpoint, ProviderModel, UpstreamClient
from switchyard.router.registry import Engine, FirstPartyModel, Registry
from switchyard.router.replicas import ReplicaSet
from switchyard.router.responses import DisconnectWatch, EventStream
from switchyard.router.routing import preferences
from switchyard.router.routing.attempts import (
    Attempt,
    Candidate,
    FallbackRun,
    Limits,
    has_content,
)
from switchyard.router.routing.health import HealthBoard
from switchyard.router.routing.live_stats import LiveStats
from switchyard.router.routing.table import ROUTER_PREFIX, RoutingTable, apply_variant

log = logging.getLogger(__name__)
Handler = Callable[[Request], Coroutine[Any, Any, Response]]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# Deepest nesting of arrays and objects accepted in a request body. Real requests stay
# far below (OpenAI caps JSON schemas at 10 levels); the limit keeps every later step
# (validation, re-encoding for a provider) clear of Python's recursion limit.
MAX_JSON_DEPTH = 128


def parse_body(body: bytes, model: type[M]) -> tuple[dict[str, Any], M]:
    """The raw JSON object (forwarded to OpenAI-compatible providers as it came) and its
    validated model (what the router itself reads)."""
    try:
        data = wire_json.loads(body)
    except wire_json.DecodeError as error:
        raise invalid_request(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise invalid_request("the request body must be a JSON object")
    if _nests_deeper_than(data, MAX_JSON_DEPTH):
        raise _too_deep()
    try:
        return data, model.model_validate(data)
    except ValidationError as error:
        first = problems(error)[0]
        raise invalid_request(str(first), first.path) from None


def _too_deep() -> APIError:
    return invalid_request(
        f"the request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
    )


def _nests_deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels; iterative, so any
    depth the decoder could build is measured without recursing."""
    pending: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while pending:
        container, depth = pending.pop()
        if depth > limit:
            return True
        for child in container.values() if isinstance(container, dict) else container:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return False


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, cancelled (and with it the engine or provider call) if the client
    leaves first: a server does not cancel a handler still computing a whole response."""
    watch = DisconnectWatch(request.receive)
    try:
        return await work
    except asyncio.CancelledError as error:
        watch.absorb(error)
        raise APIError(499, "the client closed the request", code="client_closed_request") from None
    finally:
        watch.stop()


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body exceeds {limit} bytes", code="request_too_large")


def _request_id() -> str:
    # Unique, not secret: 128 random bits from the process's PRNG, where uuid4 would make
    # a system call for every request.
    return f"{random.getrandbits(128):032x}"


def _seconds(milliseconds: int | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000


class _ProviderCall:
    """One request to one third-party model."""

    def __init__(
        self,
        upstream: UpstreamClient,
        target: ProviderModel,
        raw: dict[str, Any],
        body: ChatCompletionRequest | CompletionRequest,
        endpoint: Endpoint,
        request_id: str,
    ) -> None:
        self._args = (target, raw, body, endpoint, request_id)
        self._upstream = upstream

    def complete(self) -> Coroutine[Any, Any, dict[str, Any]]:
        return self._upstream.complete(*self._args)

    def stream(self) -> AsyncGenerator[list[dict[str, Any]]]:
        return self._upstream.stream(*self._args)


class _EngineCall:
    """One request to one engine; with a replica set, counted in its in-flight figures
    and its prefix index."""

    def __init__(
        self,
        engine: Engine,
        body: ChatCompletionRequest | CompletionRequest,
        request_id: str,
        *,
        replicas: ReplicaSet[Engine] | None = None,
        prompt: str = "",
    ) -> None:
        self._engine = engine
        self._body = body
        self._request_id = request_id
        self._replicas = replicas
        self._prompt = prompt

    async def complete(self) -> dict[str, Any]:
        if self._replicas is None:
            return await first_party.complete(self._engine, self._body, self._request_id)
        self._replicas.started(self._engine, self._prompt)
        try:
            return await first_party.complete(self._engine, self._body, self._request_id)
        finally:
            self._replicas.finished(self._engine)

    def stream(self) -> AsyncGenerator[list[dict[str, Any]]]:
        events = first_party.stream(self._engine, self._body, self._request_id)
        return events if self._replicas is None else self._counted(events)

    async def _counted(
        self, events: AsyncGenerator[list[dict[str, Any]]]
    ) -> AsyncGenerator[list[dict[str, Any]]]:
        assert self._replicas is not None
        self._replicas.started(self._engine, self._prompt)
        try:
            async for batch in events:
                yield batch
        finally:
            await events.aclose()
            self._replicas.finished(self._engine)


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
        # Where reloads read from; None when the config did not come from a file.
        self.config_path: str | None = None
        # The config as data, what admin updates are validated against.
        self.config_data: dict[str, Any] = config.model_dump(mode="json")
        # Replaced whole by a reload or an admin update; a request keeps the table it
        # started with.
        self.routing = RoutingTable(config.routers)
        self.target_health = HealthBoard(config.health.failure_threshold, config.health.cooldown_s)
        self.stats = LiveStats()

    def apply(self, config: RouterConfig, data: dict[str, Any]) -> None:
        """Put a validated config's routers and health settings in force, in one
        assignment each; engines, providers and keys need a restart."""
        self.routing = RoutingTable(config.routers)
        self.target_health.failure_threshold = config.health.failure_threshold
        self.target_health.cooldown_s = config.health.cooldown_s
        self.config = self.config.model_copy(
            update={"routers": config.routers, "health": config.health}
        )
        self.config_data = {**self.config_data, "routers": data.get("routers") or {}}
        if "health" in data:
            self.config_data["health"] = data["health"]

    def reload(self) -> None:
        """Re-read the config file; raises ConfigError, changing nothing, if it is bad."""
        if self.config_path is None:
            raise ConfigError("the router was not started from a config file")
        data = read_config_data(self.config_path)
        config = parse_config(data)
        assert isinstance(data, dict)  # parse_config refuses anything else
        restart = sorted(
            key
            for key in {*data, *self.config_data} - {"routers", "health"}
            if getattr(config, key, None) != getattr(self.config, key, None)
        )
        if restart:
            log.warning("reload: changes to %s take effect at the next restart", restart)
        self.apply(config, data)
        log.info("reload: %d routers in force", len(config.routers))

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise _too_large(limit)
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
            request_id = _request_id()
            target = self._direct_target(body)
            if target is not None:
                observation = self.metrics.start(body.model, target.owned_by, endpoint)
                if isinstance(target, ProviderModel):
                    call = _ProviderCall(self.upstream, target, raw, body, endpoint, request_id)
                else:
                    call = _EngineCall(target, body, request_id)
            else:
                run, body = self._fallback_run(raw, body, endpoint, request_id)
                # Labelled "router" until an attempt serves it (see _attempted).
                observation = self.metrics.start(body.model, "router", endpoint)
                run.on_attempt = functools.partial(self._attempted, observation)
                call = run
            if not body.stream:
                result = await _unless_disconnected(request, call.complete())
                observation.record_usage(result.get("usage"))
                self.metrics.finish(observation, 200)
                return wire_json.JSONBody(result)
            events = call.stream()
            streaming = True
            observed = self._observed(events, observation, body.include_usage)
            try:
                first = await anext(observed)
            except BaseException:
                await observed.aclose()
                raise
            return EventStream(first, observed)
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

    def _direct_target(
        self, body: ChatCompletionRequest | CompletionRequest
    ) -> ProviderModel | Engine | None:
        """The one target of a plain request, served without the fallback machinery;
        None when the request needs a decision (a named router, OpenRouter extras,
        several hosts of a model name, several engine replicas)."""
        if body.models or body.provider is not None:
            return None
        target = self.registry.find(body.model)
        if isinstance(target, ProviderModel):
            return target
        if isinstance(target, FirstPartyModel) and len(target.replicas.replicas) == 1:
            return target.replicas.replicas[0]
        return None

    def _fallback_run(
        self,
        raw: dict[str, Any],
        body: ChatCompletionRequest | CompletionRequest,
        endpoint: Endpoint,
        request_id: str,
    ) -> tuple[FallbackRun, ChatCompletionRequest | CompletionRequest]:
        """The candidates to try, in order, and the body they get (a variant's
        overrides applied); raises 404/400 when there is nothing to try."""
        if any(name in raw for name in ROUTER_ONLY_FIELDS):
            raw = {k: v for k, v in raw.items() if k not in ROUTER_ONLY_FIELDS}
        offers = self.registry.offers()
        labels: dict[str, str] = {}
        limits = Limits()
        if body.model.startswith(ROUTER_PREFIX):
            decision = self.routing.decide(body.model.removeprefix(ROUTER_PREFIX), body)
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
        candidates = []
        for offer in chain:
            target = self.registry.find(offer.model_id)
            if isinstance(target, ProviderModel):
                call = _ProviderCall(self.upstream, target, raw, body, endpoint, request_id)
                candidates.append(
                    Candidate(
                        target.model_id,
                        target.provider.name,
                        target.provider.name,
                        call.complete,
                        call.stream,
                    )
                )
            elif isinstance(target, FirstPartyModel):
                candidates.extend(self._replica_candidates(target, body, request_id))
        run = FallbackRun(candidates, limits, self.target_health, self.stats, labels)
        return run, body

    def _attempted(self, observation: Observation, attempt: Attempt) -> None:
        """Count one attempt of a routed request; the one that succeeds served it, so
        the request's latency, first token and tokens go under its model and provider."""
        self.metrics.attempt(attempt)
        if attempt.status == 200:
            observation.served_by(attempt.model, attempt.provider)

    def _replica_candidates(
        self,
        model: FirstPartyModel,
        body: ChatCompletionRequest | CompletionRequest,
        request_id: str,
    ) -> list[Candidate]:
        """One candidate per replica, in the replica policy's order for this prompt."""
        prompt = body.prompt_text()
        replicas = model.replicas
        ordered = replicas.order(
            prompt,
            body.user,
            available=lambda engine: self.target_health.available(engine.health_key),
        )
        candidates = []
        for engine in ordered:
            call = _EngineCall(engine, body, request_id, replicas=replicas, prompt=prompt)
            candidates.append(
                Candidate(
                    model.model_id, "switchyard", engine.health_key, call.complete, call.stream
                )
            )
        return candidates

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
            self.keys.check(request.headers.get("authorization"))
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
            for name in self.routing.routers
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


class RouterApp:
    """The router's ASGI app: POSTs to the completion endpoints go straight to their
    handler, everything else to the Starlette app behind.

    Starlette's error and exception middleware and its route scan cost a streamed request
    several percent of the router's time (two wrappers around every ``send`` among them);
    the two endpoints that carry all the traffic skip them. Their handler answers every
    error itself, so only a bug reaches the ``except`` here, which logs it and answers a
    generic 500 as Starlette's error middleware would. Other paths, and a wrong method on
    these (405), go through Starlette as before.
    """

    def __init__(self, app: Starlette, completions: Mapping[str, Handler]) -> None:
        self.app = app
        self.completions = completions
        # As on a Starlette app, so callers find the Router at ``app.state.router``.
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.completions.get(scope["path"]) if scope.get("method") == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive, send))
        except ClientDisconnect:
            return  # the client left while sending its body: nobody to answer
        except Exception:
            log.exception("unexpected error")
            response = server_error(500, "internal error", "internal_error").response()
        await response(scope, receive, send)


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
    keys = KeyChecker(config.auth.resolve_keys(environ), insecure_no_auth=insecure_no_auth)
    router = Router(config, keys, config.resolve_providers(environ))
    router.config_path = config_path
    admin_keys = config.admin.resolve_keys(environ)
    admin = Admin(router, KeyChecker(admin_keys) if admin_keys else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        router.registry.open()
        router.upstream.open()
        resolving = asyncio.create_task(router.registry.resolve_until_done())
        hangup = config_path is not None and _on_hangup(lambda: reload_from(router))
        try:
            yield
        finally:
            if hangup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            resolving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resolving
            await router.registry.close()
            await router.upstream.close()

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
