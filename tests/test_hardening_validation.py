"""Validation gaps of issue 11: absurd numbers refused at load, one hardware parser for every command,
typos under ``train:`` and in gates reported by assess and ``run --dry-run``, look-alike labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from advisor.cli.main import main

RECORD = '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "%s"}]}'


def cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def project(root: Path, extra: str, *, records: list[str] | None = None) -> Path:
    """A project whose project.yaml ends with ``extra`` (its first line is line 6)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    rows = records or [RECORD % (f"message {i} about my card", "cards") for i in range(12)]
    (root / "data" / "t.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "project.yaml").write_text(
        "name: x\ntask: Route each message to a queue.\nbase_model: Qwen/Qwen2.5-0.5B-Instruct\ndata:\n"
        "  train: data/t.jsonl\n" + extra, encoding="utf-8")
    return root


def one_error(r, line: int) -> str:
    assert r.exit_code == 2, (r.exit_code, r.output)
    msg = r.stderr.strip()
    assert "\n" not in msg and "Traceback" not in r.output and "internal error" not in msg
    assert f"project.yaml:{line}: " in msg, msg
    return msg


# -- 1. infinite or absurd numbers -------------------------------------------------------------------
ABSURD = [
    ("constraints:\n  budget_usd: .inf\n", 7, "constraints.budget_usd expected a finite number"),
    ("constraints:\n  budget_usd: .nan\n", 7, "constraints.budget_usd expected a finite number"),
    ("constraints:\n  budget_usd: -5\n", 7, "constraints.budget_usd expected greater than or equal to 0"),
    ("constraints:\n  budget_usd: 1e30\n", 7, "is more than any training run costs"),
    ("train:\n  learning_rate: .inf\n", 7, "train.learning_rate expected a finite number"),
    ("train:\n  learning_rate: .nan\n", 7, "train.learning_rate expected a finite number"),
    ("train:\n  epochs: 1e30\n", 7, "train.epochs expected less than or equal to 1000"),
    ("train:\n  max_grad_norm: .inf\n", 7, "train.max_grad_norm expected a finite number"),
    ("train:\n  lora_alpha: .inf\n", 7, "train.lora_alpha expected a finite number"),
    ("constraints:\n  hardware: 10^26x H100\n", 7, "the GPU count '10^26' is not a whole number"),
    ("constraints:\n  hardware: 1e26x A100\n", 7, "the GPU count '1e26' is not a whole number"),
    ("constraints:\n  hardware: 100000000000000000000000000x H100\n", 7, "GPUs is more than any training cluster"),
]


@pytest.mark.parametrize("extra,line,fragment", ABSURD, ids=[a[2][:40] for a in ABSURD])
def test_absurd_numbers_are_refused_at_load_with_the_line(tmp_path, extra, line, fragment):
    root = project(tmp_path / "p", extra)
    for args in (("assess", root, "--no-embeddings"), ("run", root, "--dry-run")):
        assert fragment in one_error(cli(*args), line)


def test_the_policy_bounds_are_rubric_values_with_a_source():
    from advisor.rubric import load_rubric, source, value

    assert value(load_rubric("limits"), "budget_usd_max") == 1e10 and "Epoch AI" in source(load_rubric("limits"),
                                                                                          "budget_usd_max")
    assert value(load_rubric("hardware"), "max_gpus") == 200_000 and source(load_rubric("hardware"), "max_gpus")


def test_sensible_numbers_still_load(tmp_path):
    root = project(tmp_path / "p", "constraints:\n  budget_usd: 5000000\n  hardware: 1024x H100\n"
                                   "train:\n  learning_rate: 0.0002\n  epochs: 3\n  max_grad_norm: 1.0\n")
    from advisor.project import load_project

    p = load_project(root)
    assert p.constraints.budget_usd == 5e6 and p.train.learning_rate == 2e-4


# -- 2. one hardware parser ----------------------------------------------------------------------------
ACCEPTED = ["2x H100", "8xA10G", "RTX 4090", "H100 x 4", "none", "cpu only", "no GPU", "1x A100-80GB", "200000x H100"]
REFUSED = {"1e26x A100": "is not a whole number", "10^26x H100": "is not a whole number",
           "1.5x H100": "is not a whole number", "-2x H100": "is not a whole number",
           "300000x H100": "more than any training cluster", "0x H100": "must be at least 1",
           "2x Z9000": "unknown GPU 'Z9000'", "lots of GPUs": "unknown GPU"}


def test_assess_and_the_estimate_use_the_one_parser():
    import advisor.assess.estimate as estimate
    import advisor.hardware as core

    assert estimate.parse_hardware is core.parse_hardware
    assert estimate.hardware.parse_hardware is core.parse_hardware


