"""A rich progress bar on stderr for an eval, with items/s (items computed, not read from the cache)."""

from __future__ import annotations

import time
from typing import Any


class Progress:
    """A rich progress bar on stderr with items/s (items computed, not read from the cache)."""

    def __init__(self, enabled: bool, console=None):
        self._p = None
        self._speed: dict[Any, list] = {}
        self.console = console
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.console = console or Console(stderr=True)
            self._p = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=self.console,
                               transient=False)
            self._p.start()

    def task(self, name: str, total: int, cached: int):
        if not self._p:
            return None
        tid = self._p.add_task(name, total=total, completed=cached, rate="cached" if cached == total else "")
        self._speed[tid] = [time.perf_counter(), 0]
        return tid

    def advance(self, task, n: int) -> None:
        if not self._p or task is None:
            return
        t0, done = self._speed[task]
        done += n
        self._speed[task] = [t0, done]
        rate = done / max(1e-9, time.perf_counter() - t0)
        self._p.update(task, advance=n, rate=f"{rate:.1f} items/s")

    def finish(self, task) -> None:
        if self._p and task is not None:
            self._p.stop_task(task)

    def stop(self, failed: bool = False) -> None:
        if self._p:
            if failed:  # the error line says what happened; no half-drawn bars, not even an empty line
                for tid in list(self._p.task_ids):
                    self._p.remove_task(tid)
                self._p.live.transient = True
                self._p.live.stop()  # Progress.stop() would add a blank line on a non-terminal stderr
            else:
                self._p.stop()
            self._p = None

