"""``--plot``: TTFT and TPOT distributions per run and, for a sweep, throughput vs latency.

Summary statistics hide the shape of a distribution (a second mode from queueing, a long
tail from preemption); histograms show it. Across a sweep, median latency against output
throughput is the curve to choose an operating point on. matplotlib is imported only
here, with the file-only Agg backend, so runs without ``--plot`` and machines without a
display do not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from switchyard.bench.output import check_writable
from switchyard.bench.serving.metrics import tpot_s
from switchyard.bench.serving.runner import RunResult

FORMATS = (".png", ".svg", ".pdf")
HISTOGRAM_BINS = 40


def check_plot_path(path: str | Path) -> None:
    """Reject a path the plot could not be written to, before a run spends minutes."""
    if Path(path).suffix.lower() not in FORMATS:
        raise ValueError(f"--plot must end in one of {', '.join(FORMATS)}, got {str(path)!r}")
    check_writable("--plot", path)


def _latencies_ms(result: RunResult) -> tuple[list[float], list[float]]:
    """TTFT and TPOT of the run's successful requests (TPOT of those with 2+ tokens)."""
    ok = [r for r in result.records if r.success]
    tpots = [t for r in ok if (t := tpot_s(r)) is not None]
    return [r.ttft_s * 1000 for r in ok], [t * 1000 for t in tpots]


def write_plot(path: str | Path, results: Sequence[RunResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    sweep = len(results) > 1
    figure, axes = pyplot.subplots(
        2 if sweep else 1, 2, figsize=(12, 9 if sweep else 4.5), squeeze=False
    )
    for column, name in enumerate(("TTFT", "TPOT")):
        ax = axes[0][column]
        samples = [_latencies_ms(result)[column] for result in results]
        # Shared bins, so the runs' counts compare bin by bin.
        edges = np.histogram_bin_edges(np.concatenate(samples), bins=HISTOGRAM_BINS)
        for result, values in zip(results, samples, strict=True):
            label = f"{result.load.label()} (n={len(values)})"
            ax.hist(values, bins=edges, histtype="step", label=label)
        ax.set(title=f"{name} distribution", xlabel=f"{name} (ms)", ylabel="requests")
        ax.legend(fontsize="small")
    if sweep:
        throughputs = [r.metrics.output_throughput for r in results]
        for column, (name, field) in enumerate((("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"))):
            ax = axes[1][column]
            medians = [getattr(r.metrics, field).median for r in results]
            ax.plot(throughputs, medians, marker="o")
            for result, x, y in zip(results, throughputs, medians, strict=True):
                ax.annotate(result.load.label(), (x, y), fontsize="x-small")
            ax.set(
                title=f"median {name} vs output throughput",
                xlabel="output throughput (tok/s)",
                ylabel=f"median {name} (ms)",
            )
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
