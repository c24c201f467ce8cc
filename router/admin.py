"""The admin API: named routers changed live, config reloads, provider health.

``GET/PUT/PATCH/DELETE /admin/v1/routers/{name}``, ``GET /admin/v1/routers``,
``POST /admin/v1/reload`` (re-read the config file; SIGHUP does the same) and
``GET /admin/v1/providers``. It takes its own keys (``admin.keys_env``, default
``SWITCHYARD_ADMIN_KEYS``), never a client key, and is off without one.

Every change goes through the config store (``config_store``), which validates it as a
whole config and swaps it in: a request in flight keeps the routing table it started
with, and an invalid change is refused with the reason while the old routers keep
serving.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchyard.router.auth import KeyChecker
from switchyard.router.config import ConfigError
from switchyard.router.config_store import ConfigStore
from switchyard.router.errors import APIError, invalid_request
from switchyard.router.registry import Registry
from switchyard.router.routing.health import HealthBoard

log = logging.getLogger(__name__)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, ``null`` deletes a key, and
    anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Admin:
    def __init__(
        self,
        store: ConfigStore,
        health: HealthBoard,
        registry: Registry,
        keys: KeyChecker | None,
    ) -> None:
        self._store = store
        self._health = health
        self._registry = registry
        self._keys = keys

    def _check(self, request: Request) -> None:
        if self._keys is None:
            raise APIError(
                404,
                "the admin API is off: set admin keys (admin.keys_env, by default "
                "SWITCHYARD_ADMIN_KEYS) to turn it on",
                code="admin_disabled",
            )
        self._keys.check(request.headers.getlist("authorization"))

    def _routers_data(self) -> dict[str, Any]:
        return {
            name: router.model_dump(mode="json", exclude_none=True)
            for name, router in self._store.routing.routers.items()
        }

    def _swap(self, routers: dict[str, Any]) -> None:
        """Put these routers in force; raises a 400 naming the problem, leaving the
        routers in force untouched."""
        try:
            self._store.replace_routers(routers)
        except ConfigError as error:
            raise invalid_request(str(error)) from None

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise invalid_request(f"the request body is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise invalid_request("the request body must be a JSON object")
        return data

    async def _handle(self, request: Request) -> Response:
        try:
            self._check(request)
            return await self._dispatch(request)
        except APIError as error:
            return error.response()

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path.removeprefix("/admin/v1")
        method = request.method
        if path == "/routers" and method == "GET":
            return JSONResponse({"routers": self._routers_data()})
        if path == "/providers" and method == "GET":
            return JSONResponse(
                {
                    "targets": self._health.report(self._registry.health_targets()),
                    "replicas": self._registry.replica_report(),
                }
            )
        if path == "/reload" and method == "POST":
            return self._reload()
        name = path.removeprefix("/routers/")
        routers = self._routers_data()
        if method == "GET":
            if name not in routers:
                raise _no_router(name)
            return JSONResponse(routers[name])
        if method == "DELETE":
            if name not in routers:
                raise _no_router(name)
            del routers[name]
            self._swap(routers)
            log.info("admin: router %s deleted", name)
            return Response(status_code=204)
        body = await self._json(request)
        if method == "PUT":
            created = name not in routers
            routers[name] = body
        else:  # PATCH
            if name not in routers:
                raise _no_router(name)
            routers[name] = merge_patch(routers[name], body)
        self._swap(routers)
        log.info("admin: router %s %s", name, "created" if method == "PUT" else "updated")
        status = 201 if method == "PUT" and created else 200
        return JSONResponse(self._routers_data()[name], status_code=status)

    def _reload(self) -> Response:
        try:
            self._store.reload()
        except ConfigError as error:
            raise invalid_request(
                f"reload refused, the routers in force are kept: {error}"
            ) from None
        return JSONResponse({"routers": sorted(self._store.routing.routers)})

    def routes(self) -> list[Route]:
        return [
            Route("/admin/v1/routers", self._handle, methods=["GET"]),
            Route(
                "/admin/v1/routers/{name}", self._handle, methods=["GET", "PUT", "PATCH", "DELETE"]
            ),
            Route("/admin/v1/reload", self._handle, methods=["POST"]),
            Route("/admin/v1/providers", self._handle, methods=["GET"]),
        ]


def _no_router(name: str) -> APIError:
    return APIError(404, f"the router {name!r} does not exist", code="router_not_found")
