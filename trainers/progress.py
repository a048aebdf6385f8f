"""Progress of a run: one line on the terminal, and a row per logged step in the run store."""

from __future__ import annotations

import sys
import time

from advisor.store import Store


def _fmt_secs(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class TerminalProgress:
    """One progress line on stderr: step, loss, tokens/s, ETA (rewritten in place on a terminal)."""

    def __init__(self, stream=None, min_interval: float = 2.0):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = 0.1 if self.tty else min_interval
        self.last = 0.0

    def __call__(self, ev) -> None:
        now = time.monotonic()
        final = ev.step >= ev.max_steps
        if not final and ev.step > 1 and now - self.last < self.min_interval:
            return
        self.last = now
        tps = f"{ev.tokens_per_second:,.0f} tok/s" if ev.tokens_per_second else "- tok/s"
        loss = f"{ev.loss:.4f}" if ev.loss is not None else "-"
        line = f"step {ev.step}/{ev.max_steps}  loss {loss}  {tps}  ETA {_fmt_secs(ev.eta_seconds)}"
        if self.tty:
            self.stream.write("\r" + line.ljust(70) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class StoreLogger:
    """Progress events into the run store's train_log (rank 0 only), forwarded to the terminal."""

    def __init__(self, project, run_id: str, forward=None):

        self.store = Store.for_project(project)
        self.run_id = run_id
        self.forward = forward

    def __call__(self, ev) -> None:
        self.store.log_train(self.run_id, ev.step, {"loss": ev.loss, "lr": ev.learning_rate, "tokens": ev.tokens,
                                                    "tokens_per_second": ev.tokens_per_second, "epoch": ev.epoch,
                                                    "time": time.time()})
        if self.forward is not None:
            self.forward(ev)

    def close(self) -> None:
        self.store.close()


