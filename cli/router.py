"""``switchyard router serve``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("router", help="the OpenAI-compatible HTTP router")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the router over HTTP")
    serve.add_argument("--config", required=True, help="router YAML config")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback; 0.0.0.0 exposes the router)",
    )
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve without client API keys (only for local experiments)",
    )
    serve.set_defaults(run=_serve)
    schema = commands.add_parser(
        "schema", help="print the JSON Schema of the router config (docs/ has a copy)"
    )
    schema.set_defaults(run=_schema)


def _schema(args: argparse.Namespace) -> int:
    import sys

    from switchyard.router.config import config_schema

    sys.stdout.write(config_schema())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from switchyard.router.app import create_app
    from switchyard.router.auth import InsecureConfigError
    from switchyard.router.config import ConfigError, load_config

    try:
        app = create_app(
            load_config(args.config),
            config_path=args.config,
            insecure_no_auth=args.insecure_no_auth,
        )
    except (ConfigError, InsecureConfigError) as error:
        raise SystemExit(f"error: {error}") from None
    router_server(app, args.host, args.port).run()
    return 0


def router_server(app: Any, host: str, port: int) -> uvicorn.Server:
    """The uvicorn server of the router app, for ``router serve`` and ``serve`` alike."""
    import uvicorn

    # log_config=None keeps the logging that main() set up instead of uvicorn's own. The
    # router reads no client address, so uvicorn need not rewrite it from proxy headers
    # on every request.
    config = uvicorn.Config(
        app, host=host, port=port, access_log=False, log_config=None, proxy_headers=False
    )
    return uvicorn.Server(config)
