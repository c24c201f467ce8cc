"""Benchmark outputs: paths refused before a run, JSON written whole and strict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from switchyard.bench.output import check_writable, write_json


def test_check_writable_refuses_missing_directories_and_directories(tmp_path: Path) -> None:
    check_writable("--json", tmp_path / "out.json")
    with pytest.raises(ValueError, match="--json: no directory"):
        check_writable("--json", tmp_path / "missing" / "out.json")
    with pytest.raises(ValueError, match="is a directory"):
        check_writable("--json", tmp_path)


def test_check_writable_can_make_the_folder_a_result_is_filed_under(tmp_path: Path) -> None:
    target = tmp_path / "results" / "h100" / "attention.json"
    check_writable("--json", target, make_folder=True)
    assert target.parent.is_dir() and not target.exists()


def test_write_json_refuses_nan_rather_than_writing_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text("{}\n")
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(path, {"figure": math.nan})
    assert path.read_text() == "{}\n"  # the earlier file is left whole
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left
    write_json(path, {"figure": 1.5})
    assert json.loads(path.read_text()) == {"figure": 1.5}
