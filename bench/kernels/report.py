"""Kernel benchmark results: records, JSON and CSV files, and markdown tables.

The before/after table has the form FlashInfer's optimisation PRs use: shape columns,
the baseline's time, ours, and the speedup (baseline / ours), so a table can be pasted
into a PR as it is.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchyard.bench import output

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SHAPE_COLUMNS = ("model", "mode", "batch", "kv_len")
# Left-aligned columns of the tables; the others hold numbers and are right-aligned.
TEXT_COLUMNS = frozenset({"model", "mode", "backend", "refcheck"})
# The default baseline of the before/after table: the first of these with results.
BASELINE_ORDER = ("vllm-triton", "flashinfer", "sdpa")


@dataclass(frozen=True)
class Record:
    """One backend timed on one case. ``refcheck`` is "pass", "fail", or "" when not run."""

    model: str
    mode: str
    batch: int
    kv_len: int
    chunk: int
    page_size: int
    dtype: str
    backend: str
    time_us: float
    tflops: float  # TFLOP/s
    tbps: float  # TB/s of useful bytes (shapes.attention_bytes)
    copy_bw_pct: float  # tbps as a percentage of the measured copy bandwidth
    refcheck: str = ""
    rel_err: float | None = None

    def case_key(self) -> tuple:
        """What must match for two records to be timings of the same work.

        A decode batch has no prefill chunk, so its ``chunk`` setting does not count.
        """
        chunk = None if self.mode == "decode" else self.chunk
        return (self.model, self.mode, self.batch, self.kv_len, chunk, self.page_size, self.dtype)


def pair_up(before: Iterable[Record], after: Iterable[Record]) -> list[tuple[Record, Record]]:
    """(before, after) for every case both hold, in ``after``'s order."""
    by_case = {record.case_key(): record for record in before}
    return [(by_case[r.case_key()], r) for r in after if r.case_key() in by_case]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, numbers right-aligned."""
    align = ["---" if name in TEXT_COLUMNS else "---:" for name in header]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _shape_cells(record: Record) -> list[str]:
    return [str(getattr(record, column)) for column in SHAPE_COLUMNS]


def results_table(records: list[Record]) -> str:
    """Every record: time, TFLOP/s, TB/s, share of the copy bandwidth, reference check."""
    header = [*SHAPE_COLUMNS, "backend", "time (us)", "TFLOP/s", "TB/s", "% copy BW", "refcheck"]
    rows = [
        [
            *_shape_cells(r),
            r.backend,
            f"{r.time_us:.1f}",
            f"{r.tflops:.1f}",
            f"{r.tbps:.2f}",
            f"{r.copy_bw_pct:.0f}",
            r.refcheck or "-",
        ]
        for r in records
    ]
    return _markdown(header, rows)


def before_after_table(pairs: list[tuple[Record, Record]], before: str, after: str) -> str:
    """Shape columns, ``before`` and ``after`` times, and speedup = before / after."""
    header = [*SHAPE_COLUMNS, f"{before} (us)", f"{after} (us)", "speedup"]
    rows = [
        [*_shape_cells(a), f"{b.time_us:.1f}", f"{a.time_us:.1f}", f"{b.time_us / a.time_us:.2f}x"]
        for b, a in pairs
    ]
    return _markdown(header, rows)


def write_json(
    path: str | Path, document: dict[str, Any], records: Sequence[DataclassInstance]
) -> None:
    """``document`` (run metadata) with the records under "records", in a folder made if
    missing (results are filed under ``bench/results/<gpu>/``). Any dataclass records: the
    NVFP4 GEMM benchmark files its own kind here too."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    output.write_json(path, {**document, "records": [asdict(record) for record in records]})


def read_records(path: str | Path) -> list[Record]:
    """The records of a JSON file written by ``write_json``."""
    return [Record(**values) for values in json.loads(Path(path).read_text())["records"]]


def write_csv(path: str | Path, records: list[Record]) -> None:
    """One row per record, a column per Record field."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=[field.name for field in fields(Record)])
        writer.writeheader()
        writer.writerows(asdict(record) for record in records)


def render(
    records: list[Record],
    *,
    baseline: str | None,
    saved: list[Record] | None = None,
    saved_name: str = "saved",
) -> str:
    """The printed summary: all records, ours against ``baseline``, ours against ``saved``.

    ``baseline`` None picks the first of BASELINE_ORDER that has records. ``saved`` are
    the records of an earlier run (``--compare``): its ``ours`` is the "before" column,
    which is how a change to our kernel is shown against the build it started from.
    """
    ours = [r for r in records if r.backend == "ours"]
    if baseline is None:
        measured = {r.backend for r in records}
        baseline = next((name for name in BASELINE_ORDER if name in measured), None)
    sections = ["### Results", results_table(records)]
    if baseline is not None:
        pairs = pair_up((r for r in records if r.backend == baseline), ours)
        sections += [f"### ours against {baseline}", _pairs_or_note(pairs, baseline, "ours")]
    if saved is not None:
        pairs = pair_up((r for r in saved if r.backend == "ours"), ours)
        before = f"ours in {saved_name}"
        sections += [f"### ours against {saved_name}", _pairs_or_note(pairs, before, "ours")]
    return "\n\n".join(sections)


def _pairs_or_note(pairs: list[tuple[Record, Record]], before: str, after: str) -> str:
    if pairs:
        return before_after_table(pairs, before, after)
    return (
        f"No case has both {before} and {after} results (model, mode, batch, kv_len, chunk, "
        "page size and dtype must all match)."
    )
