import json

from click.testing import CliRunner

from advisor.cli.main import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "project.yaml").write_text("name: x\ntask: t\ndata:\n  train: [unclosed\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2
    msg = r.stderr.strip()
    assert "\n" not in msg and "Traceback" not in r.output
    assert f"{tmp_path / 'project.yaml'}:" in msg and "YAML syntax error" in msg
    # the unclosed '[' is on line 4; the parser notices at the end of the file, after it
    assert "project.yaml:4: YAML syntax error: expected ',' or ']'" in msg and "flow sequence at line 4" in msg


def test_config_yaml_as_people_mean_it(tmp_path):
    from advisor.project import load_project

    head = "name: x\ntask: t\ndata:\n  train: d.jsonl\n"
    (tmp_path / "project.yaml").write_text(head + "eval:\n  gates:\n    rouge_l: {min: 0.4, on: lower_bound}\n")
    assert load_project(tmp_path).eval.gates == {"rouge_l": {"min": 0.4, "on": "lower_bound"}}  # not {True: ...}
    (tmp_path / "project.yaml").write_text(head + "task: other\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2
    assert "project.yaml:5: YAML syntax error: found duplicate key 'task' (first at line 2)" in r.stderr
    (tmp_path / "project.yaml").write_text(head + "eval:\n  gates:\n    accuracy: [1, 2]\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "project.yaml:7: eval.gates.accuracy has the wrong form: expected a threshold like" in r.stderr
    assert "more problem" not in r.stderr


def test_schema_error_names_key_path_and_line(tmp_path):
    (tmp_path / "project.yaml").write_text(
        "name: x\ntask: t\ndata:\n  train: data/train.jsonl\nconstraints:\n  budget_usd: lots\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2
    assert "project.yaml:6: constraints.budget_usd expected a valid number" in r.stderr


def test_unknown_key_and_bad_enum(tmp_path):
    (tmp_path / "project.yaml").write_text("name: x\ntask: t\ndata:\n  train: d.jsonl\n  fromat: chat\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2 and "project.yaml:5: data.fromat is not a known key" in r.stderr
    (tmp_path / "project.yaml").write_text("name: x\ntask: t\ndata:\n  train: d.jsonl\nmethod: magic\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2 and "project.yaml:5: method expected 'auto'" in r.stderr


def test_missing_required_key_and_bad_name(tmp_path):
    (tmp_path / "project.yaml").write_text("name: x\ndata:\n  train: d.jsonl\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2 and "task is required but missing" in r.stderr
    (tmp_path / "project.yaml").write_text("name: 'my project!'\ntask: t\ndata:\n  train: d.jsonl\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2 and "project.yaml:1: name is invalid: use letters, digits" in r.stderr


def test_data_path_must_stay_inside_project(tmp_path):
    (tmp_path / "project.yaml").write_text("name: x\ntask: t\ndata:\n  train: ../elsewhere/train.jsonl\n")
    r = run("assess", tmp_path)
    assert r.exit_code == 2 and "data.train: '../elsewhere/train.jsonl' points outside the project" in r.stderr


def test_no_project_yaml(tmp_path):
    r = run("assess", tmp_path)
    assert r.exit_code == 2 and "project.yaml: no project.yaml here" in r.stderr
    r = run("assess", tmp_path / "nope")
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_init_scaffolds_a_project_that_assesses_and_never_overwrites(tmp_path):
    d = tmp_path / "proj"
    r = run("init", d)
    assert r.exit_code == 0, r.output
    text = (d / "project.yaml").read_text()
    assert "# advise project" in text and "name: proj" in text
    r = run("assess", d, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["data"]["train"]["examples"] == 2
    (d / "project.yaml").write_text("name: mine\n")
    r = run("init", d)
    assert r.exit_code == 2 and "already exists" in r.stderr
    assert (d / "project.yaml").read_text() == "name: mine\n"


def test_schema_lists_every_contract_key():
    r = run("schema")
    assert r.exit_code == 0
    s = json.loads(r.stdout)
    for key in ("name", "task", "base_model", "data", "constraints", "method", "eval", "train"):
        assert key in s["properties"]
    defs = json.dumps(s["$defs"])
    for key in ("budget_usd", "hardware", "data_must_stay_on_prem", "facts_change", "needs_citations",
                "requirements_change", "gates", "max_steps", "learning_rate", "lora_r", "format"):
        assert key in defs
    assert "root" not in s["properties"]


def test_unknown_gpu_names_the_line_of_constraints_hardware(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    (tmp_path / "project.yaml").write_text("name: x\ntask: t\ndata:\n  train: data/t.jsonl\n"
                                           "constraints:\n  budget_usd: 100\n  hardware: 1x Z9000\n")
    r = run("assess", tmp_path, "--no-embeddings")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"advise: {tmp_path / 'project.yaml'}:7: constraints.hardware: unknown GPU 'Z9000'")
