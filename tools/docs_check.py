"""Docs that cannot rot: every shell block in README.md and docs/ says how it is checked.

A fenced code block whose info string is ``sh``, ``bash`` or ``console`` needs exactly one
marker, in an HTML comment on the line just before its opening fence:

- ``<!-- docs-check: run -->`` (optionally ``run timeout=SECONDS``, default 60): the block
  runs with bash (``set -euo pipefail``) from the repository root, with ``.venv/bin`` first
  on PATH, and must exit 0 within the timeout. In a ``console`` block only the lines after
  a ``$ `` prompt (and their ``\\`` continuations) run.
- ``<!-- docs-check: tested-by tests/PATH.py::test_name -->``: for commands that start
  servers or take long. The file must exist and define ``def test_name`` (or ``async
  def``); ``tests/PATH.py::Class::test_name`` also checks the class.
- ``<!-- docs-check: not-a-command -->``: the block shows output or a file, not commands.

Relative links in the same files (``[text](path)``) must point at files that exist.

Prints one line per block (file:line, marker, ok or FAILED) and a summary; exits 1 on any
failure. ``make docs-check`` runs it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

CHECKED_LANGUAGES = frozenset({"sh", "bash", "console"})
DEFAULT_TIMEOUT_S = 60.0
MARKER = re.compile(r"<!--\s*docs-check:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# [text](target) and [text]: target, not images' remote URLs nor in-page anchors.
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")
INLINE_CODE = re.compile(r"`+[^`]*`+")


@dataclass(frozen=True)
class Block:
    """A fenced code block: where its opening fence is, its language, its text."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker_line: str  # the line just before the fence ("" at the top of a file)


@dataclass(frozen=True)
class Result:
    block: Block
    marker: str  # as written, or "(none)"
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Link:
    path: Path
    line: int
    target: str


def markdown_files(root: Path) -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    files = [root / "README.md"] if (root / "README.md").is_file() else []
    docs = root / "docs"
    if docs.is_dir():
        files += sorted(docs.rglob("*.md"))
    return files


def _scan(path: Path) -> tuple[list[Block], list[Link]]:
    """Every fenced block (any language) and every relative link outside the blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    links: list[Link] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is not None and opening["fence"][0] == "`" and "`" in opening["info"]:
            opening = None  # a backtick fence's info string has no backticks: inline code
        if opening is None:
            links += _links(path, index + 1, lines[index])
            index += 1
            continue
        fence = opening["fence"]
        info = opening["info"].split()
        language = info[0].lower() if info else ""
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[end])
            end += 1
        blocks.append(
            Block(
                path=path,
                line=index + 1,
                language=language,
                code=_dedent(body, len(opening["indent"])),
                marker_line=lines[index - 1] if index > 0 else "",
            )
        )
        index = end + 1
    return blocks, links


def _dedent(body: list[str], indent: int) -> str:
    """A block indented inside a list item, with that indentation taken off."""
    return "\n".join(line[indent:] if line[:indent].isspace() else line for line in body)


def _links(path: Path, number: int, line: str) -> list[Link]:
    text = INLINE_CODE.sub("", line)
    targets = INLINE_LINK.findall(text)
    reference = REFERENCE_LINK.match(text)
    if reference:
        targets.append(reference.group(1))
    return [Link(path, number, target) for target in targets]


def checked_blocks(path: Path) -> list[Block]:
    """The blocks of one file that need a marker (sh, bash, console)."""
    return [block for block in _scan(path)[0] if block.language in CHECKED_LANGUAGES]


def check_link(link: Link, root: Path) -> str | None:
    """None if the link's file exists (or it is not a relative file link), else why not."""
    target = link.target
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")):
        return None
    file_part = target.split("#", 1)[0].split("?", 1)[0]
    if not file_part:
        return None
    base = root if file_part.startswith("/") else link.path.parent
    resolved = (base / file_part.lstrip("/")).resolve()
    if not resolved.exists():
        return f"links to {target}, which does not exist"
    return None


def parse_marker(marker_line: str) -> tuple[str, str] | str:
    """(kind, argument) from the line before a fence, or the reason it is not one marker."""
    markers = MARKER.findall(marker_line)
    if not markers:
        return "no docs-check marker on the line before the fence"
    if len(markers) > 1:
        return f"{len(markers)} docs-check markers on one line; exactly one is allowed"
    kind, _, argument = markers[0].partition(" ")
    argument = argument.strip()
    if kind == "run":
        if argument and not re.fullmatch(r"timeout=\d+(\.\d+)?", argument):
            return f"run takes only timeout=SECONDS, got {argument!r}"
        return kind, argument
    if kind == "tested-by":
        if not re.fullmatch(r"[\w./-]+\.py(::\w+)+", argument):
            return f"tested-by wants tests/PATH.py::test_name, got {argument!r}"
        return kind, argument
    if kind == "not-a-command":
        if argument:
            return f"not-a-command takes no argument, got {argument!r}"
        return kind, argument
    return f"unknown docs-check marker {kind!r} (run, tested-by, not-a-command)"


