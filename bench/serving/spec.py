"""``switchyard bench spec``: what speculative decoding buys, on and off in one run.

For each setting (``off`` first, then each ``--speculative`` method) it starts
``switchyard engine serve`` with that setting, sends every workload at every
concurrency through the engine's gRPC ``Generate``, stops the engine, and finally prints
each method's figures next to ``off``: output tokens/s and median TPOT (with their
ratios), acceptance rate and mean acceptance length (from ``GetLoads`` deltas).

Two workloads, because speculation pays where the output repeats the input and costs
where it does not:

- ``copy``: "repeat this code" over chunks of this repository's own sources (fixed,
  realistic text, no download), the case n-gram lookup is made for;
- ``chat``: free-form questions, where there is little to look up;
- ``persona`` (on request, ``--workloads``): a character app's multi-turn chat, every
  conversation opening with the same persona and greeting, then a question of its own:
  where a proposer that remembers earlier requests (``--speculative history``) can help.

Every cell sends prompts of its own (and the warm-up yet others): replaying a cell's
prompts and seeds in the next would let a proposer that remembers served text draft the
replies from memory.

Each workload is sent the way its users send it, so that the figures are what they would
see: ``copy`` greedy, stopping at the closing code fence (the copy is done); ``chat``
sampled (temperature 0.7, top-p 0.95, a fixed seed per request) and stopping at the end
of the model's turn. Forcing a fixed length with ``ignore_eos`` would instead make the
model run on past its answer into repetitive text that n-gram lookup drafts perfectly,
and inflate the chat speedup. On and off see the same prompts and seeds; output lengths
may still differ, which is why throughput is tokens per second, not requests per second.
Metrics follow ``bench serve``: TPOT per request is (E2E - TTFT) / (output tokens - 1);
throughput is output tokens / wall time of the batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

from switchyard.api.client import EngineClient
from switchyard.common.engine_process import EngineProcess

ROOT = Path(__file__).resolve().parents[2]  # the switchyard package (the repository root)
SOURCES = ("engine/requests.py", "engine/server.py", "engine/runtime.py", "router/errors.py")
CHAT_QUESTIONS = (
    "Why is the sky blue?",
    "Write a short poem about autumn leaves.",
    "What should I cook for dinner tonight?",
    "Explain how a bicycle stays upright.",
    "Tell me a story about a dragon who is afraid of the dark.",
    "What are some good habits for learning a new language?",
    "Describe the city of Paris to someone who has never been there.",
    "How do airplanes fly?",
    "Give me advice for my first job interview.",
    "What is the difference between weather and climate?",
    "Invent a new board game and explain its rules.",
    "Why do cats purr?",
    "How does a refrigerator keep food cold?",
    "Write a limerick about a forgetful robot.",
    "What are the benefits of drinking water?",
    "Explain photosynthesis in simple terms.",
    "Plan a relaxing weekend for me.",
    "What makes a good friend?",
    "How do I start running if I have never exercised?",
    "Tell me a fun fact about octopuses.",
    "Why do we dream?",
    "Suggest a name for my new puppy and explain why.",
    "How do volcanoes form?",
    "What is a healthy breakfast?",
)
# The persona workload: one character, as a companion app sends it with every request.
PERSONA = (
    'You are Juniper "June" Hollis, the keeper of the Lantern & Quill, a cozy bookshop and '
    "tea room in the seaside village of Saltmarsh. You are warm, curious and a little "
    "whimsical. You love old maps, rainy afternoons, peppermint tea and your ginger cat, "
    'Biscuit, who sleeps on the poetry shelf. You call the user "friend", and you often '
    "mention the shop, the sea or Biscuit. Stay in character as June at all times. Answer "
    "in a few short paragraphs, and end each answer with a small question for the user."
)
PERSONA_GREETINGS = (
    (
        "Hello! Is the shop open?",
        "Oh, hello there, friend! Yes, the Lantern & Quill is open, and the kettle is already "
        "singing. Biscuit is curled up on the poetry shelf as usual. Come in out of the wind "
        "and make yourself at home. What brings you to Saltmarsh today?",
    ),
    (
        "Hi June, I'm back!",
        "Welcome back, friend! The sea has been grey and moody all morning, which means it is "
        "perfect reading weather. Biscuit will be glad to see you. Shall I put on a pot of "
        "peppermint tea?",
    ),
    (
        "Good evening!",
        "Good evening, friend! The lamps are lit and the tide is coming in, so the shop is at "
        "its coziest. Biscuit has just woken from his nap on the poetry shelf. What can I do "
        "for you tonight?",
    ),
)
PERSONA_QUESTIONS = (
    "Can you recommend a book for a rainy day?",
    "What is your favourite tea, and why?",
    "Tell me more about Biscuit.",
    "How did you come to run the bookshop?",
    "What is the oldest map in your shop?",
    "I'm feeling a bit lonely today. Can we chat?",
    "What do you do when the shop is quiet?",
    "Do you have any books about pirates?",
    "What is Saltmarsh like in the winter?",
    "Can you tell me a story about the sea?",
    "What should I read if I liked Treasure Island?",
    "How do you make your peppermint tea?",
    "Does Biscuit ever cause trouble in the shop?",
    "What's the best time of day to visit the beach?",
    "Could you help me choose a gift for my grandmother?",
    "What kind of customers visit your shop?",
    "Have you ever found something surprising inside an old book?",
    "What's your favourite poem?",
    "Do you ever travel away from Saltmarsh?",
    "I can't sleep. What would you suggest?",
    "What are you reading at the moment?",
    "How do you look after very old books?",
    "Is there a festival in the village this year?",
    "What would you do if the shop flooded?",
)
START_TIMEOUT_S = 600

# A prompt: a text (sent as ``text``) or a conversation (sent as ``messages``).
Prompt = str | list[dict[str, str]]


class Sampling(TypedDict, total=False):
    """What a workload's users choose; the length and the seed are the benchmark's."""

    temperature: float
    top_p: float
    stop: list[str]


@dataclass
class RunFigures:
    """One (setting, workload, concurrency) cell."""

    setting: str
    workload: str
    concurrency: int
    requests: int
    output_tokens: int
    duration_s: float
    output_tokens_per_s: float
    median_ttft_ms: float
    median_tpot_ms: float
    draft_tokens: int = 0
    accepted_tokens: int = 0
    drafts: int = 0
    per_position: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None

    @property
    def mean_acceptance_length(self) -> float | None:
        return 1 + self.accepted_tokens / self.drafts if self.drafts else None


class Comparison(TypedDict):
    """One speculative cell against ``off``: a row of the table, and saved as it is."""

    method: str
    workload: str
    concurrency: int
    off_tok_s: float
    on_tok_s: float
    throughput_ratio: float
    off_tpot_ms: float
    on_tpot_ms: float
    tpot_ratio: float
    acceptance_rate: float | None
    mean_acceptance_length: float | None


def copy_prompts(count: int, offset: int = 0) -> list[str]:
    """``count`` "repeat this code" prompts over consecutive 12-line chunks of our sources,
    from chunk ``offset`` on."""
    lines: list[str] = []
    for source in SOURCES:
        path = ROOT / source
        if path.is_file():
            lines += [line for line in path.read_text().splitlines() if line.strip()]
    chunks = [lines[i : i + 12] for i in range(0, len(lines) - 12, 12)]
    if len(chunks) < offset + count:
        raise ValueError(
            f"only {len(chunks)} code chunks for {count} copy prompts from chunk {offset}"
        )
    return [
        "Repeat the following Python code exactly, line by line.\n\n```python\n"
        + "\n".join(chunk)
        + "\n```\n\nRepeated:\n\n```python\n"
        for chunk in chunks[offset : offset + count]
    ]


def chat_prompts(count: int, offset: int = 0) -> list[list[dict[str, str]]]:
    questions = [CHAT_QUESTIONS[(offset + i) % len(CHAT_QUESTIONS)] for i in range(count)]
    return [[{"role": "user", "content": question}] for question in questions]


def persona_prompts(count: int, offset: int = 0) -> list[list[dict[str, str]]]:
    """Conversations with :data:`PERSONA`: a greeting exchange, then a question."""
    prompts = []
    for i in range(offset, offset + count):
        hello, reply = PERSONA_GREETINGS[i % len(PERSONA_GREETINGS)]
        prompts.append(
            [
                {"role": "system", "content": PERSONA},
                {"role": "user", "content": hello},
                {"role": "assistant", "content": reply},
                {"role": "user", "content": PERSONA_QUESTIONS[i % len(PERSONA_QUESTIONS)]},
            ]
        )
    return prompts


@dataclass(frozen=True)
class Workload:
    """Prompts and the sampling its users would ask for (see the module docstring)."""

    name: str
    prompts: Sequence[Prompt]
    sampling: Sampling


WORKLOADS = ("copy", "chat", "persona")
CHAT_SAMPLING: Sampling = {"temperature": 0.7, "top_p": 0.95}


def workloads(
    count: int, offset: int = 0, names: tuple[str, ...] = ("copy", "chat")
) -> list[Workload]:
    """The named workloads, ``count`` prompts each, from the ``offset``-th prompt on."""
    makers = {
        "copy": lambda: Workload(
            "copy", copy_prompts(count, offset), {"temperature": 0, "stop": ["```"]}
        ),
        "chat": lambda: Workload("chat", chat_prompts(count, offset), CHAT_SAMPLING),
        "persona": lambda: Workload("persona", persona_prompts(count, offset), CHAT_SAMPLING),
    }
    return [makers[name]() for name in names]


async def _one(
    client: EngineClient, prompt: Prompt, output_len: int, sampling: Sampling, seed: int
) -> tuple[float, float, int]:
    """(TTFT s, E2E s, output tokens) of one streamed request."""
    text, messages = (prompt, None) if isinstance(prompt, str) else (None, prompt)
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async for response in client.generate(
        text=text, messages=messages, max_tokens=output_len, seed=seed, **sampling
    ):
        if response.HasField("chunk") and response.chunk.token_ids and first is None:
            first = time.perf_counter()
        if response.HasField("complete"):
            tokens = response.complete.usage.completion_tokens
    end = time.perf_counter()
    return (first or end) - started, end - started, tokens


async def measure(
    client: EngineClient, setting: str, workload: Workload, concurrency: int, output_len: int
) -> RunFigures:
    gate = asyncio.Semaphore(concurrency)

    async def send(index: int, prompt: Prompt) -> tuple[float, float, int]:
        async with gate:
            return await _one(client, prompt, output_len, workload.sampling, seed=index)

    before = await client.loads()
    started = time.perf_counter()
    results = await asyncio.gather(*(send(i, p) for i, p in enumerate(workload.prompts)))
    duration = time.perf_counter() - started
    after = await client.loads()
    total = sum(tokens for *_, tokens in results)
    tpots = [(e2e - ttft) / (n - 1) for ttft, e2e, n in results if n > 1]
    previous = list(before.spec_accepted_tokens_per_position)
    per_position = [
        a - (previous[i] if i < len(previous) else 0)
        for i, a in enumerate(after.spec_accepted_tokens_per_position)
    ]
    return RunFigures(
        setting=setting,
        workload=workload.name,
        concurrency=concurrency,
        requests=len(workload.prompts),
        output_tokens=total,
        duration_s=duration,
        output_tokens_per_s=total / duration,
        median_ttft_ms=1000 * statistics.median(t for t, _, _ in results),
        median_tpot_ms=1000 * statistics.median(tpots) if tpots else float("nan"),
        draft_tokens=after.spec_draft_tokens - before.spec_draft_tokens,
        accepted_tokens=after.spec_accepted_tokens - before.spec_accepted_tokens,
        drafts=after.spec_drafts - before.spec_drafts,
        per_position=per_position,
    )


def start_engine(args: argparse.Namespace, setting: str, log_path: Path) -> EngineProcess:
    """A ``switchyard engine serve`` for one setting."""
    engine_args = ["--model", args.model, "--speculative", setting]
    engine_args += ["--max-model-len", str(args.max_model_len), "--kv-cache-gib", "1"]
    engine_args += ["--enforce-eager", "--seed", "0"]
    return EngineProcess.start(setting, engine_args, log_path=log_path)


async def run_setting(args: argparse.Namespace, setting: str, log_dir: Path) -> list[RunFigures]:
    log_path = log_dir / f"engine-{setting.replace(':', '_').replace('/', '_')}.log"
    figures = []
    engine = start_engine(args, setting, log_path)
    try:
        client = await engine.wait_serving(START_TIMEOUT_S)
        try:
            # Warm-up: one request of each workload, uncounted, from prompts no cell sends.
            names = tuple(args.workloads)
            for workload in workloads(args.num_prompts, names=names):
                await _one(client, workload.prompts[0], 8, workload.sampling, seed=0)
            for index in range(len(names)):
                for turn, concurrency in enumerate(args.concurrency, start=1):
                    workload = workloads(args.num_prompts, turn * args.num_prompts, names)[index]
                    cell = await measure(client, setting, workload, concurrency, args.output_len)
                    print(_row(cell), flush=True)
                    figures.append(cell)
        finally:
            await client.close()
    finally:
        engine.stop()
    return figures


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _row(cell: RunFigures) -> str:
    return (
        f"{cell.setting:>8} {cell.workload:>5} c={cell.concurrency:<3} "
        f"{cell.output_tokens_per_s:7.1f} tok/s  TTFT {cell.median_ttft_ms:7.1f} ms  "
        f"TPOT {cell.median_tpot_ms:6.1f} ms  acceptance {_fmt(cell.acceptance_rate)}  "
        f"mean length {_fmt(cell.mean_acceptance_length)}"
    )


def comparison(figures: list[RunFigures]) -> list[Comparison]:
    """Each speculative cell against the ``off`` cell of the same workload and concurrency."""
    baseline = {(f.workload, f.concurrency): f for f in figures if f.setting == "off"}
    rows: list[Comparison] = []
    for cell in figures:
        base = baseline.get((cell.workload, cell.concurrency))
        if cell.setting == "off" or base is None:
            continue
        rows.append(
            {
                "method": cell.setting,
                "workload": cell.workload,
                "concurrency": cell.concurrency,
                "off_tok_s": base.output_tokens_per_s,
                "on_tok_s": cell.output_tokens_per_s,
                "throughput_ratio": cell.output_tokens_per_s / base.output_tokens_per_s,
                "off_tpot_ms": base.median_tpot_ms,
                "on_tpot_ms": cell.median_tpot_ms,
                "tpot_ratio": cell.median_tpot_ms / base.median_tpot_ms,
                "acceptance_rate": cell.acceptance_rate,
                "mean_acceptance_length": cell.mean_acceptance_length,
            }
        )
    return rows


def markdown(rows: Sequence[Comparison]) -> str:
    lines = [
        "| method | workload | concurrency | output tok/s off -> on (ratio) "
        "| median TPOT off -> on (ratio) | acceptance rate | mean acceptance length |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['workload']} | {r['concurrency']} "
            f"| {r['off_tok_s']:.1f} -> {r['on_tok_s']:.1f} ({r['throughput_ratio']:.2f}x) "
            f"| {r['off_tpot_ms']:.1f} -> {r['on_tpot_ms']:.1f} ms ({r['tpot_ratio']:.2f}x) "
            f"| {_fmt(r['acceptance_rate'])} | {_fmt(r['mean_acceptance_length'])} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    log_dir = Path(args.log_dir or ".")
    log_dir.mkdir(parents=True, exist_ok=True)
    figures: list[RunFigures] = []
    for setting in ("off", *args.speculative):
        figures += await run_setting(args, setting, log_dir)
    rows = comparison(figures)
    print()
    print(markdown(rows))
    if args.save:
        payload = {
            "command": " ".join(sys.argv),
            "settings": {k: v for k, v in vars(args).items() if k not in ("run",)},
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
            },
            "runs": [
                asdict(f)
                | {
                    "acceptance_rate": f.acceptance_rate,
                    "mean_acceptance_length": f.mean_acceptance_length,
                }
                for f in figures
            ],
            "comparison": rows,
        }
        Path(args.save).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _positive_ints(value: str) -> list[int]:
    try:
        values = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8, got {value!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"every value must be >= 1, got {value!r}")
    return values


def add_parser(commands: argparse._SubParsersAction) -> None:
    spec = commands.add_parser(
        "spec",
        help="speculative decoding on versus off, copy and chat workloads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    spec.add_argument("--model", default="gemma-3-270m")
    spec.add_argument(
        "--speculative",
        nargs="+",
        default=["ngram"],
        help="settings to compare with off (engine serve's --speculative values)",
    )
    spec.add_argument("--num-prompts", type=int, default=8, help="requests per cell")
    spec.add_argument(
        "--output-len", type=int, default=256, help="max tokens per request (each stops earlier)"
    )
    spec.add_argument("--concurrency", type=_positive_ints, default=[1, 8])
    spec.add_argument(
        "--workloads", nargs="+", choices=WORKLOADS, default=["copy", "chat"], help="in order"
    )
    spec.add_argument("--max-model-len", type=int, default=2048)
    spec.add_argument("--save", metavar="PATH", help="write every figure as JSON")
    spec.add_argument("--log-dir", help="where the engines' logs go (default .)")
    spec.set_defaults(run=lambda args: asyncio.run(run(args)))
