"""tools/docs_check.py on small made-up Markdown: what passes, what fails and why; and the
make targets the real docs name exist in the Makefile."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_checker():
    spec = importlib.util.spec_from_file_location("docs_check", ROOT / "tools" / "docs_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


docs_check = _load_checker()

FENCE = "```"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root with one test file for tested-by markers to name."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_real.py").write_text(
        "def test_sync():\n    pass\n\n\nasync def test_async():\n    pass\n\n\n"
        "class TestGroup:\n    def test_method(self):\n        pass\n"
    )
    (tmp_path / "docs").mkdir()
    return tmp_path


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def check(root: Path, path: Path, timeout_s: float = 10):
    results, broken = docs_check.check_files([path], root, timeout_s)
    return results, broken


def test_a_good_file_passes(repo: Path) -> None:
    path = write(
        repo,
        "README.md",
        f"# Title\n\n<!-- docs-check: run -->\n{FENCE}sh\ntrue\necho fine\n{FENCE}\n\n"
        f"<!-- docs-check: tested-by tests/test_real.py::test_sync -->\n{FENCE}bash\n"
        f"serve --forever\n{FENCE}\n\n"
        f"<!-- docs-check: tested-by tests/test_real.py::test_async -->\n{FENCE}sh\nx\n{FENCE}\n\n"
        f"<!-- docs-check: tested-by tests/test_real.py::TestGroup::test_method -->\n"
        f"{FENCE}sh\nx\n{FENCE}\n\n"
        f"<!-- docs-check: not-a-command -->\n{FENCE}console\nsome output\n{FENCE}\n\n"
        f"{FENCE}python\nprint('not checked, no marker needed')\n{FENCE}\n\n"
        f"See [the docs](docs/page.md#a-section) and [the web](https://example.invalid/x).\n",
    )
    write(repo, "docs/page.md", "# Page\n")
    results, broken = check(repo, path)
    assert [r.ok for r in results] == [True] * 5, [r.detail for r in results]
    assert [r.marker.split()[0] for r in results] == [
        "run",
        "tested-by",
        "tested-by",
        "tested-by",
        "not-a-command",
    ]
    assert broken == []
    assert docs_check.main(["--root", str(repo)]) == 0


def test_a_block_without_a_marker_fails_naming_file_and_line(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(repo, "docs/guide.md", f"# Guide\n\nRun this:\n\n{FENCE}sh\nmake all\n{FENCE}\n")
    results, _ = check(repo, path)
    assert len(results) == 1 and not results[0].ok
    assert "no docs-check marker" in results[0].detail
    assert docs_check.main(["--root", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "docs/guide.md:5  (none)  FAILED" in out
    assert "1 failed" in out


def test_a_marker_must_be_on_the_line_just_before_the_fence(repo: Path) -> None:
    path = write(repo, "README.md", f"<!-- docs-check: run -->\n\n{FENCE}sh\ntrue\n{FENCE}\n")
    (result,), _ = check(repo, path)
    assert not result.ok and "no docs-check marker" in result.detail


def test_a_run_block_that_exits_1_fails(repo: Path) -> None:
    path = write(
        repo,
        "README.md",
        f"<!-- docs-check: run -->\n{FENCE}sh\necho about to fail\nfalse\necho never\n{FENCE}\n",
    )
    (result,), _ = check(repo, path)
    assert not result.ok
    assert result.detail.startswith("exited 1")
    assert "about to fail" in result.detail and "never" not in result.detail


def test_a_failing_command_in_a_pipe_fails_the_block(repo: Path) -> None:
    path = write(repo, "README.md", f"<!-- docs-check: run -->\n{FENCE}sh\nfalse | cat\n{FENCE}\n")
    (result,), _ = check(repo, path)
    assert not result.ok  # pipefail


def test_run_blocks_start_in_the_root_with_the_venv_first_on_path(repo: Path) -> None:
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    tool = venv_bin / "only-in-the-venv"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    (repo / "marker-file").write_text("")
    path = write(
        repo,
        "docs/deep/page.md",
        f"<!-- docs-check: run -->\n{FENCE}sh\ntest -f marker-file\nonly-in-the-venv\n{FENCE}\n",
    )
    (result,), _ = check(repo, path)
    assert result.ok, result.detail


def test_a_run_block_past_its_timeout_fails(repo: Path) -> None:
    path = write(
        repo, "README.md", f"<!-- docs-check: run timeout=0.5 -->\n{FENCE}sh\nsleep 30\n{FENCE}\n"
    )
    (result,), _ = check(repo, path)
    assert not result.ok and result.detail == "timed out after 0.5 s"


def test_a_console_block_runs_only_its_prompted_lines(repo: Path) -> None:
    text = f"<!-- docs-check: run -->\n{FENCE}console\n$ echo one \\\n    two\none two\n{FENCE}\n"
    path = write(repo, "README.md", text)
    (block,) = docs_check.checked_blocks(path)
    assert docs_check.commands_of(block) == "echo one \\\n    two"
    (result,), _ = check(repo, path)
    assert result.ok, result.detail


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("tests/test_real.py::test_missing", "defines no test test_missing"),
        ("tests/test_gone.py::test_sync", "tests/test_gone.py does not exist"),
        ("tests/test_real.py::TestOther::test_method", "defines no class TestOther"),
    ],
)
def test_a_tested_by_naming_a_missing_test_fails(repo: Path, reference: str, problem: str) -> None:
    path = write(repo, "README.md", f"<!-- docs-check: tested-by {reference} -->\n{FENCE}sh\nx\n")
    (result,), _ = check(repo, path)
    assert not result.ok
    assert problem in result.detail


@pytest.mark.parametrize(
    ("marker", "problem"),
    [
        ("<!-- docs-check: run --> <!-- docs-check: not-a-command -->", "exactly one"),
        ("<!-- docs-check: skip -->", "unknown docs-check marker 'skip'"),
        ("<!-- docs-check: run quickly -->", "run takes only timeout=SECONDS"),
        ("<!-- docs-check: tested-by somewhere -->", "tested-by wants tests/PATH.py::test_name"),
        ("<!-- docs-check: not-a-command really -->", "not-a-command takes no argument"),
    ],
)
def test_malformed_markers_fail(repo: Path, marker: str, problem: str) -> None:
    path = write(repo, "README.md", f"{marker}\n{FENCE}bash\ntrue\n{FENCE}\n")
    (result,), _ = check(repo, path)
    assert not result.ok and problem in result.detail


def test_fences_inside_other_blocks_and_indented_blocks(repo: Path) -> None:
    text = (
        f"````markdown\n{FENCE}sh\nnot a block of its own\n{FENCE}\n````\n\n"
        f"- a list item:\n\n  <!-- docs-check: run -->\n  {FENCE}sh\n  true\n  {FENCE}\n\n"
        f"```` ```sh ```` at the start of a line is inline code, not a fence.\n"
    )
    path = write(repo, "README.md", text)
    blocks = docs_check.checked_blocks(path)
    assert [(b.line, b.code) for b in blocks] == [(10, "true")]
    (result,), _ = check(repo, path)
    assert result.ok, result.detail


def test_a_broken_relative_link_fails(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "docs/there.md", "# There\n")
    write(
        repo,
        "docs/page.md",
        "[ok](there.md) [ok too](../docs/there.md#x) [anchor](#here) `[code](nowhere.md)`\n"
        "[broken](missing.md)\n",
    )
    assert docs_check.main(["--root", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "docs/page.md:2  link  FAILED: links to missing.md, which does not exist" in out
    assert out.count("FAILED") == 1


def test_files_are_the_readme_and_every_page_under_docs(repo: Path) -> None:
    write(repo, "README.md", "# R\n")
    write(repo, "docs/b.md", "# B\n")
    write(repo, "docs/a/c.md", "# C\n")
    write(repo, "other/d.md", "# D\n")
    names = [p.relative_to(repo).as_posix() for p in docs_check.markdown_files(repo)]
    assert names == ["README.md", "docs/a/c.md", "docs/b.md"]


# --- the real docs ------------------------------------------------------------------------

MAKE_COMMAND = re.compile(r"^\s*make\b(.*)$")


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))


def test_documented_make_targets_exist() -> None:
    """Every `make TARGET` in a shell block of README.md or docs/ names a Makefile target
    (`make serve`, `make ENGINE=gpu test`, ...); running them is CI's job."""
    targets = _makefile_targets()
    named: dict[str, str] = {}
    for path in docs_check.markdown_files(ROOT):
        for block in docs_check.checked_blocks(path):
            for line in block.code.splitlines():
                match = MAKE_COMMAND.match(line)
                if match is None:
                    continue
                for word in shlex.split(match.group(1), comments=True):
                    if "=" not in word and not word.startswith("-"):
                        named.setdefault(word, f"{path.relative_to(ROOT)}:{block.line}")
    assert {"serve", "test"} <= set(named)
    missing = {target: where for target, where in named.items() if target not in targets}
    assert not missing, f"documented make targets the Makefile lacks: {missing}"
