"""SIGTERM is handled like Ctrl-C: a training run is marked interrupted (with the resume hint), not left
"running" in the store forever."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import train_fixtures as fx

train_tiny_model = fx.train_tiny_model
LONG = {"max_steps": 5000, "learning_rate": 1.0e-3, "batch_size": 4, "max_length": 64, "seed": 1}


def _train_status(store):
    if not store.is_file():
        return None
    db = sqlite3.connect(store, timeout=5)
    try:
        row = db.execute("SELECT id, status FROM runs WHERE kind='train' ORDER BY started DESC LIMIT 1").fetchone()
        steps = db.execute("SELECT COUNT(*) FROM train_log").fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return (row, steps) if row else None


def test_sigterm_marks_the_training_run_interrupted_with_the_resume_hint(tmp_path, train_tiny_model):
    project = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, LONG)
    proc = subprocess.Popen([*fx.ADVISE, "train", str(project), "--method", "lora"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    store = project / ".advise" / "store.sqlite"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            st = _train_status(store)
            if st and st[0][1] == "running" and st[1] >= 2:  # training steps are being logged
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.1)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    (run_id, status), _ = _train_status(store)
    assert status == "interrupted"
    assert f"--resume {run_id}" in err
