"""The engine's gRPC server: ``switchyard.engine.v1.Engine`` over one ModelRuntime.

The port opens before the model has loaded, with the health service reporting
NOT_SERVING, so orchestrators (and the router) can tell "starting" from "down"; engine
RPCs answer UNAVAILABLE until the runtime is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from vllm.exceptions import VLLMClientError
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.v1.engine.exceptions import EngineGenerateError

from switchyard.api.v1 import engine_pb2, engine_pb2_grpc
from switchyard.engine.config import RuntimeConfig
from switchyard.engine.requests import InvalidRequest, prepare_request, rejected_by_vllm
from switchyard.engine.runtime import DuplicateRequestId, ModelRuntime

log = logging.getLogger(__name__)

SERVICE_NAME = engine_pb2.DESCRIPTOR.services_by_name["Engine"].full_name
FINISH_REASONS = {
    "stop": engine_pb2.STOP,
    "length": engine_pb2.LENGTH,
    "abort": engine_pb2.ABORT,
}
# After the grace period, how long aborted streams get to send their final message
# before the server cuts every call that is still open.
ABORT_FLUSH_S = 5.0


def _logprobs(output, top_k: int | None) -> list[engine_pb2.TokenLogprob]:
    """The sampled token's logprob and the ``top_k`` most likely alternatives.

    vLLM adds the sampled token to the candidates even when it ranks below ``top_k``;
    it is reported as the chosen token, not among the top ones.
    """
    if not output.logprobs or top_k is None:
        return []
    entries = []
    for token_id, candidates in zip(output.token_ids, output.logprobs, strict=True):
        chosen = candidates[token_id]
        top = sorted(
            (c for c in candidates.items() if c[1].rank is not None and 0 < c[1].rank <= top_k),
            key=lambda item: item[1].rank,
        )
        entries.append(
            engine_pb2.TokenLogprob(
                token_id=token_id,
                logprob=chosen.logprob,
                token=chosen.decoded_token or "",
                top=[
                    engine_pb2.TopLogprob(
                        token_id=i, logprob=c.logprob, token=c.decoded_token or ""
                    )
                    for i, c in top
                ],
            )
        )
    return entries


@dataclass
class _RequestTrace:
    """What one request's stream has shown so far, for its Complete message."""

    received: float
    first_token_at: float | None = None
    completion_tokens: int = 0
    last_token_id: int | None = None
    final: RequestOutput | None = None

    def observe(self, output: RequestOutput) -> CompletionOutput:
        piece = output.outputs[0]
        if piece.token_ids:
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            self.completion_tokens += len(piece.token_ids)
            self.last_token_id = piece.token_ids[-1]
        self.final = output
        return piece

    def complete(self, prompt_tokens: int, eos_token_ids: tuple[int, ...]) -> engine_pb2.Complete:
        final = self.final
        piece = final.outputs[0] if final is not None else None
        # A stream that ended without a finished output was cut short: call it an abort.
        reason = piece.finish_reason if piece is not None and final.finished else "abort"
        complete = engine_pb2.Complete(
            finish_reason=FINISH_REASONS.get(reason, engine_pb2.FINISH_REASON_UNSPECIFIED),
            usage=engine_pb2.Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=self.completion_tokens,
                cached_prompt_tokens=(final.num_cached_tokens or 0) if final else 0,
            ),
            timings=engine_pb2.Timings(
                time_to_first_token_s=(self.first_token_at - self.received)
                if self.first_token_at
                else 0.0,
                e2e_s=time.monotonic() - self.received,
            ),
        )
        metrics = final.metrics if final is not None else None
        if metrics is not None and metrics.scheduled_ts and metrics.queued_ts:
            complete.timings.queue_time_s = max(0.0, metrics.scheduled_ts - metrics.queued_ts)
        spec = piece.spec_decode_metrics if piece is not None else None
        if spec is not None:
            # vLLM's per-request summary: drafted tokens, and a histogram of how many
            # drafts each verification step accepted.
            complete.spec_draft_tokens = spec.num_draft_tokens
            complete.spec_accepted_tokens = sum(j * n for j, n in enumerate(spec.histogram))
        stop = piece.stop_reason if piece is not None else None
        if isinstance(stop, str):
            complete.stop_str = stop
        elif isinstance(stop, int):
            complete.stop_token_id = stop
        elif reason == "stop" and self.last_token_id in eos_token_ids:
            # vLLM leaves stop_reason empty for EOS; name the token that ended it.
            complete.stop_token_id = self.last_token_id
        return complete


