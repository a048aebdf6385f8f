"""Data shown on a terminal is text, never rich markup, and carries no terminal escape sequences: a
JSON key ``[/]``, a label ``[/oops]``, ``base_model: org/[/]model`` and labels with ANSI
colours and OSC-8 links, through ``advise assess``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from advisor.cli.main import main
from advisor.cli.views import plain

EVIL = "tech\x1b[31mred\x1b[0m\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\\x07"


def test_markup_and_escapes_in_data_are_shown_as_text(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    root = tmp_path / "p"
    (root / "data").mkdir(parents=True)
    labels = ["billing"] * 10 + [EVIL] * 9 + ["[/oops]"]
    with open(root / "data" / "train.jsonl", "w") as fh:
        for i, lab in enumerate(labels):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"message number {i} about things"},
                                              {"role": "assistant", "content": lab}], "[/]": 1}) + "\n")
    (root / "project.yaml").write_text("name: p\ntask: Route messages.\nbase_model: org/[/]model\n"
                                       "data: {train: data/train.jsonl}\n")
    r = CliRunner().invoke(main, ["assess", str(root), "--no-embeddings"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "org/[/]model" in out  # the panel's subtitle
    assert "(['[/]'])" in out  # the unrecognized key, in the findings table
    assert "'[/oops]' x1" in out  # a label in a finding's detail, not a closing tag
    assert "'techredlink' x9" in out  # escapes removed, the text kept
    assert "\x1b" not in out and "\x07" not in out


def test_plain_strips_csi_osc_and_control_characters():
    assert plain(EVIL).plain == "techredlink"
    assert plain("a\tb\nc\x9b31md\x00").plain == "a\tb\ncd"
    assert plain("[/]").plain == "[/]" and plain("[bold]x[/bold]").plain == "[bold]x[/bold]"
