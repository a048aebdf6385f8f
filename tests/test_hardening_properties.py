"""Property-based tests (hypothesis): the record parser and the project loader take any input.

* records: any JSONL file (arbitrary JSON values shaped like the contract's formats, broken JSON,
  invalid UTF-8, blank lines), under every declared format, raises nothing; every non-blank line is
  either a valid record of that line or an error finding naming the file and that line, never both;
* project.yaml: any text, and any YAML document built from the project's own keys, gives a Project or
  an AdviseError (one line), never another exception.
"""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.data.findings import CODES, ERROR
from advisor.data.records import load_records
from advisor.errors import AdviseError
from advisor.project import DataFormat, parse_project

KEYS = ["messages", "role", "content", "instruction", "input", "output", "prompt", "completion", "chosen",
        "rejected", "name", "weight", "tool_calls", "id", "tags", "[/]", "system", "user", "assistant", "x"]
TEXT = st.one_of(st.sampled_from(["", " ", "user", "assistant", "system", "tool", "hi there", "\n\nHuman: x",
                                  "Route it.", "{\"a\": 1", "[/oops]"]), st.text(max_size=12))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                      max_leaves=20)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "bot"]),
                                 "content": st.one_of(TEXT, SCALARS)})
CHAT = st.fixed_dictionaries({"messages": st.lists(MESSAGE, max_size=4)})
LINE = st.one_of(
    VALUES.map(json.dumps), CHAT.map(json.dumps),
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4).map(json.dumps),
    st.sampled_from(["", "   ", "{", "[1,", "\"unterminated", "{\"messages\": }", "NaN"]),
).map(str.encode) | st.binary(max_size=20).filter(lambda b: b"\n" not in b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=12), declared=st.sampled_from([f.value for f in DataFormat]))
def test_record_parser_any_file(tmp_path_factory, lines, declared):
    path = tmp_path_factory.mktemp("records") / "train.jsonl"
    lines = [b.replace(b"\n", b" ").replace(b"\r", b" ") for b in lines]
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        recs, findings, stats = load_records(path, declared)
    except AdviseError:
        return
    valid = {r.line for r in recs}
    assert len(valid) == len(recs) == stats.examples
    errors: dict[int, set[str]] = {}
    for f in findings.to_list():
        for ex in f["examples"]:
            assert ex["file"] == str(path)
            if CODES[f["code"]][0] == ERROR and ex["line"] is not None:
                errors.setdefault(ex["line"], set()).add(f["code"])
    # blank: nothing but whitespace (a UTF-8 byte-order mark before the first record is no data either)
    blank = {i for i, raw in enumerate(lines, 1) if not (raw[3:] if i == 1 and raw.startswith(b"\xef\xbb\xbf") else raw).strip()}
    for i in range(1, len(lines) + 1):
        if i in blank:
            assert i not in valid
            continue
        assert (i in valid) != (i in errors), (i, lines[i - 1], errors.get(i))
    assert stats.invalid == len(errors)


PROJECT_KEYS = ["name", "task", "base_model", "data", "train", "eval", "docs", "format", "constraints", "method",
                "gates", "accuracy", "max_steps", "seed", "hardware", "on", "min", "metrics", "budget_usd"]
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), TEXT,
              st.sampled_from(["p", "Route it.", "data/t.jsonl", "../out.jsonl", "/etc/passwd", ">= 0.5", "auto",
                               "lora", "1x A100-80GB"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(PROJECT_KEYS), inner,
                                                                          max_size=6)),
    max_leaves=25)


def _load(tmp_path_factory, text: str) -> None:
    root = tmp_path_factory.mktemp("proj")
    try:
        project = parse_project(text, root, root / "project.yaml")
    except AdviseError as e:
        assert "\n" not in str(e) and str(e).startswith(str(root / "project.yaml"))
        return
    assert project.name and project.data.train


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from(PROJECT_KEYS), YAML_VALUES, max_size=8))
def test_project_loader_any_document(tmp_path_factory, doc):
    _load(tmp_path_factory, yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(list("ab:- \n\t[]{}&*!|>'\"#%@`,?0.~\x00é") + [
    "name: p\n", "task: t\n", "data:\n  train: t.jsonl\n", "train:\n  ", "eval:\n  gates:\n    ", "&a ", "*a",
    "!!python/object:os.system ", "\ufeff", "---\n"]), max_size=40).map("".join))
def test_project_loader_any_text(tmp_path_factory, text):
    _load(tmp_path_factory, text)