def _request_fault(error: Exception, *, streamed: bool) -> Exception | None:
    """The error by which vLLM refused the request itself, if ``error`` is one.

    vLLM raises its validation errors as they are; any other ValueError while it adds the
    request (before any output) reaches us wrapped in an EngineGenerateError.
    """
    if isinstance(error, VLLMClientError):
        return error
    if (
        not streamed
        and isinstance(error, EngineGenerateError)
        and isinstance(error.__cause__, ValueError)
    ):
        return error.__cause__
    return None


class EngineServicer(engine_pb2_grpc.EngineServicer):
    def __init__(self) -> None:
        self.runtime: ModelRuntime | None = None
        # Set at shutdown: no new request reaches vLLM while the running ones drain.
        self.draining = False

    async def _ready(self, context: grpc.aio.ServicerContext) -> ModelRuntime:
        if self.runtime is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the engine is still loading its model"
            )
        return self.runtime

    async def Generate(
        self, request: engine_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[engine_pb2.GenerateResponse]:
        runtime = await self._ready(context)
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the engine is shutting down")
        received = time.monotonic()
        try:
            request_id = runtime.new_request_id(request.request_id)
            prepared = prepare_request(request, runtime.tokenizer, runtime.limits)
        except DuplicateRequestId as error:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(error))
        except InvalidRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

        trace = _RequestTrace(received=received)
        try:
            async for output in runtime.generate(request_id, prepared):
                piece = trace.observe(output)
                if piece.token_ids or piece.text:
                    yield engine_pb2.GenerateResponse(
                        request_id=request_id,
                        chunk=engine_pb2.Chunk(
                            text=piece.text,
                            token_ids=piece.token_ids,
                            logprobs=_logprobs(piece, prepared.sampling_params.logprobs),
                        ),
                    )
        except asyncio.CancelledError:
            # The client went away or the server is stopping: vLLM's generate() has
            # already aborted the request on its way out.
            raise
        except Exception as error:
            fault = _request_fault(error, streamed=trace.final is not None)
            if fault is not None:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, str(rejected_by_vllm(fault, "input"))
                )
            # The engine failed: say so instead of hanging.
            log.exception("request %s failed in the engine", request_id)
            code = grpc.StatusCode.UNAVAILABLE if runtime.llm.errored else grpc.StatusCode.INTERNAL
            await context.abort(code, f"engine error: {type(error).__name__}: {error}")

        yield engine_pb2.GenerateResponse(
            request_id=request_id,
            complete=trace.complete(len(prepared.prompt_token_ids), runtime.limits.eos_token_ids),
        )

    async def Abort(
        self, request: engine_pb2.AbortRequest, context: grpc.aio.ServicerContext
    ) -> engine_pb2.AbortResponse:
        runtime = await self._ready(context)
        return engine_pb2.AbortResponse(aborted=await runtime.abort(list(request.request_ids)))

    async def GetModelInfo(
        self, request: engine_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> engine_pb2.ModelInfo:
        runtime = await self._ready(context)
        model_config = runtime.llm.model_config
        cache = runtime.llm.vllm_config.cache_config
        info = engine_pb2.ModelInfo(
            served_model_name=runtime.served_name,
            model_path=runtime.model_path,
            architecture=(model_config.architectures or [""])[0],
            max_context_length=runtime.limits.max_context_length,
            vocab_size=runtime.limits.vocab_size,
            eos_token_ids=runtime.limits.eos_token_ids,
            dtype=str(model_config.dtype).removeprefix("torch."),
            quantization=model_config.quantization or "",
            speculative_config=runtime.speculative_config_json(),
            kv_cache_capacity_tokens=runtime.kv_cache_capacity_tokens(),
            kv_block_size=cache.block_size,
            has_chat_template=bool(runtime.tokenizer.chat_template),
            default_max_tokens=runtime.limits.default_max_tokens,
        )
        if runtime.tokenizer.bos_token_id is not None:
            info.bos_token_id = runtime.tokenizer.bos_token_id
        return info

    async def GetLoads(
        self, request: engine_pb2.GetLoadsRequest, context: grpc.aio.ServicerContext
    ) -> engine_pb2.Loads:
        runtime = await self._ready(context)
        c = runtime.loads()
        return engine_pb2.Loads(
            running_requests=c.running,
            waiting_requests=c.waiting,
            kv_cache_usage=c.kv_cache_usage,
            prefix_cache_queries=c.prefix_cache_queries,
            prefix_cache_hits=c.prefix_cache_hits,
            spec_drafts=c.spec_drafts,
            spec_draft_tokens=c.spec_draft_tokens,
            spec_accepted_tokens=c.spec_accepted_tokens,
            spec_accepted_tokens_per_position=c.spec_accepted_per_position,
            requests_completed=c.requests_completed,
        )


async def serve(
    config: RuntimeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 50051,
    shutdown_grace_s: float = 10.0,
) -> int:
    """Run until SIGTERM/SIGINT; in-flight requests get ``shutdown_grace_s`` to finish."""
    server = grpc.aio.server()
    servicer = EngineServicer()
    engine_pb2_grpc.add_EngineServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the engine's gRPC port {host}:{port}")
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info("engine gRPC listening on %s:%d; loading %s", host, bound, config.model)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    # Loading blocks for a minute; keep the event loop (and the health service) live.
    loading = asyncio.ensure_future(asyncio.to_thread(ModelRuntime.start, config))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set() and not loading.done():
        log.info("stop requested while loading; waiting for the load to finish to clean up")
    runtime = await loading
    servicer.runtime = runtime
    exit_code = 0
    try:
        if not stop.is_set():
            for service in ("", SERVICE_NAME):
                await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
            log.info("engine ready: %s on %s:%d", runtime.served_name, host, bound)
            print(_ready_banner(runtime.served_name, host, bound), flush=True)
            if await _until_stop_or_engine_death(stop, runtime):
                log.error("the vLLM engine died; exiting so a supervisor can restart it")
                exit_code = 1
        await health_servicer.enter_graceful_shutdown()
        if exit_code == 0:
            await _drain(server, servicer, runtime, shutdown_grace_s)
        else:
            await server.stop(0)
    finally:
        with contextlib.suppress(Exception):
            runtime.shutdown()
    return exit_code


async def _drain(
    server: grpc.aio.Server, servicer: EngineServicer, runtime: ModelRuntime, grace_s: float
) -> None:
    """Refuse new calls, give in-flight requests ``grace_s`` to finish, abort the rest.

    Aborting them in vLLM, rather than letting ``server.stop`` cancel their calls at its
    deadline, ends each stream with its Complete message (finish_reason ABORT), as the
    API promises; stop()'s deadline stays as the backstop for a stream that still hangs.
    """
    log.info("shutting down: draining in-flight requests for up to %.0fs", grace_s)
    servicer.draining = True
    stopping = asyncio.ensure_future(server.stop(grace_s + ABORT_FLUSH_S))
    try:
        deadline = time.monotonic() + grace_s
        while runtime.running_request_ids() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        left = runtime.running_request_ids()
        if left:
            log.info("aborting %d request(s) still running after the grace period", len(left))
            await runtime.abort(left)
    finally:
        await stopping


async def _until_stop_or_engine_death(
    stop: asyncio.Event, runtime: ModelRuntime, poll_s: float = 0.5
) -> bool:
    """Wait for a stop signal; return True if the engine died first.

    A dead engine answers every request with UNAVAILABLE; staying up would hide that
    from whatever supervises the process.
    """
    while not stop.is_set():
        if runtime.llm.errored:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_s)
    return False


def python_example(target: str) -> str:
    """A complete script that calls the engine at ``target`` (the client is async)."""
    return (
        "import asyncio\n"
        "from switchyard.api.client import EngineClient\n"
        "\n"
        "async def main():\n"
        f"    async with EngineClient({target!r}) as engine:\n"
        "        result = await engine.complete(text='Hello', max_tokens=16)\n"
        "        print(result.text)\n"
        "\n"
        "asyncio.run(main())"
    )


def _ready_banner(model: str, host: str, port: int) -> str:
    target = f"{host}:{port}"
    request = (
        '{"chat": {"messages": [{"role": "user", "content": "What is the capital of France?"}]},'
        ' "sampling": {"max_tokens": 32, "temperature": 0}}'
    )
    script = "\n".join(f"    {line}".rstrip() for line in python_example(target).splitlines())
    return (
        f"switchyard engine ready: model {model} on {target}\n"
        f"  grpcurl -plaintext -d '{request}' {target} switchyard.engine.v1.Engine/Generate\n"
        f"  python:\n{script}"
    )
