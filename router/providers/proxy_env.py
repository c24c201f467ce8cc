"""The proxy variables of the environment, as they bear on a provider's URL.

The provider client connects to providers directly: it has no CONNECT tunnelling. An
operator who set ``HTTPS_PROXY`` (or ``HTTP_PROXY``, ``ALL_PROXY``) expects traffic to go
through the proxy, and where nothing else can leave the network a direct connection only
fails at the first request, far from its cause. So a provider the variables would send
through a proxy stops the router's start instead, naming the variable; ``NO_PROXY``
exempts hosts as curl and Python's ``urllib`` read it (a comma-separated list of host
names or domain suffixes, or ``*``). A loopback host is always reached directly: no proxy
can stand between a router and a server on its own machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit


def _set(environ: Mapping[str, str], name: str) -> str | None:
    """The variable of ``name`` that is set, lower case first as curl reads them."""
    for variable in (name.lower(), name.upper()):
        if environ.get(variable, "").strip():
            return variable
    return None


def proxy_variable(url: str, environ: Mapping[str, str]) -> str | None:
    """The variable that asks for ``url`` to go through a proxy, None when none does (or
    ``NO_PROXY`` exempts its host)."""
    parts = urlsplit(url)
    if _is_loopback(parts.hostname or ""):
        return None
    variable = _set(environ, f"{parts.scheme}_proxy") or _set(environ, "all_proxy")
    if variable is None:
        return None
    no_proxy = _set(environ, "no_proxy")
    if no_proxy and _exempt(parts.hostname or "", parts.port, environ[no_proxy]):
        return None
    return variable


def _exempt(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether a ``NO_PROXY`` list names ``host``: ``*``, the host itself, or a domain it
    lies in (``example.com`` and ``.example.com`` both cover ``api.example.com``), with an
    optional ``:port`` that must then match."""
    host = host.lower().rstrip(".")
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if entry_port and port is not None and entry_port != str(port):
            continue
        name = name.lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _has_port(entry: str) -> bool:
    """``host:443`` carries a port; a bare IPv6 address's colons do not make one."""
    head, _, tail = entry.rpartition(":")
    return bool(head) and tail.isdigit() and (head.count(":") == 0 or head.endswith("]"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
