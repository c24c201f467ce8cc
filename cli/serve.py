"""``switchyard serve``: engines and the router together, the one command to try it all.

Each engine is its own ``switchyard engine serve`` process (vLLM wants a process of its
own, and a crash of one model must not take the router down), in its own process group
so that stopping it also stops vLLM's engine-core and worker processes. The router runs
in this process. The command returns when the router stops (Ctrl-C or SIGTERM); the
engines are then stopped with SIGTERM, which lets their in-flight requests drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from switchyard.common.engine_process import EngineProcess, EngineStartError
from switchyard.engine.cpu_cores import format_cores, share_cores

# For all engines together: they start one after the other's model load on a small machine.
ENGINE_START_TIMEOUT_S = 900
KEYS_ENV = "SWITCHYARD_API_KEYS"


def add_parser(groups: argparse._SubParsersAction) -> None:
    serve = groups.add_parser(
        "serve",
        help="start engines for the given models and the router in front of them",
        description="Start one engine per model and the OpenAI-compatible router in front "
        "of them; print how to call it once everything is ready. Ctrl-C or SIGTERM stops "
        "the router, then the engines (their in-flight requests drain first).",
    )
    serve.add_argument(
        "--models",
        default="embedded",
        help="comma-separated models, one engine each (default: the default embedded model)",
    )
    serve.add_argument(
        "--config",
        help="router YAML for providers and limits; its engines are served too",
    )
    serve.add_argument("--host", default="127.0.0.1", help="router address (default loopback)")
    serve.add_argument("--port", type=int, default=8080, help="router port (default 8080)")
    serve.add_argument(
        "--engine-port",
        type=int,
        default=50051,
        help="port of the first engine; the next ones count up (default 50051)",
    )
    serve.add_argument(
        "--enforce-eager",
        action="store_true",
        help="engines skip torch.compile: start ~45 s sooner on CPU",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help=f"serve without client keys (default: ${KEYS_ENV}, or a key made for this run)",
    )
    serve.set_defaults(run=_serve)


def _start_engine(
    model: str, port: int, enforce_eager: bool, cores: tuple[int, ...] | None
) -> EngineProcess:
    args = ["--model", model]
    if enforce_eager:
        args.append("--enforce-eager")
    if cores:
        args += ["--cpu-cores", format_cores(cores)]
    return EngineProcess.start(model, args, port=port)  # its log goes to ours


async def _wait_serving(engines: list[EngineProcess]) -> None:
    deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
    for engine in engines:
        try:
            client = await engine.wait_serving(max(0.0, deadline - time.monotonic()))
        except EngineStartError:
            if not engine.alive():
                raise SystemExit(
                    f"error: the {engine.name} engine exited with code "
                    f"{engine.process.returncode} before it was ready (its log is above)"
                ) from None
            raise SystemExit(f"error: the {engine.name} engine is not ready in time") from None
        await client.close()


def _banner(base_url: str, model_id: str, key: str | None) -> str:
    """What a user pastes next: a curl line and the OpenAI SDK's equivalent."""
    question = [{"role": "user", "content": "What is the capital of France?"}]
    body = json.dumps({"model": model_id, "messages": question})
    auth = f' -H "Authorization: Bearer {key}"' if key else ""
    lines = [f"Switchyard is ready: {base_url}/v1"]
    if key:
        lines.append(f"Client key made for this run (set {KEYS_ENV} to choose your own): {key}")
    lines += [
        "",
        f'  curl {base_url}/v1/chat/completions -H "Content-Type: application/json"{auth} \\',
        f"    -d '{body}'",
        "",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{base_url}/v1", api_key="{key or "unused"}")',
        f"  reply = client.chat.completions.create(model={model_id!r}, messages={question!r})",
        "  print(reply.choices[0].message.content)",
        "",
        "Ctrl-C stops the router and the engines.",
    ]
    return "\n".join(lines)


def _router_config(
    args: argparse.Namespace, engines: list[EngineProcess]
) -> tuple[dict, str | None]:
    """The router's config (the file's, if any, plus our engines) and the client key made
    for this run when neither the file nor the environment names one."""
    from switchyard.router.config import load_config

    base = load_config(args.config).model_dump(exclude_unset=True) if args.config else {}
    base["engines"] = [
        *base.get("engines", []),
        *({"name": e.name, "target": e.target} for e in engines),
    ]
    key = None
    if (
        "auth" not in base
        and not args.insecure_no_auth
        and not os.environ.get(KEYS_ENV, "").strip()
    ):
        key = "sk-local-" + secrets.token_urlsafe(24)
        base["auth"] = {"keys": [key]}
    return base, key


async def _run(args: argparse.Namespace, engines: list[EngineProcess]) -> int:
    from switchyard.cli.router import router_server
    from switchyard.router.app import create_app
    from switchyard.router.auth import InsecureConfigError
    from switchyard.router.config import ConfigError, parse_config

    try:
        config, key = _router_config(args, engines)
        app = create_app(parse_config(config), insecure_no_auth=args.insecure_no_auth)
    except (ConfigError, InsecureConfigError) as error:
        raise SystemExit(f"error: {error}") from None
    await _wait_serving(engines)
    server = router_server(app, args.host, args.port)
    serving = asyncio.create_task(server.serve())
    router = app.state.router
    # Started, and every engine's model known (the router asks the engines at start).
    while not server.started or any(e.info is None for e in router.registry.engines):
        if serving.done():
            serving.result()
            raise SystemExit(f"error: the router could not start on {args.host}:{args.port}")
        await asyncio.sleep(0.05)
    model_id = router.registry.engines[-1].model_id
    print(_banner(f"http://{args.host}:{args.port}", model_id, key), flush=True)
    await serving
    return 0


def _serve(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise SystemExit("error: --models names no model")
    if args.config and not Path(args.config).is_file():
        raise SystemExit(f"error: --config {args.config}: no such file")
    # SIGTERM stops everything as Ctrl-C does: uvicorn handles both while it serves and
    # re-raises them after, and the engines are stopped below either way, never orphaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Engines on CPU would otherwise each bind to every core (engine/cpu_cores.py); on a
    # GPU the engine ignores its share.
    shares = share_cores(sorted(os.sched_getaffinity(0)), len(models)) if len(models) > 1 else None
    engines = [
        _start_engine(
            model, args.engine_port + index, args.enforce_eager, shares[index] if shares else None
        )
        for index, model in enumerate(models)
    ]
    try:
        return asyncio.run(_run(args, engines))
    except KeyboardInterrupt:
        return 0
    finally:
        failed = [e.name for e in engines if e.stop() != 0]
        if failed:
            print(f"engines that did not stop cleanly: {', '.join(failed)}", file=sys.stderr)