@pytest.mark.parametrize("text", sorted(REFUSED))
def test_refused_hardware_is_refused_alike_by_assess_train_and_run(tmp_path, text):
    root = project(tmp_path / "p", f"constraints:\n  hardware: '{text}'\n")
    msgs = {cmd: one_error(cli(*args), 7) for cmd, args in (
        ("assess", ("assess", root, "--no-embeddings")), ("run", ("run", root, "--dry-run")),
        ("train", ("train", root, "--method", "lora", "--max-steps", "1")))}
    assert len(set(msgs.values())) == 1, msgs
    assert "constraints.hardware: " in msgs["assess"] and REFUSED[text] in msgs["assess"]
    assert not (root / ".advise" / "runs").exists()  # train refused before anything was written


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_hardware_is_accepted_alike_by_assess_and_run(tmp_path, text):
    root = project(tmp_path / "p", f"constraints:\n  hardware: '{text}'\n")
    r = cli("assess", root, "--no-embeddings", "--json")
    assert r.exit_code == 0, r.output
    hw = json.loads(r.stdout)["estimate"]["hardware"]
    assert hw["kind"] in ("gpu", "cpu")
    d = cli("run", root, "--dry-run")
    assert d.exit_code in (0, 1), d.output  # planned, or stopped on the data's blockers: not bad input
    assert "constraints.hardware" not in d.output
    from advisor.project import load_project
    from trainers.config import build_config
    from trainers.registry import get_plugin

    build_config(get_plugin("lora"), load_project(root))  # train's own checks of the project accept it too


def test_no_gpu_spellings_read_alike_by_the_decision(tmp_path):
    """'cpu only' is no GPU for the estimate and for the decision's no-training-hardware rule alike."""
    from advisor.assess.decide import Facts, decide
    from advisor.rubric import load_rubric

    big = {m: {"method": m, "cpu_hours": 10_000.0, "fits": None} for m in ("lora", "full", "rlhf")}
    rubric = load_rubric("decision")
    base = dict(train_examples=500, train_invalid=0, train_format="chat", eval_examples=None, leaked_eval=0,
                leak_detail="", knowledge_score=0.1, label_like=True, estimates=big)
    said = [json.dumps(decide(Facts(**base, hardware=h), rubric)) for h in ("none", "cpu only", "no GPU", None)]
    assert all("constraints.hardware: none" in d for d in said[:3]), said
    assert "constraints.hardware: none" not in said[3]


# -- 3. typos under train: and in gates: reported by assess and run --dry-run first ------------------------
TYPOS = ("train:\n  learnin_rate: 0.1\n  lora_rank: 8\neval:\n  gates:\n    accuracy: '=> 0.55'\n"
         "    acuracy: '>= 0.5'\n    exact_match: {mni: 0.3}\n    token_f1: {min: .inf}\n")


def test_assess_reports_typos_under_train_and_in_gates_with_their_line(tmp_path):
    root = project(tmp_path / "p", TYPOS)
    r = cli("assess", root, "--no-embeddings", "--json")
    assert r.exit_code == 0, r.output
    found = {f["code"]: f for f in json.loads(r.stdout)["findings"]}
    train = {(e["line"], e["detail"]) for e in found["unknown_train_key"]["examples"]}
    assert train == {(7, "train.learnin_rate: did you mean learning_rate?"), (8, "train.lora_rank: did you mean lora_r?")}
    assert found["unknown_train_key"]["severity"] == "warning"
    gates = {e["line"]: e["detail"] for e in found["gate_unreadable"]["examples"]}
    assert gates[11] == "eval.gates.accuracy: cannot read threshold '=> 0.55'; did you mean \">= 0.55\"?"
    assert gates[12].startswith("eval.gates.acuracy: unknown metric 'acuracy' (did you mean 'accuracy'?)")
    assert "unknown key(s) ['mni'] (did you mean 'min'?)" in gates[13]
    assert "expected a finite number" in gates[14]
    assert all(e["file"] == str(root / "project.yaml") for e in found["gate_unreadable"]["examples"])


def test_run_dry_run_warns_of_the_same_typos_before_the_plan(tmp_path):
    root = project(tmp_path / "p", TYPOS)
    r = cli("run", root, "--dry-run")
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("advise: warning: ")]
    pfile = str(root / "project.yaml")
    assert f"advise: warning: {pfile}:7: train.learnin_rate: did you mean learning_rate?" in warnings
    assert any(w.startswith(f"advise: warning: {pfile}:11: eval.gates.accuracy: cannot read threshold") for w in warnings)
    assert len(warnings) == 6, warnings
    assert "Traceback" not in r.output


def test_a_plugin_key_of_ones_own_is_reported_without_a_guess_and_known_keys_are_not(tmp_path):
    root = project(tmp_path / "p", "train:\n  beta: 0.2\n  num_virtual_tokens: 10\n  zzz_knob: 3\n"
                                   "eval:\n  gates:\n    accuracy: '>= 0.5'\n    items: [{tag: safety, no_worse: true}]\n")
    r = cli("assess", root, "--no-embeddings", "--json")
    found = {f["code"]: f for f in json.loads(r.stdout)["findings"]}
    assert [e["detail"] for e in found["unknown_train_key"]["examples"]] == [
        "train.zzz_knob: no installed plugin takes it (`advise plugins` lists their keys)"]
    assert "gate_unreadable" not in found


