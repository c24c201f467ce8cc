"""When each request is sent: a gamma arrival process, Poisson by default.

Intervals are gamma-distributed with shape ``burstiness`` and scale
``1 / (rate * burstiness)``, so the mean interval is ``1 / rate`` whatever the
burstiness; burstiness 1 is a Poisson process, lower is burstier, higher is more even.
The schedule is drawn up front so sending never waits on the random generator.
"""

from __future__ import annotations

import math

import numpy as np


def arrival_offsets(
    count: int, rate: float, burstiness: float = 1.0, *, seed: int | None = 0
) -> np.ndarray:
    """Send times in seconds after the start of the run; the first request goes at 0."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if rate <= 0:
        raise ValueError(f"request rate must be > 0, got {rate}")
    if math.isinf(rate) or count == 0:
        return np.zeros(count)
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=count - 1)
    return np.concatenate(([0.0], np.cumsum(gaps)))
