"""The kernel benchmark's files and tables, on records built here."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, fields, replace
from pathlib import Path

from switchyard.bench.kernels.report import (
    Record,
    before_after_table,
    pair_up,
    read_records,
    render,
    results_table,
    write_csv,
    write_json,
)


def record(backend: str, time_us: float, *, batch: int = 8, kv_len: int = 1024) -> Record:
    return Record(
        model="llama3-8b",
        mode="decode",
        batch=batch,
        kv_len=kv_len,
        chunk=512,
        page_size=16,
        dtype="bf16",
        backend=backend,
        time_us=time_us,
        tflops=1.25,
        tbps=2.5,
        copy_bw_pct=83.3,
        refcheck="pass",
        rel_err=3e-3,
    )


RECORDS = [
    record("ours", 20.0),
    record("vllm-triton", 30.0),
    record("sdpa", 50.0),
    record("ours", 100.0, batch=64),
    record("vllm-triton", 125.0, batch=64),
]


def rows(table: str) -> list[list[str]]:
    """The cells of a markdown table's body rows."""
    lines = table.splitlines()
    assert set(lines[1]) <= set("|-: ")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "results" / "run.json"  # the folder does not exist yet
    write_json(path, {"device": "GPU", "copy_bw_tbps": 3.0}, RECORDS)
    assert read_records(path) == RECORDS
    document = json.loads(path.read_text())
    assert document["device"] == "GPU" and document["copy_bw_tbps"] == 3.0


def test_csv_has_a_row_per_record(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    write_csv(path, RECORDS)
    with path.open() as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == [field.name for field in fields(Record)]
        written = list(reader)
    assert written == [{k: str(v) for k, v in asdict(r).items()} for r in RECORDS]


def test_results_table_has_every_record() -> None:
    body = rows(results_table(RECORDS))
    assert len(body) == len(RECORDS)
    for cells, r in zip(body, RECORDS, strict=True):
        assert cells[:5] == [r.model, r.mode, str(r.batch), str(r.kv_len), r.backend]
        assert float(cells[5]) == r.time_us and cells[-1] == r.refcheck


def test_pair_up_matches_only_the_same_case() -> None:
    other_dtype = replace(RECORDS[1], dtype="fp16")
    ours = [RECORDS[0], RECORDS[3]]
    assert pair_up([other_dtype], ours) == []
    assert pair_up([RECORDS[1], RECORDS[4]], ours) == [
        (RECORDS[1], RECORDS[0]),
        (RECORDS[4], RECORDS[3]),
    ]


def test_pair_up_ignores_the_chunk_of_decode_batches_only() -> None:
    decode = replace(RECORDS[1], chunk=2048)
    assert pair_up([decode], [RECORDS[0]]) == [(decode, RECORDS[0])]
    prefill_ours = replace(RECORDS[0], mode="prefill")
    prefill_other_chunk = replace(RECORDS[1], mode="prefill", chunk=2048)
    assert pair_up([prefill_other_chunk], [prefill_ours]) == []


def test_before_after_table_speedup() -> None:
    pairs = [(RECORDS[1], RECORDS[0]), (RECORDS[4], RECORDS[3])]
    table = before_after_table(pairs, "vllm-triton", "ours")
    assert table.splitlines()[0].endswith("| vllm-triton (us) | ours (us) | speedup |")
    for cells, (before, after) in zip(rows(table), pairs, strict=True):
        assert cells[4:] == [
            f"{before.time_us:.1f}",
            f"{after.time_us:.1f}",
            f"{before.time_us / after.time_us:.2f}x",
        ]


def test_render_picks_vllm_triton_as_default_baseline() -> None:
    text = render(RECORDS, baseline=None)
    assert "### ours against vllm-triton" in text
    pairs = [(RECORDS[1], RECORDS[0]), (RECORDS[4], RECORDS[3])]
    assert before_after_table(pairs, "vllm-triton", "ours") in text


def test_render_with_an_explicit_baseline() -> None:
    text = render(RECORDS, baseline="sdpa")
    assert before_after_table([(RECORDS[2], RECORDS[0])], "sdpa", "ours") in text


def test_render_compare_against_a_saved_run() -> None:
    # The saved run (say, the upstream build) has ours slower at batch 8, none at batch 64.
    saved = [record("ours", 40.0), record("vllm-triton", 30.0)]
    text = render(RECORDS, baseline=None, saved=saved, saved_name="upstream.json")
    section = text.split("### ours against upstream.json")[1]
    assert section.strip() == before_after_table(
        [(saved[0], RECORDS[0])], "ours in upstream.json", "ours"
    )


def test_render_says_when_nothing_matches() -> None:
    saved = [record("ours", 40.0, kv_len=4096)]
    text = render(RECORDS, baseline=None, saved=saved, saved_name="old.json")
    assert "No case has both ours in old.json and ours results" in text
