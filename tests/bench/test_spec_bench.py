"""``switchyard bench spec``: its workloads, its arithmetic, and one measured cell on the
session's real engine (speculation off there, so nothing may be drafted)."""

from __future__ import annotations

import math

import pytest

from switchyard.api.client import EngineClient
from switchyard.bench.serving import spec
from switchyard.cli.main import build_parser


def test_copy_prompts_are_distinct_code_chunks_ending_in_an_open_fence() -> None:
    prompts = spec.copy_prompts(6)
    assert len(set(prompts)) == 6
    for prompt in prompts:
        assert prompt.startswith("Repeat the following Python code exactly")
        assert prompt.endswith("Repeated:\n\n```python\n")
        # The code between the fences is non-empty, and the copy is stopped by a fence.
        assert len(prompt.split("```python\n")[1].splitlines()) > 2


def test_too_many_copy_prompts_is_an_error() -> None:
    with pytest.raises(ValueError, match="code chunks for 100000 copy prompts"):
        spec.copy_prompts(100_000)


def test_workloads_sample_the_way_their_users_do() -> None:
    copy, chat = spec.workloads(3)
    assert (copy.name, chat.name) == ("copy", "chat")
    assert copy.sampling == {"temperature": 0, "stop": ["```"]}
    assert chat.sampling["temperature"] > 0
    # No workload forces its length: that is what inflated the chat speedup before.
    assert all("ignore_eos" not in w.sampling for w in (copy, chat))
    assert [m[0]["role"] for m in chat.prompts] == ["user"] * 3


def test_each_cell_sends_prompts_of_its_own() -> None:
    """A proposer that remembers served text (history) must not meet a replay."""
    names = spec.WORKLOADS
    warm_up, first, second = (spec.workloads(8, offset, names) for offset in (0, 8, 16))
    for index, name in enumerate(names):
        seen = [{repr(p) for p in cells[index].prompts} for cells in (warm_up, first, second)]
        assert all(len(prompts) == 8 for prompts in seen), name
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2]), name


def test_persona_conversations_share_the_persona_then_ask_their_own_question() -> None:
    (persona,) = spec.workloads(len(spec.PERSONA_QUESTIONS), names=("persona",))
    assert persona.sampling == spec.CHAT_SAMPLING
    for conversation in persona.prompts:
        assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user"]
        assert conversation[0]["content"] == spec.PERSONA
    questions = [c[-1]["content"] for c in persona.prompts]
    assert len(set(questions)) == len(spec.PERSONA_QUESTIONS)


def test_workloads_option(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "spec"]).workloads == ["copy", "chat"]
    args = parser.parse_args(["bench", "spec", "--workloads", "persona", "chat"])
    assert args.workloads == ["persona", "chat"]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "spec", "--workloads", "poetry"])
    assert "invalid choice: 'poetry'" in capsys.readouterr().err


def _cell(setting: str, workload: str, tok_s: float, tpot: float, **spec_counts: int):
    return spec.RunFigures(
        setting=setting,
        workload=workload,
        concurrency=1,
        requests=4,
        output_tokens=100,
        duration_s=100 / tok_s,
        output_tokens_per_s=tok_s,
        median_ttft_ms=50.0,
        median_tpot_ms=tpot,
        **spec_counts,
    )


def test_comparison_sets_each_method_against_off_in_the_same_cell() -> None:
    figures = [
        _cell("off", "copy", 20.0, 50.0),
        _cell("off", "chat", 25.0, 40.0),
        _cell("ngram", "copy", 50.0, 20.0, draft_tokens=400, accepted_tokens=300, drafts=100),
        _cell("ngram", "chat", 20.0, 50.0, draft_tokens=200, accepted_tokens=50, drafts=50),
    ]
    rows = spec.comparison(figures)
    assert [(r["method"], r["workload"]) for r in rows] == [("ngram", "copy"), ("ngram", "chat")]
    copy, chat = rows
    assert copy["throughput_ratio"] == pytest.approx(2.5)
    assert copy["tpot_ratio"] == pytest.approx(0.4)
    assert copy["acceptance_rate"] == pytest.approx(0.75)
    assert copy["mean_acceptance_length"] == pytest.approx(4.0)  # 1 + 300 / 100
    assert chat["throughput_ratio"] == pytest.approx(0.8)
    copy_row = "| ngram | copy | 1 | 20.0 -> 50.0 (2.50x) | 50.0 -> 20.0 ms (0.40x) | 0.75 | 4.00 |"
    assert copy_row in spec.markdown(rows).splitlines()


def test_no_drafts_means_no_acceptance_figures() -> None:
    off, on = _cell("off", "chat", 20.0, 50.0), _cell("ngram", "chat", 19.0, 52.0)
    assert off.acceptance_rate is None and off.mean_acceptance_length is None
    assert spec.comparison([off]) == []  # nothing to compare with off
    assert spec.markdown(spec.comparison([off, on])).endswith("| - | - |")


@pytest.mark.parametrize("value", ["0", "1,x", ""])
def test_concurrency_must_be_positive_integers(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "spec", "--concurrency", value])
    assert "--concurrency" in capsys.readouterr().err


async def test_one_cell_on_the_real_engine(smollm: EngineClient) -> None:
    copy = spec.Workload("copy", spec.copy_prompts(2), {"temperature": 0, "stop": ["```"]})
    cell = await spec.measure(smollm, "off", copy, concurrency=2, output_len=24)
    assert (cell.workload, cell.requests, cell.concurrency) == ("copy", 2, 2)
    assert 2 <= cell.output_tokens <= 2 * 24
    assert cell.output_tokens_per_s == pytest.approx(cell.output_tokens / cell.duration_s)
    assert cell.median_ttft_ms > 0 and math.isfinite(cell.median_tpot_ms)
    # This engine does not speculate: GetLoads deltas must show no drafts.
    assert (cell.draft_tokens, cell.accepted_tokens, cell.drafts) == (0, 0, 0)
