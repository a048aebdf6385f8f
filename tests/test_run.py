"""advise run / advise report: the pipeline through the CLI on real sample projects and a tiny local model."""

import json
import shutil
import sqlite3

import eval_fixtures
import pytest
import yaml
from click.testing import CliRunner
from conftest import SAMPLES

from advisor.cli.main import main

tiny_model_dir = eval_fixtures.tiny_model_dir


def project_copy(tmp_path, sample, base_model, **changes):
    dst = tmp_path / sample
    shutil.copytree(SAMPLES / sample, dst, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((dst / "project.yaml").read_text())
    cfg["base_model"] = str(base_model)
    for k, v in changes.items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    (dst / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


def run(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def kinds(root):
    if not (root / ".advise" / "store.sqlite").is_file():
        return []  # refused before anything was written
    db = sqlite3.connect(root / ".advise" / "store.sqlite")
    try:
        return [k for (k,) in db.execute("SELECT kind FROM runs")]
    finally:
        db.close()


def test_dry_run_shows_the_plan_and_spends_nothing(tmp_path, tiny_model_dir):
    root = project_copy(tmp_path, "ticket-routing-tiny", tiny_model_dir)
    r = run(root, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "plan: assess -> baseline -> train -> tuned -> report (method lora)" in r.stdout
    assert "train_tokens:" in r.stdout and "cpu_hours:" in r.stdout
    assert set(kinds(root)) == {"assess"}  # assessed, nothing evaluated or trained
    assert not (root / ".advise" / "report.html").exists()


def test_blockers_stop_before_compute_and_the_report_says_so(tmp_path, tiny_model_dir):
    root = project_copy(tmp_path, "banking77-intents", tiny_model_dir)
    # banking77's 11 leaked eval records (3.6%) are within the 95% CI half-width (5.6%): a warning by the
    # shipped rubric; this project's stricter rubric (z = 0.5 instead of 1.96: 1.4%) makes them a blocker
    (root / "rubrics").mkdir()
    (root / "rubrics" / "decision.yaml").write_text("thresholds:\n  leak_blocker_ci_z: 0.5\n")
    r = run(root, "--dry-run")  # the plan says it would stop, and why
    assert r.exit_code == 1, r.output
    assert "plan: assess -> report" in r.stdout and "blocker: " in r.stdout
    r = run(root)
    assert r.exit_code == 1, r.output
    assert "baseline  not run (blockers)" in r.stdout
    assert "blocker: 11 of 308 eval records also appear in train" in r.stdout
    r = run(root, "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "blocked" and out["stages"]["baseline"] == "not run (blockers)" and out["blockers"]
    assert set(kinds(root)) == {"assess"}
    html = (root / ".advise" / "report.html").read_text()
    assert "Stopped before spending compute" in html and "11 of 308 eval records also appear in train" in html
    r = run(root, "--ignore-blockers", "--until", "assess", "--json", "--out", tmp_path / "r.html")
    assert json.loads(r.stdout)["status"] == "stopped" and (tmp_path / "r.html").is_file()


def test_prompting_verdict_runs_the_strategies_and_skips_training(tmp_path, tiny_model_dir):
    root = project_copy(tmp_path, "toy-chat", tiny_model_dir, eval={"max_new_tokens": 8})
    r = run(root, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["method"] == "prompting" and out["status"] == "done"
    assert out["stages"]["train"] == "skipped (verdict prompting)" and "tuned" not in out["stages"]
    assert "train" not in kinds(root) and "eval_summary" in kinds(root)
    html = (root / ".advise" / "report.html").read_text()
    assert "no training is worth it" in html and "base:zero-shot" in html and "base:few-shot" in html
    # the report of this real run, as a person sees it in a browser
    from report_browser import open_in_browser

    page = open_in_browser(root / ".advise" / "report.html", tmp_path / "report.png")
    assert page["console"] == [] and page["page_errors"] == [] and page["dialogs"] == []
    assert page["requests"] == [(root / ".advise" / "report.html").resolve().as_uri()]
    assert "PROMPTING" in page["text"] and "Paired comparisons" in page["text"]
    # the report command renders the same from the store, with no model call
    r = CliRunner().invoke(main, ["report", str(root), "--out", str(tmp_path / "again.html")])
    assert r.exit_code == 0 and (tmp_path / "again.html").is_file()
    assert "base:few-shot" in (tmp_path / "again.html").read_text()


def test_report_shows_the_assessment_of_the_current_inputs(tmp_path, monkeypatch):
    """An unchanged project reuses its stored assessment, which need not be the newest one: the report
    must show the verdict of the inputs as they are, and say so when it only has an older one."""
    root = project_copy(tmp_path, "toy-chat", "some/model")
    original = (root / "project.yaml").read_text()
    assert "\nmethod: auto\n" in original

    def assess():
        r = CliRunner().invoke(main, ["assess", str(root), "--no-embeddings", "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)["recommendation"]["method"]

    def report():
        r = CliRunner().invoke(main, ["report", str(root), "--out", str(tmp_path / "r.html")])
        assert r.exit_code == 0, r.output
        return (tmp_path / "r.html").read_text()

    assert assess() == "prompting"
    (root / "project.yaml").write_text(original.replace("\nmethod: auto\n", "\nmethod: full\n"))
    assert assess() == "full"
    (root / "project.yaml").write_text(original)
    assert assess() == "prompting" and kinds(root).count("assess") == 2  # the first run, reused
    html = report()
    assert '<div class="method">PROMPTING' in html and "made for earlier inputs" not in html
    # the same project spelled another way is the same assessment
    monkeypatch.chdir(root)
    assert CliRunner().invoke(main, ["assess", ".", "--no-embeddings"]).exit_code == 0
    assert kinds(root).count("assess") == 2
    (root / "project.yaml").write_text(original.replace("\nmethod: auto\n", "\nmethod: full\n"))
    assert '<div class="method">FULL' in report()  # these inputs were assessed before
    (root / "project.yaml").write_text(original.replace("\nmethod: auto\n", "\nmethod: lora\n"))
    html = report()  # never assessed: the newest assessment, flagged
    assert "made for earlier inputs" in html


def test_report_says_why_eval_or_training_results_are_missing(tmp_path, tiny_model_dir):
    from advisor.project import load_project
    from advisor.store import Store

    root = project_copy(tmp_path, "ticket-routing-tiny", tiny_model_dir)
    r = CliRunner().invoke(main, ["eval", str(root), "--max-items", "3", "--candidate", "base:zero-shot",
                                  "--strategy", "zero-shot", "--canary", "none"])
    assert r.exit_code == 0, r.output
    store = Store.for_project(load_project(root))
    rid = store.start_run("train", name="lora")
    store.finish_run(rid, "failed", error="RuntimeError: out of memory")
    store.close()
    assert CliRunner().invoke(main, ["report", str(root), "--out", str(tmp_path / "r.html")]).exit_code == 0
    html = (tmp_path / "r.html").read_text()
    assert "No eval results for the current eval set and base model. The newest stored eval" in html
    assert "3 items) is of other items (a --max-items run" in html
    assert f"The latest training run, {rid}, is failed: RuntimeError: out of memory." in html


def one_line(r, code=2):
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.stderr
    return lines[0]


def test_bad_input_is_one_line_exit_2(tmp_path):
    assert "does not exist" in one_line(run(tmp_path / "missing"))
    assert "nope: project directory does not exist" in one_line(
        CliRunner().invoke(main, ["report", str(SAMPLES / "toy-chat" / "nope")]))
    root = project_copy(tmp_path, "toy-chat", "some/model")
    assert "no run store yet" in one_line(CliRunner().invoke(main, ["report", str(root)]))
    (tmp_path / "adir").mkdir()
    for cmd in (["run", str(root), "--until", "assess"], ["report", str(root)]):
        msg = one_line(CliRunner().invoke(main, [*cmd, "--out", str(tmp_path / "adir")]))
        assert msg == f"advise: {tmp_path / 'adir'}: the report (--out) names a directory; give a file path " \
                      f"(e.g. {tmp_path / 'adir' / 'out'})"
    assert list((tmp_path / "adir").iterdir()) == [] and not list(tmp_path.glob("*.tmp"))
    assert one_line(run(root, "--method", "magic", "--dry-run")).startswith(
        "advise: --method magic: unknown; expected one of prompting, rag, lora, qlora, full, rlhf, dpo")


def test_training_is_checked_before_any_compute(tmp_path, tiny_model_dir):
    """A run that could not train fails before the baseline evals, and a dry run checks as much."""
    import torch

    root = project_copy(tmp_path, "ticket-routing-tiny", tiny_model_dir, train={"lora_dropout": 5})
    assert "lora_dropout" in one_line(run(root, "--dry-run"))
    assert "lora_dropout" in one_line(run(root))
    assert "eval" not in kinds(root) and "train" not in kinds(root)
    if not torch.cuda.is_available():
        root = project_copy(tmp_path / "q", "ticket-routing-tiny", tiny_model_dir)
        assert "the qlora plugin loads the base model in 4 bits" in one_line(run(root, "--method", "qlora"))
        assert "eval" not in kinds(root)
    r = run(root, "--dry-run", "--json")  # a valid plan names the plugin that would train
    assert r.exit_code == 0 and json.loads(r.stdout)["plan"]["plugin"] == "lora"


@pytest.mark.slow
def test_demo_end_to_end_tuned_beats_base_and_rerun_skips_everything(tmp_path):
    """The README's main command, on a fresh tiny model: assess, baselines, LoRA, tuned eval, report."""
    from report_browser import open_in_browser

    root = tmp_path / "ticket-routing-tiny"
    shutil.copytree(SAMPLES / "ticket-routing-tiny", root, ignore=shutil.ignore_patterns(".advise"))
    r = CliRunner().invoke(main, ["models", "tiny", str(root / ".advise" / "models" / "tiny")])
    assert r.exit_code == 0, r.output
    r = run(root, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "done" and out["stages"]["train"] == "ran"
    summary = json.loads(CliRunner().invoke(main, ["eval", str(root), "--json"]).stdout)
    runs = {x["candidate"]: x for x in summary["runs"]}
    assert runs["tuned:lora"]["metrics"]["accuracy"]["ci"][0] > 0.6  # well above chance (0.2)
    assert runs["base:zero-shot"]["metrics"]["accuracy"]["value"] < 0.2
    comp = next(c for c in summary["comparisons"] if c["a"] == "base:zero-shot" and c["b"] == "tuned:lora")
    assert comp["metrics"]["accuracy"]["p_value"] < 1e-6
    page = open_in_browser(root / ".advise" / "report.html", tmp_path / "report.png")
    assert page["console"] == [] and page["scripts"] == 0 and len(page["requests"]) == 1
    assert "tuned:lora" in page["text"] and "Gates: PASS" in page["text"]
    again = json.loads(run(root, "--json").stdout)
    assert again["stages"]["assess"] == "skipped (stored assessment still valid)"
    assert again["stages"]["baseline"] == "skipped (all items cached)"
    assert again["stages"]["train"].startswith("skipped (run train-")
    assert again["stages"]["tuned"] == "skipped (all items cached)"


def test_models_tiny_exist_ok_keeps_a_built_model(tiny_model_dir):
    """The README's demo command can be run twice: the model is built once."""
    before = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    r = CliRunner().invoke(main, ["models", "tiny", str(tiny_model_dir), "--exist-ok"])
    assert r.exit_code == 0 and "kept it" in r.stdout
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == before
    r = CliRunner().invoke(main, ["models", "tiny", str(tiny_model_dir)])
    assert r.exit_code == 2 and "already holds a model" in r.stderr


def test_run_ends_with_the_outcome_and_json_says_the_same(tmp_path, tiny_model_dir):
    """The last lines of `advise run` are the answer (verdict, each candidate's primary metric with its 95%
    interval, the gates, the decision, the report), not the stages; --json carries the same facts."""
    root = project_copy(tmp_path, "ticket-routing-tiny", tiny_model_dir, train={"max_steps": 3},
                        eval={"max_items": 12, "max_new_tokens": 6})
    r = run(root)
    assert r.exit_code == 0, r.output
    tail = r.stdout[r.stdout.index("\noutcome:\n") + 1:].splitlines()[1:]
    assert tail[0].startswith("  verdict   lora") and ", confidence 0." in tail[0]
    summary = json.loads(CliRunner().invoke(main, ["eval", str(root), "--json"]).stdout)
    assert tail[1] == f"  {summary['primary_metric']} (95% interval):"
    rows = summary["runs"] + summary.get("baselines", [])  # the trivial baselines stand beside the candidates
    assert any(x["candidate"] == "baseline:majority" for x in rows)
    width = max(len(x["candidate"]) for x in rows)
    for line, x in zip(tail[2:], rows, strict=False):
        m = x["metrics"][summary["primary_metric"]]
        assert line == f"    {x['candidate']:<{width}}  {m['value']:,.3f} [{m['ci'][0]:,.3f}, {m['ci'][1]:,.3f}]"
    names = [x["candidate"] for x in rows]
    assert "tuned:lora" in names and "base:zero-shot" in names
    rest = tail[2 + len(names):]
    assert rest[0].startswith("  gates     ") and "accuracy >= 0.6 " in rest[0]
    assert rest[1].split(":")[0] in ("  decision  SHIP", "  decision  DO NOT SHIP", "  decision  INCONCLUSIVE")
    assert rest[2] == f"  report    {root / '.advise' / 'report.html'}" and rest[2] == tail[-1]

    out = json.loads(run(root, "--json").stdout)["outcome"]  # everything cached: the same answer
    assert out["verdict"]["method"] == "lora" and 0 < out["verdict"]["confidence"] <= 1
    assert [c["candidate"] for c in out["candidates"]] == names
    for c, x in zip(out["candidates"], rows, strict=True):
        assert c["metric"] == summary["primary_metric"] and c["value"] == x["metrics"][c["metric"]]["value"]
        assert c["ci"] == x["metrics"][c["metric"]]["ci"]
    assert out["gates"]["status"] in ("pass", "fail") and out["gates"]["gates"][0]["gate"] == "accuracy >= 0.6"
    assert rest[0] == f"  gates     {out['gates']['status']}: accuracy >= 0.6 {out['gates']['gates'][0]['status']}"
    assert rest[1] == f"  decision  {out['decision']['outcome'].upper()}: {out['decision']['sentence']}"
    assert out["report"] == str(root / ".advise" / "report.html")
    # docs/ci.md's fresh-checkout job: advise run, then advise gate on what it stored, with the same answer
    g = CliRunner().invoke(main, ["gate", str(root), "--json"])
    assert g.exit_code == (0 if out["gates"]["status"] == "pass" else 1), g.output
    gated = json.loads(g.stdout)
    assert gated["status"] == out["gates"]["status"]
    assert [(x["gate"], x["status"]) for x in gated["gates"]] == [(x["gate"], x["status"]) for x in out["gates"]["gates"]]
