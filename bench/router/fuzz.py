"""Fuzzed requests for the router's soak run: valid ones of every shape next to the
malformed, misrouted and unauthorised ones a public endpoint receives, each with the
statuses the router documents for it.

Everything random comes from one seeded ``random.Random``, so a run that finds a wrong
status can be replayed request for request. Values a request makes up (users, metadata
keys, unknown fields, model names) are fresh per request: state the router keeps per
distinct value, rather than per configured thing, grows with the run and shows in RSS.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

# Models the soak config serves (see ``soak.router_config``): a direct model, a sticky
# A/B router with a metadata route, a router whose first choice is down, and a router
# whose first choice fails in one of the upstream's ways (``upstream.FAULTS``).
DIRECT_MODEL = "bench/echo"
AB_ROUTER = "router/ab"
FALLBACK_ROUTER = "router/fallback"
FLAKY_ROUTER = "router/flaky"
VALID_MODELS = (DIRECT_MODEL, AB_ROUTER, FALLBACK_ROUTER)
# The faulty provider's models, asked for directly, and what the router answers each
# with (whole, streamed): the upstream's status passed on, 502 for a broken or
# unreadable answer; a stream cut after its first content has begun, so it is a 200
# that ends with an error event instead of [DONE].
FAULT_STATUSES = {
    "fail-429": (429, 429),
    "fail-503": (503, 503),
    "reset": (502, 502),
    "wrong-shape": (502, 502),
    "cut": (502, 200),
}
# Longest made-up text in a request, in characters.
MAX_TEXT = 2000
# A large request's one long message: within the router's default body cap (4 MiB) and
# the benchmark upstream's (1 MiB).
LARGE_TEXT = (64 << 10, 900 << 10)
# The router's default max_body_bytes; a body past it is a 413.
MAX_BODY_BYTES = 4 << 20


# RSS samples of a soak run, after each of as many equal slices of its requests.
SAMPLES = 20


@dataclass(frozen=True)
class Settings:
    """A soak run's shape; here rather than in ``soak`` so the CLI reads its defaults
    without loading the packages the run needs (aiohttp, psutil)."""

    requests: int = 100_000
    concurrency: int = 32
    seed: int = 0


@dataclass(frozen=True)
class FuzzedRequest:
    """One request and what the router may answer it with."""

    kind: str
    body: bytes
    headers: dict[str, str]
    stream: bool
    expected: frozenset[int]
    # A stream that must end with an error event rather than [DONE].
    broken_stream: bool = False
    # The client reads the first bytes of the answer and closes the connection.
    leaves: bool = False


def _text(rng: random.Random, longest: int = MAX_TEXT) -> str:
    alphabet = string.ascii_letters + string.digits + " .,;:!?'\"\\/{}[]-_\n\téüß中文😀"
    return "".join(rng.choices(alphabet, k=rng.randint(0, longest)))


def _name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits + "-_", k=rng.randint(1, 24)))


def _scalar(rng: random.Random) -> Any:
    return rng.choice([None, True, rng.randint(-(2**40), 2**40), rng.random(), _text(rng, 40)])


def _valid_body(rng: random.Random) -> Json:
    """A request each of whose fields has the type the API documents."""
    messages: list[Json] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": _text(rng)})
    for turn in range(rng.randint(1, 6)):
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": _text(rng)})
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": _text(rng)})
    body: Json = {"model": rng.choice(VALID_MODELS), "messages": messages}
    optional: dict[str, Callable[[], Any]] = {
        "temperature": lambda: round(rng.uniform(0, 2), 3),
        "top_p": lambda: round(rng.uniform(0.01, 1), 3),
        "max_tokens": lambda: rng.randint(1, 4096),
        "seed": lambda: rng.randint(0, 2**31),
        "stop": lambda: [_text(rng, 8) or "x" for _ in range(rng.randint(1, 4))],
        "user": lambda: _name(rng),
        "metadata": lambda: (
            {_name(rng): _text(rng, 30) for _ in range(rng.randint(0, 4))}
            | ({"tier": rng.choice(["enterprise", "free"])} if rng.random() < 0.5 else {})
        ),
        "response_format": lambda: rng.choice([{"type": "text"}, {"type": "json_object"}]),
    }
    for field, value in optional.items():
        if rng.random() < 0.4:
            body[field] = value()
    # Fields the router does not know go to the provider as they are.
    for _ in range(rng.choice([0, 0, 0, 1, 3])):
        body[f"x_{_name(rng)}"] = _scalar(rng)
    return body


def _wrong_type(rng: random.Random, body: Json) -> Json:
    """``body`` with one field of a type the API does not allow (or ``max_tokens`` below
    1). Ranges that differ by provider (``temperature`` is 0-2 at OpenAI, 0-1 at
    Anthropic) are the provider's to refuse, so none is drawn here."""
    field, value = rng.choice(
        [
            ("messages", _text(rng, 20)),
            ("messages", [rng.randint(0, 9)]),
            ("messages", []),
            ("messages", [{"role": _name(rng), "content": "hi"}]),
            ("messages", [{"role": "user", "content": rng.randint(0, 9)}]),
            ("model", rng.choice([None, 7, ["x"], {}])),
            ("temperature", rng.choice(["hot", [1], {}])),
            ("max_tokens", rng.choice([0, -5, "many", 1.5])),
            ("stream", rng.choice(["yes", 2, {}])),
            ("stop", rng.choice([5, [1, 2], {"a": 1}])),
            ("response_format", rng.choice(["json", 5, {"type": 9}])),
            ("response_format", {"type": "json_schema", "json_schema": rng.choice(["s", [1], 5])}),
            ("metadata", rng.choice(["m", [1], 5])),
            ("user", rng.choice([5, ["u"], {}])),
        ]
    )
    return {**body, field: value}


