"""``switchyard eval perplexity``: model quality on the held-out text, through the engine."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from switchyard.engine.eval.perplexity import PerplexityReport

DEFAULT_CONTEXT_LEN = 1024


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("eval", help="measure model quality")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ppl = commands.add_parser(
        "perplexity",
        help="perplexity on the held-out text, scored by the serving engine",
        description=(
            "Score the held-out text shipped with Switchyard (engine/eval/data/heldout.txt), "
            "or the text given by --text, with vLLM prompt logprobs, in windows of "
            "--context-len tokens scored independently. With several --model, models run "
            "one after another and a markdown table compares each with the first."
        ),
    )
    ppl.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME|PATH",
        help="embedded model name or HF checkpoint directory; repeat to compare",
    )
    ppl.add_argument(
        "--dtype",
        default=None,
        help="activation/weight dtype (default: the model's serving dtype, as engine serve)",
    )
    ppl.add_argument(
        "--text",
        type=Path,
        default=None,
        metavar="PATH",
        help="score this UTF-8 text file instead of the held-out text (e.g. text from the "
        "domain a quantized model will serve; engine/eval/data/development.txt is the one "
        "the shipped recipes were tuned on)",
    )
    ppl.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        metavar="N",
        help="score at most N tokens (default: the whole text)",
    )
    ppl.add_argument(
        "--context-len",
        type=int,
        default=DEFAULT_CONTEXT_LEN,
        metavar="L",
        help=f"tokens per window (default {DEFAULT_CONTEXT_LEN})",
    )
    ppl.add_argument("--kv-cache-gib", type=float, default=1.0, help="KV cache on CPU, GiB")
    ppl.add_argument(
        "--enforce-eager", action="store_true", help="skip torch.compile (starts sooner on CPU)"
    )
    ppl.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    ppl.set_defaults(run=_perplexity)


def _perplexity(args: argparse.Namespace) -> int:
    if args.max_tokens is not None and args.max_tokens < 1:
        raise SystemExit(f"error: --max-tokens must be >= 1, got {args.max_tokens}")
    if args.context_len < 2:
        raise SystemExit(f"error: --context-len must be >= 2, got {args.context_len}")
    text = None if args.text is None else _read_text(args.text)
    from switchyard.engine.models.prepare import ModelNotFound, resolve_model_path

    # Every model is checked before the first engine starts (a minute each on CPU).
    for model in args.model:
        try:
            resolve_model_path(model)
        except ModelNotFound as error:
            raise SystemExit(f"error: {error}") from None
    reports = asyncio.run(_evaluate_all(args, text))
    if len(reports) > 1:
        print(markdown_table(reports))
    if args.json is not None:
        write_json(args.json, reports)
    return 0


def _read_text(path: Path) -> str:
    """``--text``, read before any engine starts, so a bad file costs no minute of loading."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SystemExit(f"error: --text {path}: no such file") from None
    except IsADirectoryError:
        raise SystemExit(f"error: --text {path}: is a directory, not a text file") from None
    except UnicodeDecodeError as error:
        raise SystemExit(
            f"error: --text {path}: not UTF-8 text (byte {error.start}: {error.reason})"
        ) from None
    except OSError as error:
        raise SystemExit(f"error: --text {path}: {error.strerror}") from None
    if not text.strip():
        raise SystemExit(f"error: --text {path}: the file has no text to score")
    return text


async def _evaluate_all(args: argparse.Namespace, text: str | None) -> list[PerplexityReport]:
    # Imported here: vLLM takes seconds to import, and `--help` should not.
    from switchyard.engine.config import RuntimeConfig
    from switchyard.engine.eval.perplexity import HELDOUT_NAME, heldout_text
    from switchyard.engine.eval.runner import evaluate

    text_name = HELDOUT_NAME if text is None else str(args.text)
    text = heldout_text() if text is None else text
    reports = []
    for model in args.model:
        config = RuntimeConfig(
            model=model,
            dtype=args.dtype,
            kv_cache_gib=args.kv_cache_gib,
            enforce_eager=args.enforce_eager,
        )
        # One engine at a time: each is shut down before the next starts.
        report = await evaluate(config, text, args.context_len, args.max_tokens, text_name)
        print(summary_line(report), flush=True)
        reports.append(report)
    return reports


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def _quantized(report: PerplexityReport) -> str:
    weights = report.weights
    if weights.quantized_layers is None:
        return "-"
    return f"{_mb(weights.quantized_layers)} ({weights.quantized_ratio:.3f}x bf16)"


def summary_line(report: PerplexityReport) -> str:
    return (
        f"{report.model} ({report.dtype}): perplexity {report.perplexity:.3f} over "
        f"{report.tokens} tokens of {report.text} (context {report.context_len}); weights "
        f"{_mb(report.weights.total)}, quantized layers {_quantized(report)}; "
        f"load {report.load_s:.1f} s, wall {report.wall_s:.1f} s"
    )


def markdown_table(reports: list[PerplexityReport]) -> str:
    """One row per model; the relative change is against the first row."""
    base = reports[0].perplexity
    rows = [
        "| model | dtype | perplexity | vs first | tokens | weight bytes | quantized layers "
        "| load s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        change = (report.perplexity / base - 1) * 100
        rows.append(
            f"| {report.model} | {report.dtype} | {report.perplexity:.3f} | {change:+.2f}% "
            f"| {report.tokens} | {_mb(report.weights.total)} | {_quantized(report)} "
            f"| {report.load_s:.1f} |"
        )
    return "\n".join(rows)


def write_json(path: Path, reports: list[PerplexityReport]) -> None:
    """Written to a temporary file beside ``path`` and renamed, so a reader never sees
    half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"perplexity": [r.to_json() for r in reports]}, indent=2) + "\n"
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(body)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
