"""OpenRouter's request extras for direct model ids: ``models`` (a fallback list),
``provider`` (order, only, ignore, allow_fallbacks, sort) and ``model: "auto"``.

A model name without a provider (``llama-3.3-70b``) means every configured host of it; a
full id (``groq/llama-3.3-70b``) means that host only. ``provider`` then filters and
orders the hosts: ``only``/``ignore`` first, then the ``order`` list, then the rest
(unless ``allow_fallbacks`` is false) by ``sort``: ``price`` from the configured prices,
``latency`` (time to first token) and ``throughput`` (output tokens per second) from
what the router has measured. Hosts with no figure go after those with one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from switchyard.router.errors import APIError, invalid_request
from switchyard.router.openai_types import ProviderPreferences, Sort
from switchyard.router.routing.live_stats import LiveStats

AUTO = "auto"


@dataclass(frozen=True)
class Offer:
    """A model as one provider (or the first-party engines) serves it."""

    model_id: str  # openai/gpt-5.5, switchyard/gemma-3-270m
    provider: str  # openai, switchyard
    name: str  # gpt-5.5, gemma-3-270m
    endpoints: frozenset[str]
    # USD per million tokens, prompt and completion together; None: not configured.
    price: float | None


def _sort_key(sort: Sort, stats: LiveStats) -> Callable[[Offer], tuple[bool, float]]:
    def key(offer: Offer) -> tuple[bool, float]:
        if sort == "price":
            value = offer.price
        elif sort == "latency":
            value = stats.get(offer.model_id).ttft_s
        else:
            speed = stats.get(offer.model_id).tokens_per_s
            value = None if speed is None else -speed
        return (value is None, value or 0.0)

    return key


def hosts(
    requested: str, offers: Sequence[Offer], prefs: ProviderPreferences | None, stats: LiveStats
) -> list[Offer]:
    """The offers that may serve ``requested``, best first."""
    exact = [offer for offer in offers if offer.model_id == requested]
    if requested == AUTO:
        found = list(offers)
    elif exact:
        found = exact
    else:
        found = [offer for offer in offers if offer.name == requested]
    if prefs is None:
        prefs = ProviderPreferences()
    if prefs.only is not None:
        found = [offer for offer in found if offer.provider in prefs.only]
    if prefs.ignore:
        found = [offer for offer in found if offer.provider not in prefs.ignore]
    sort = prefs.sort or ("price" if requested == AUTO else None)
    if sort is not None:
        found.sort(key=_sort_key(sort, stats))
    if prefs.order:
        rank = {provider: index for index, provider in enumerate(prefs.order)}
        listed = sorted((o for o in found if o.provider in rank), key=lambda o: rank[o.provider])
        rest = [offer for offer in found if offer.provider not in rank]
        found = listed + (rest if prefs.allow_fallbacks else [])
    elif not prefs.allow_fallbacks:
        found = found[:1]
    return found


def chain(
    model: str,
    fallbacks: Sequence[str],
    offers: Sequence[Offer],
    prefs: ProviderPreferences | None,
    stats: LiveStats,
    endpoint: str,
) -> list[Offer]:
    """Every offer to try, in order, without repeats; raises 404 when ``model`` names
    nothing served and 400 when the preferences leave nothing to try."""
    served = [offer for offer in offers if endpoint in offer.endpoints]
    result: list[Offer] = []
    for index, requested in enumerate([model, *fallbacks]):
        found = hosts(requested, served, prefs, stats)
        if not found and not any(o.model_id == requested or o.name == requested for o in offers):
            param = "model" if index == 0 else f"models[{index - 1}]"
            raise APIError(
                404, f"the model {requested!r} does not exist", param=param, code="model_not_found"
            )
        result.extend(offer for offer in found if offer not in result)
    if not result:
        raise invalid_request(
            f"no provider of {model!r} is left to try after the provider preferences "
            f"(or none serves the {endpoint} endpoint)",
            "provider",
        )
    return result
