"""A progress bar per run, drawn only on a terminal.

Runs can take minutes, so an interactive user wants to see them move; a CI log or a
redirected stream wants none of it (a live bar there is a heap of control codes), so
anything but an interactive terminal (as rich judges it: a TTY, not TERM=dumb, no
TTY_INTERACTIVE=0) gets nothing at all, not even a final frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

# A benchmark shares its process with the bar: redraw rarely, to cost its timings little.
REFRESH_PER_SECOND = 4


class RunProgress:
    """``with progress.run("rate=inf", total=100) as advance: ... advance() ...``"""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    @contextmanager
    def run(self, label: str, total: int) -> Iterator[Callable[[], None]]:
        """Yield the callback that counts one finished request."""
        if not self.console.is_interactive:
            yield lambda: None
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("requests"),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
        ) as progress:
            task = progress.add_task(label, total=total)
            yield lambda: progress.advance(task)