def _faulty(rng: random.Random, body: Json, auth: dict[str, str], stream: bool) -> FuzzedRequest:
    """A valid request whose provider fails: directly (the failure is the answer),
    through the flaky router (its fallback answers), or left by its client mid-stream."""
    draw = rng.random()
    if draw < 0.4:
        fault = rng.choice(sorted(FAULT_STATUSES))
        body["model"] = f"flaky/{fault}"
        status = FAULT_STATUSES[fault][stream]
        broken = stream and status == 200
        raw = json.dumps(body).encode()
        return FuzzedRequest("fault", raw, auth, stream, frozenset({status}), broken_stream=broken)
    if draw < 0.8:
        body["model"] = FLAKY_ROUTER
        raw = json.dumps(body).encode()
        return FuzzedRequest("fault_fallback", raw, auth, stream, frozenset({200}))
    body["stream"] = True
    raw = json.dumps(body).encode()
    return FuzzedRequest("client_leaves", raw, auth, True, frozenset({200}), leaves=True)


def fuzzed_request(rng: random.Random, key: str) -> FuzzedRequest:
    """One request of a kind drawn with the weights a soak run wants: mostly valid, the
    rest spread over every way a request is refused."""
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = _valid_body(rng)
    stream = rng.random() < 0.5
    if stream:
        body["stream"] = True
        if rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
    draw = rng.random()
    if draw < 0.45:
        return FuzzedRequest("valid", json.dumps(body).encode(), auth, stream, frozenset({200}))
    if draw < 0.55:
        return _faulty(rng, body, auth, stream)
    if draw < 0.57:
        # Large bodies move the allocator's high-water mark, which is where RSS shows it.
        body["messages"].append({"role": "user", "content": "x" * rng.randint(*LARGE_TEXT)})
        return FuzzedRequest("large", json.dumps(body).encode(), auth, stream, frozenset({200}))
    if draw < 0.575:
        body["messages"].append({"role": "user", "content": "x" * MAX_BODY_BYTES})
        return FuzzedRequest("too_large", json.dumps(body).encode(), auth, False, frozenset({413}))
    if draw < 0.65:
        body["model"] = rng.choice(["bench/", "router/", "", "nope/"]) + _name(rng)
        return FuzzedRequest(
            "unknown_model", json.dumps(body).encode(), auth, False, frozenset({400, 404})
        )
    if draw < 0.80:
        wrong = json.dumps(_wrong_type(rng, body)).encode()
        return FuzzedRequest("wrong_type", wrong, auth, False, frozenset({400}))
    if draw < 0.90:
        raw = json.dumps(body).encode()
        broken = rng.choice(
            [
                raw[: rng.randint(0, max(0, len(raw) - 1))],
                b"",
                bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
                b"[" + raw + b"]",
                raw.replace(b'"', b"'", 1),
            ]
        )
        return FuzzedRequest("bad_json", broken, auth, False, frozenset({400}))
    headers = rng.choice(
        [
            {"Content-Type": "application/json"},
            {"Authorization": f"Bearer {_name(rng)}", "Content-Type": "application/json"},
            {"Authorization": key, "Content-Type": "application/json"},
            {"Authorization": f"Basic {key}", "Content-Type": "application/json"},
        ]
    )
    return FuzzedRequest("bad_auth", json.dumps(body).encode(), headers, False, frozenset({401}))
