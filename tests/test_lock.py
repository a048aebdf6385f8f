"""The project lock: a second writer is refused with the holder's PID; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os

import pytest
from conftest import lock_holder

from advisor.errors import AdviseError
from advisor.lock import holder, project_lock


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path):
    store = tmp_path / ".advise"
    child = lock_holder(store, "advise eval")
    try:
        with pytest.raises(AdviseError, match=rf"in use by PID {child.pid} \(advise eval, since "):
            with project_lock(store, "advise train"):
                pass
        assert holder(store)["pid"] == child.pid
    finally:
        child.kill()
        child.wait()
    # the holder was killed: its lock is stale and is taken over, with the stale holder reported
    seen = []
    with project_lock(store, "advise train", on_stale=seen.append) as me:
        assert me["pid"] == os.getpid() and json.loads((store / "lock").read_text())["command"] == "advise train"
    assert seen and seen[0]["pid"] == child.pid
    assert not (store / "lock").exists()  # released


def test_nested_use_in_one_process_shares_the_lock_and_a_file_in_the_way_is_one_error(tmp_path):
    store = tmp_path / ".advise"
    with project_lock(store, "advise run"):
        with project_lock(store, "advise eval"):
            assert holder(store)["command"] == "advise run"
        assert (store / "lock").exists()
    bad = tmp_path / "p" / ".advise"
    bad.parent.mkdir()
    bad.write_text("not a directory")
    with pytest.raises(AdviseError, match="is a file"):
        with project_lock(bad, "advise eval"):
            pass
