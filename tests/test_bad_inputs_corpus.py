"""The corpus of bad inputs (tests/corpus/, described in its README): every case gets its documented
outcome from `advise assess` and, where the case is about project.yaml or would reach training,
`advise run --dry-run`: the exit status and a fragment of what it says, never a traceback or exit 70.

A case is the base project (tests/corpus/base) with the case's files laid over it; the large ones
(a 5 MB record, 20,000-deep YAML, a symlink loop, a FIFO) are generated here. For exit 2 the fragment
is in the one line on stderr, which names the file; for exit 0 it is a finding code of the assessment
(assess) or a line on stderr (run --dry-run).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from advisor.cli.main import main

CORPUS = Path(__file__).parent / "corpus"
ASSESS, RUN = "assess", "run --dry-run"


def _deep_yaml(root: Path) -> None:
    depth = 20_000
    (root / "project.yaml").write_text((root / "project.yaml").read_text() + "train:\n  x: " + "[" * depth + "]" * depth
                                       + "\n")


def _huge_record(root: Path) -> None:
    big = {"messages": [{"role": "user", "content": "word " * 1_000_000}, {"role": "assistant", "content": "cards"}]}
    with open(root / "data" / "train.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(big) + "\n")


def _symlink_loop(root: Path) -> None:
    (root / "data" / "a.jsonl").symlink_to("b.jsonl")
    (root / "data" / "b.jsonl").symlink_to("a.jsonl")
    (root / "project.yaml").write_text((root / "project.yaml").read_text().replace("data/train.jsonl", "data/a.jsonl"))


def _fifo(root: Path) -> None:
    os.mkfifo(root / "data" / "pipe.jsonl")
    (root / "project.yaml").write_text((root / "project.yaml").read_text().replace("data/train.jsonl",
                                                                                   "data/pipe.jsonl"))


GENERATED = {"huge_record": _huge_record, "deep_yaml": _deep_yaml, "symlink_loop": _symlink_loop, "fifo_data": _fifo}

# case -> {command: (exit status, fragment)}; the fragment of an exit-0 assess is a finding code
CASES: dict[str, dict[str, tuple[int, str]]] = {
    # data files
    "broken_json_line": {ASSESS: (0, "invalid_json"), RUN: (0, "")},
    "all_lines_broken": {ASSESS: (2, "train.jsonl:1: no valid training example: the line is not valid JSON"),
                         RUN: (2, "no valid training example")},
    "bom_data_file": {ASSESS: (0, "near_duplicate")},  # a BOM is UTF-8: skipped, the records are read
    "nul_bytes_line": {ASSESS: (0, "invalid_json")},
    "nul_bytes_file": {ASSESS: (2, "train.jsonl:1: no valid training example: the line is not valid JSON")},
    "empty_data_file": {ASSESS: (2, "train.jsonl: no valid training example: the file holds no records"),
                        RUN: (2, "the file holds no records")},
    "blank_lines_only": {ASSESS: (2, "train.jsonl: no valid training example: the file holds no records")},
    "latin1_data": {ASSESS: (0, "file_not_utf8")},
    "content_wrong_type": {ASSESS: (0, "missing_content")},
    "record_is_a_list": {ASSESS: (0, "data_type")},
    "missing_fields": {ASSESS: (0, "message_missing_key")},
    "no_assistant_reply": {ASSESS: (2, "train.jsonl:1: no valid training example: no assistant message to learn from")},
    "assistant_first_user_last": {ASSESS: (0, "no_prompt")},
    "unknown_role": {ASSESS: (0, "unrecognized_role")},
    "preference_chosen_equals_rejected": {ASSESS: (2, "chosen and rejected are identical")},
    "lookalike_labels": {ASSESS: (0, "lookalike_labels")},
    "deeply_nested_json": {ASSESS: (0, "invalid_json")},
    "format_declared_mismatch": {ASSESS: (2, "the record is not of the format declared in project.yaml")},
    "huge_record": {ASSESS: (0, "over_max_length")},
    "symlink_loop": {ASSESS: (2, "data.train: 'data/a.jsonl' is a symlink loop"), RUN: (2, "is a symlink loop")},
    "fifo_data": {ASSESS: (2, "is a named pipe (FIFO), not a regular file")},
    "data_path_outside": {ASSESS: (2, "data.train: '../../etc/passwd' points outside the project directory"),
                          RUN: (2, "points outside the project directory")},
    "tilde_unknown_user": {ASSESS: (2, "data.train: '~no-such-user-here/train.jsonl' starts with '~no-such-user-here'"),
                           RUN: (2, "there is no home directory")},  # found by bench/fuzz_records.py (was exit 70)
    "base_model_tilde_unknown_user": {ASSESS: (2, "base_model: '~no-such-user-here/model' starts with"),
                                      RUN: (2, "there is no home directory")},  # (was exit 70)
    "data_file_missing": {ASSESS: (2, "nope.jsonl: training data file not found"), RUN: (2, "not found")},
    "data_path_is_a_directory": {ASSESS: (2, "is a directory, not a regular file")},
    # project.yaml: form
    "empty_project_yaml": {ASSESS: (2, "project.yaml: is empty"), RUN: (2, "project.yaml: is empty")},
    "project_yaml_a_list": {ASSESS: (2, "project.yaml:1: expected a mapping of keys"), RUN: (2, "expected a mapping")},
    "bom_project_yaml": {ASSESS: (0, "near_duplicate"), RUN: (0, "")},  # a BOM before the YAML is fine
    "nul_bytes_project_yaml": {ASSESS: (2, "YAML syntax error: unacceptable character #x0000"),
                               RUN: (2, "unacceptable character")},
    "latin1_project_yaml": {ASSESS: (2, "project.yaml: is not UTF-8 text"), RUN: (2, "is not UTF-8 text")},
    "yaml_syntax_error": {ASSESS: (2, "project.yaml:7: YAML syntax error: expected ',' or ']'"),
                          RUN: (2, "YAML syntax error")},
    "duplicate_key": {ASSESS: (2, "project.yaml:8: YAML syntax error: found duplicate key 'budget_usd' (first at line 7)"),
                      RUN: (2, "duplicate key")},
    "alias_bomb": {ASSESS: (2, "YAML refused: aliases expand to more than 10,000 values"), RUN: (2, "alias bomb")},
    "recursive_alias": {ASSESS: (2, "project.yaml:7: YAML refused: alias *a refers to a value that contains it"),
                        RUN: (2, "recursive alias")},
    "deep_yaml": {ASSESS: (2, "YAML refused: nested more than 100 levels deep"), RUN: (2, "nested more than 100")},
    "mapping_as_key": {ASSESS: (2, "project.yaml:6: YAML syntax error: a key must be a plain value"),
                       RUN: (2, "a key must be a plain value")},  # found by bench/fuzz_records.py (was exit 70)
    "aliases_within_bounds": {ASSESS: (0, "unknown_train_key"), RUN: (0, "train.base: no installed plugin takes it")},
    # project.yaml: schema
    "missing_task": {ASSESS: (2, "project.yaml: task is required but missing"), RUN: (2, "task is required")},
    "name_with_spaces": {ASSESS: (2, "project.yaml:1: name is invalid: use letters, digits"), RUN: (2, "name is invalid")},
    "wrong_type_budget": {ASSESS: (2, "project.yaml:7: constraints.budget_usd expected a valid number"),
                          RUN: (2, "constraints.budget_usd expected a valid number")},
    "wrong_type_train_value": {ASSESS: (2, "project.yaml:7: train.batch_size expected a valid integer"),
                               RUN: (2, "train.batch_size expected a valid integer")},
    "unknown_top_level_key": {ASSESS: (2, "project.yaml:6: hardware is not a known key"), RUN: (2, "is not a known key")},
    "method_unknown": {ASSESS: (2, "project.yaml:6: method expected 'auto'"), RUN: (2, "method expected")},
    # project.yaml: absurd numbers and hardware
    "budget_infinite": {ASSESS: (2, "project.yaml:7: constraints.budget_usd expected a finite number"),
                        RUN: (2, "expected a finite number")},
    "budget_nan": {ASSESS: (2, "project.yaml:7: constraints.budget_usd expected a finite number"),
                   RUN: (2, "expected a finite number")},
    "budget_huge": {ASSESS: (2, "project.yaml:7: constraints.budget_usd is invalid: $1e+30 is more than any training"),
                    RUN: (2, "is more than any training run costs")},
    "learning_rate_infinite": {ASSESS: (2, "project.yaml:7: train.learning_rate expected a finite number"),
                               RUN: (2, "train.learning_rate expected a finite number")},
    "epochs_huge": {ASSESS: (2, "project.yaml:7: train.epochs expected less than or equal to 1000"),
                    RUN: (2, "train.epochs expected less than or equal to 1000")},
    "gpu_count_exponent": {ASSESS: (2, "project.yaml:7: constraints.hardware: hardware '1e26x A100': the GPU count"),
                           RUN: (2, "the GPU count '1e26' is not a whole number")},
    "gpu_count_power": {ASSESS: (2, "project.yaml:7: constraints.hardware: hardware '10^26x H100': the GPU count"),
                        RUN: (2, "the GPU count '10^26' is not a whole number")},
    "gpu_unknown": {ASSESS: (2, "project.yaml:7: constraints.hardware: unknown GPU 'Z9000'"), RUN: (2, "unknown GPU")},
    # project.yaml: typos under train: and in gates (warnings, before train or gate)
    "train_key_typo": {ASSESS: (0, "unknown_train_key"), RUN: (0, "train.learnin_rate: did you mean learning_rate?")},
    "gate_operator_typo": {ASSESS: (0, "gate_unreadable"), RUN: (0, "did you mean \">= 0.55\"?")},
    "gate_unknown_metric": {ASSESS: (0, "gate_unreadable"), RUN: (0, "unknown metric 'acuracy' (did you mean 'accuracy'?)")},
    "gate_wrong_form": {ASSESS: (2, "project.yaml:8: eval.gates.accuracy has the wrong form"), RUN: (2, "has the wrong form")},
}


def _case_dir(name: str, tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(CORPUS / "base", root)
    if name in GENERATED:
        GENERATED[name](root)
    else:
        shutil.copytree(CORPUS / name, root, dirs_exist_ok=True)
    return root


def _check(r, root: Path, status: int, fragment: str, command: str) -> None:
    where = f"{command} exit {r.exit_code}: {r.output[-600:]}"
    assert r.exit_code == status, where
    assert "Traceback" not in r.output and "internal error" not in r.output, where
    if status == 2:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("advise: "), where
        assert fragment in lines[0], where
        assert str(root) in lines[0], where  # the file is named
    elif command == ASSESS:
        assert fragment in {f["code"] for f in json.loads(r.stdout)["findings"]}, where
    else:
        assert fragment in r.stderr, where


def test_the_corpus_has_every_kind_and_every_case_is_documented():
    on_disk = {p.name for p in CORPUS.iterdir() if p.is_dir()} - {"base"}
    assert on_disk | set(GENERATED) == set(CASES)
    assert len(CASES) >= 25
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    missing = [c for c in CASES if f"`{c}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_its_documented_outcome(name, tmp_path):
    if name == "fifo_data" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    if name == "symlink_loop" and sys.platform == "win32":
        pytest.skip("symlinks need privileges on Windows")
    root = _case_dir(name, tmp_path)
    expected = CASES[name]
    if ASSESS in expected:
        r = CliRunner().invoke(main, ["assess", str(root), "--json", "--no-embeddings"])
        _check(r, root, *expected[ASSESS], ASSESS)
    if RUN in expected:
        r = CliRunner().invoke(main, ["run", str(root), "--dry-run"])
        _check(r, root, *expected[RUN], RUN)