def check_tested_by(reference: str, root: Path) -> str | None:
    """None if the file exists and defines the test (and its classes), else why not."""
    file_name, *names = reference.split("::")
    path = root / file_name
    if not path.is_file():
        return f"{file_name} does not exist"
    source = path.read_text(encoding="utf-8")
    *classes, test = names
    for name in classes:
        if not re.search(rf"^\s*class\s+{name}\b", source, re.MULTILINE):
            return f"{file_name} defines no class {name}"
    if not re.search(rf"^\s*(async\s+)?def\s+{test}\s*\(", source, re.MULTILINE):
        return f"{file_name} defines no test {test}"
    return None


def commands_of(block: Block) -> str:
    """The shell text a run marker executes: the whole block, or in a console block the
    lines after a ``$ `` prompt with their continuation lines."""
    if block.language != "console":
        return block.code
    commands: list[str] = []
    continued = False
    for line in block.code.splitlines():
        stripped = line.lstrip()
        if continued:
            commands.append(line)
        elif stripped.startswith("$ "):
            commands.append(stripped[2:])
        else:
            continue
        continued = line.rstrip().endswith("\\")
    return "\n".join(commands)


def run_block(block: Block, root: Path, timeout_s: float) -> str | None:
    """Run the block with bash from ``root``; None on exit 0, else why it failed."""
    environment = dict(os.environ)
    environment["PATH"] = f"{root / '.venv' / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    script = "set -euo pipefail\n" + commands_of(block) + "\n"
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=root,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout ends all of it
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return f"timed out after {timeout_s:g} s"
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip().splitlines()[-8:]
        shown = "".join(f"\n    | {line}" for line in tail)
        return f"exited {process.returncode}{shown}"
    return None


def check_block(block: Block, root: Path, default_timeout_s: float = DEFAULT_TIMEOUT_S) -> Result:
    parsed = parse_marker(block.marker_line)
    if isinstance(parsed, str):
        written = MARKER.search(block.marker_line)
        return Result(block, written.group(1) if written else "(none)", False, parsed)
    kind, argument = parsed
    marker = f"{kind} {argument}".strip()
    if kind == "not-a-command":
        return Result(block, marker, True)
    if kind == "tested-by":
        problem = check_tested_by(argument, root)
        return Result(block, marker, problem is None, problem or "")
    timeout_s = float(argument.removeprefix("timeout=")) if argument else default_timeout_s
    started = time.monotonic()
    problem = run_block(block, root, timeout_s)
    took = f"{time.monotonic() - started:.1f} s"
    return Result(block, marker, problem is None, problem or took)


def check_files(
    files: list[Path],
    root: Path,
    default_timeout_s: float = DEFAULT_TIMEOUT_S,
    out: TextIO | None = None,
) -> tuple[list[Result], list[tuple[Link, str]]]:
    """Check every marked block and relative link of ``files``; print a line per block
    (and per broken link) to ``out`` as it goes. Returns the results and broken links."""
    results: list[Result] = []
    broken: list[tuple[Link, str]] = []
    for path in files:
        blocks, links = _scan(path)
        for block in blocks:
            if block.language not in CHECKED_LANGUAGES:
                continue
            result = check_block(block, root, default_timeout_s)
            results.append(result)
            if out is not None:
                print(_line(result, root), file=out, flush=True)
        for link in links:
            problem = check_link(link, root)
            if problem is not None:
                broken.append((link, problem))
                if out is not None:
                    where = f"{_relative(link.path, root)}:{link.line}"
                    print(f"{where}  link  FAILED: {problem}", file=out, flush=True)
    return results, broken


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _line(result: Result, root: Path) -> str:
    where = f"{_relative(result.block.path, root)}:{result.block.line}"
    verdict = "ok" if result.ok else "FAILED"
    detail = f" ({result.detail})" if result.ok and result.detail else ""
    failure = f": {result.detail}" if not result.ok else ""
    return f"{where}  {result.marker}  {verdict}{detail}{failure}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="Markdown files (default: README.md, docs/**/*.md)"
    )
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parents[1], help="repository root"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="run blocks, s")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    files = [path.resolve() for path in args.files] or markdown_files(root)
    started = time.monotonic()
    results, broken = check_files(files, root, args.timeout, out=sys.stdout)
    failed = [result for result in results if not result.ok]
    kinds = {kind: 0 for kind in ("run", "tested-by", "not-a-command")}
    for result in results:
        kind = result.marker.split(" ", 1)[0]
        if kind in kinds and result.ok:
            kinds[kind] += 1
    counts = ", ".join(f"{kind} {count}" for kind, count in kinds.items())
    print(
        f"docs-check: {len(results)} blocks in {len(files)} files, "
        f"{len(results) - len(failed)} ok ({counts}), {len(failed)} failed; "
        f"{len(broken)} broken links; {time.monotonic() - started:.1f} s"
    )
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