def test_train_itself_names_the_closest_key(tmp_path):
    root = project(tmp_path / "p", "train:\n  learnin_rate: 0.1\n")
    msg = one_error(cli("train", root, "--method", "lora", "--max-steps", "1"), 7)
    assert "train.learnin_rate is not a hyperparameter of any installed training plugin (did you mean learning_rate?" in msg


# -- 4. look-alike labels --------------------------------------------------------------------------------
VARIANTS = {"homoglyph": "c\u0430ncel", "zero-width": "can\u200bcel", "rtl-override": "\u202ecancel",
            "bom": "\ufeffcancel"}


def labelled(variant: str | None, *, n: int = 40, at: tuple[int, ...] = (17, 30)) -> list[str]:
    rows = []
    for i in range(1, n + 1):
        lab = "cancel" if i % 2 else "refund"
        if variant is not None and i in at:
            lab = variant
        rows.append(json.dumps({"messages": [{"role": "user", "content": f"request number {i}: please handle it"},
                                             {"role": "assistant", "content": lab}]}))
    return rows


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_a_lookalike_label_is_a_finding_with_its_line_and_both_spellings_escaped(tmp_path, kind):
    odd = VARIANTS[kind]
    root = project(tmp_path / "p", "", records=labelled(odd))
    found = {f["code"]: f for f in json.loads(cli("assess", root, "--no-embeddings", "--json").stdout)["findings"]}
    f = found["lookalike_labels"]
    assert f["severity"] == "warning" and f["count"] == 1
    ex = f["examples"][0]
    assert (ex["file"], ex["line"]) == (str(root / "data" / "t.jsonl"), 17)
    shown = "".join(ch if ord(ch) < 127 else f"\\u{ord(ch):04x}" for ch in odd)
    assert ex["detail"].startswith(f'"cancel" vs "{shown}" (x2 here'), ex["detail"]


def test_a_lookalike_label_of_eval_is_found_against_train(tmp_path):
    root = project(tmp_path / "p", "  eval: data/e.jsonl\n", records=labelled(None))
    (root / "data" / "e.jsonl").write_text("\n".join(labelled("c\u0430ncel", n=20, at=(3,))) + "\n", encoding="utf-8")
    found = {f["code"]: f for f in json.loads(cli("assess", root, "--no-embeddings", "--json").stdout)["findings"]}
    ex = found["lookalike_labels"]["examples"]
    assert [(Path(e["file"]).name, e["line"]) for e in ex] == [("e.jsonl", 3)]


def test_distinct_labels_and_plain_case_are_not_lookalikes(tmp_path):
    rows = labelled(None) + [json.dumps({"messages": [{"role": "user", "content": f"x {i}"},
                                                      {"role": "assistant", "content": lab}]})
                             for i, lab in enumerate(["café", "cafe", "Cancel", "CANCEL", "cancel1"] * 3)]
    root = project(tmp_path / "p", "", records=rows)
    found = {f["code"] for f in json.loads(cli("assess", root, "--no-embeddings", "--json").stdout)["findings"]}
    assert "lookalike_labels" not in found


def test_the_confusables_table_is_a_rubric_with_its_source():
    from advisor.assess.lookalike import skeleton
    from advisor.rubric import load_rubric, source

    assert "TR39" in source(load_rubric("confusables"), "letters")
    assert skeleton("\u0441\u0430n\u0441\u0435l") == skeleton("\uff43ancel") == "cancel"


# -- found by bench/fuzz_records.py ------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["assess", "eval", "train", "run"])
def test_a_home_directory_that_does_not_exist_is_bad_input_for_every_command(tmp_path, command):
    root = project(tmp_path / "p", "")
    text = (root / "project.yaml").read_text().replace("Qwen/Qwen2.5-0.5B-Instruct", "~no-such-user-here/model")
    (root / "project.yaml").write_text(text)
    r = cli(command, root)
    assert r.exit_code == 2 and "internal error" not in r.output, r.output
    assert r.stderr.strip() == (f"advise: {root / 'project.yaml'}: base_model: '~no-such-user-here/model' starts with "
                                "'~no-such-user-here', and there is no home directory for user 'no-such-user-here' "
                                "to expand it to")


def test_a_mapping_as_a_key_is_bad_input_not_a_crash(tmp_path):
    root = project(tmp_path / "p", "train:\n  [a, b]: 1\n")
    assert "a key must be a plain value (text or a number), not a mapping or a list" in one_error(
        cli("assess", root, "--no-embeddings"), 7)
