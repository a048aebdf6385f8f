"""``advise eval``: baseline-vs-tuned evals with confidence intervals and paired comparisons.

Loaded lazily by :class:`advisor.cli.main.LazyGroup`; torch and transformers load only when a model must
answer items that are not in the cache.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from advisor.assess.assessment import stored_leakage
from advisor.cli.main import guard, project_arg
from advisor.cli.ratings import ratings_options
from advisor.cli.views import plain, print_eval_stats
from advisor.errors import AdviseError
from advisor.lock import writing
from advisor.project import load_project
from advisor.tracking import require_mlflow, track_eval, tracking_uri
from evaluators import options
from evaluators.backends.openai import ENV_NAME
from evaluators.baselines import baseline_text
from evaluators.candidates import LOCAL_BACKENDS, make_judge
from evaluators.length import length_notes
from evaluators.options import EvalOptions
from evaluators.runner import run_eval
from evaluators.strategies import RETRIEVERS, STRATEGIES


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(ci) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""


def _p(p) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def print_eval(result: dict, console=None) -> None:
    """The eval result as terminal tables (rich): runs with the headline metric's 95% CI, paired
    comparisons on the headline metric, the canary (forgetting check)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    metrics = [m for m in result["metrics"] if m != "judge_pairwise"]
    primary = result.get("primary_metric") or (metrics[0] if metrics else None)
    others = [m for m in metrics if m != primary][:2]
    t = Table(title=plain(f"{result['project']}: {result['items']} eval items, {result['task_kind']}"))
    t.add_column("candidate", no_wrap=True)
    t.add_column("items", justify="right", no_wrap=True)
    if primary:
        t.add_column(f"{primary} [95% CI]", justify="right", no_wrap=True)
    for m in others:
        t.add_column(m, justify="right")
    t.add_column("cached/new", justify="right")
    flagged = any(r.get("constant_output") for r in result["runs"])
    if flagged:
        t.add_column("flags", overflow="fold")
    for r in result["runs"]:
        cells = [plain(r["candidate"]), f"{r['items']}" + (f" ({r['errors']} failed)" if r["errors"] else "")]
        if primary:
            md = r["metrics"].get(primary) or {}
            cells.append(f"{_fmt(md.get('value'))} {_ci(md.get('ci'))}".strip())
        cells += [_fmt((r["metrics"].get(m) or {}).get("value")) for m in others]
        cells.append(f"{r['cached']}/{r['computed']}")
        if flagged:
            cells.append(plain("one answer" if r.get("constant_output") else "", "yellow"))
        t.add_row(*cells)
    for b in result.get("baselines") or []:  # what a model that learnt nothing scores
        cells = [plain(b["candidate"], "dim"), plain(b["items"], "dim")]
        if primary:
            md = b["metrics"].get(primary) or {}
            cells.append(plain(f"{_fmt(md.get('value'))} {_ci(md.get('ci'))}".strip() if md else "-", "dim"))
        cells += [plain(_fmt((b["metrics"].get(m) or {}).get("value")), "dim") for m in others]
        cells += [""] * (2 if flagged else 1)
        t.add_row(*cells)
    console.print(t)
    for b in result.get("baselines") or []:
        console.print(plain(f"{b['candidate']}: {b.get('what', '')}", "dim"))
    for r in result["runs"]:  # one answer to nearly every item; answers and prompts the limits cut
        if r.get("constant_output"):
            console.print(plain(f"{r['candidate']}: {r['constant_output']['text']}: not a win", "yellow"))
        for note in length_notes(r.get("length"), r.get("strategy")):
            console.print(plain(f"{r['candidate']}: {note}", "yellow"))
    sizing = result.get("max_new_tokens") or {}
    if sizing.get("source") == "eval references":
        console.print(plain(f"max_new_tokens {sizing['value']}: sized from the eval references (p{sizing['percentile']:g} "
                            f"{sizing['reference_tokens']:g} tokens, counted with {sizing['counted_with']}); set "
                            "eval.max_new_tokens in project.yaml to fix it", "dim"))
    if result["comparisons"]:
        c = Table(title=plain(f"paired comparisons on the items both answered: {primary} of b - a"))
        c.add_column("a -> b", overflow="fold")
        for col in ("a", "b", "delta [95% CI]", "p", "W/L/T", "worse"):
            c.add_column(col, justify="right", no_wrap=True)
        c.add_column("note", overflow="fold")
        for comp in result["comparisons"]:
            for m in [primary, "judge_pairwise"]:
                md = comp["metrics"].get(m)
                if not md:
                    continue
                wlt = "/".join(str(md.get(k)) for k in ("wins", "losses", "ties")) if md.get("wins") is not None else ""
                label = f"{comp['a']} -> {comp['b']}" if m == primary else "  (judge_pairwise)"
                note = comparison_note(comp) if m == primary else ""
                c.add_row(plain(label), _fmt(md.get("a_value")), _fmt(md.get("b_value")),
                          f"{_fmt(md.get('delta'))} {_ci(md.get('ci'))}", _p(md.get("p_value")), wlt,
                          str(comp.get("regressions_total", "")) if m == primary else "", plain(note, "yellow"))
        console.print(c)
        base_text = baseline_text(result.get("baselines"), primary)
        if base_text:
            console.print(plain(f"{primary} of a model that learnt nothing: {base_text}", "dim"))
    canary = result.get("canary")
    if canary and canary.get("runs"):
        k = Table(title=f"canary: forgetting check on {canary['items']} general questions")
        k.add_column("model", no_wrap=True)
        for m in canary["metrics"]:
            k.add_column(m, justify="right", no_wrap=True)
        for r in canary["runs"]:
            k.add_row(plain(r["candidate"]), *[f"{_fmt(r['metrics'][m]['value'])} {_ci(r['metrics'][m]['ci'])}"
                                        for m in canary["metrics"]])
        console.print(k)
        for comp in canary.get("comparisons", []):
            m = canary["metrics"][0]
            md = comp["metrics"][m]
            flag = "FORGETTING" if comp.get("forgetting") else "no significant loss"
            console.print(plain(f"canary {comp['a']} -> {comp['b']}: {m} {_fmt(md.get('delta'))} {_ci(md.get('ci'))}, "
                                f"p {_p(md.get('p_value'))}: {flag}"))
    _print_benchmarks(console, result.get("benchmarks"))
    print_eval_stats(result, console)
    secs = result.get("seconds", {})
    console.print(f"[dim]{secs.get('total', 0):.1f} s (metrics {secs.get('metrics', 0):.2f} s); per-item "
                  f"outputs and scores are in the run store (.advise/store.sqlite)[/dim]")


def _task_list(value: str | None) -> list[str] | None:
    """--benchmarks: None (project.yaml's eval.benchmarks.tasks), ``none`` (no benchmark) or a comma list."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return []
    return [t.strip() for t in value.split(",") if t.strip()]


def _print_benchmarks(console, block: dict | None) -> None:
    """Standard benchmarks (lm-eval) beside the canary: each model's score and the tuned-vs-base change."""
    from rich.table import Table

    if not block:
        return
    if block.get("skipped"):
        console.print(plain(f"benchmarks {', '.join(block['tasks'])}: not run: {block['skipped']}"))
        return
    t = Table(title="standard benchmarks (lm-eval): forgetting check")
    for col in ("task", "model", "metric", "score (95% CI)", "n"):
        t.add_column(col)
    for r in block.get("runs") or []:
        t.add_row(plain(r["task"]), plain(r["candidate"]), plain(r["metric"]), f"{_fmt(r['value'])} {_ci(r['ci'])}",
                  str(r["n"]))
    console.print(t)
    for c in block.get("comparisons") or []:
        flag = "FORGETTING" if c.get("forgetting") else "no significant loss"
        console.print(plain(f"benchmark {c['task']} {c['a']} -> {c['b']}: {c['metric']} {_fmt(c.get('delta'))} "
                            f"{_ci(c.get('ci'))}, p {_p(c.get('p_value'))}, n={c['n']}: {flag}"))

def comparison_note(comp: dict) -> str:
    """A comparison's warning: its b (or a) gives one answer to nearly every item."""
    if comp.get("b_constant_output"):
        return f"not a win: b {comp['b_constant_output']}"
    if comp.get("a_constant_output"):
        return f"a {comp['a_constant_output']}"
    return ""


def _prediction_pairs(project, files, names) -> list[tuple[str, str]]:
    """``--predictions FILE --name NAME`` pairs (a relative FILE is found from here, else the project)."""
    if len(files) != len(names):
        raise AdviseError(f"--predictions and --name go in pairs (got {len(files)} file(s), {len(names)} name(s))")
    out = []
    for f, n in zip(files, names, strict=True):
        p = Path(f)
        if not p.is_absolute() and not p.exists() and project.root is not None and (project.root / p).exists():
            p = project.root / p
        out.append((n, str(p)))
    return out


def _opt(*decls: str, setting: str, **kw):
    """A click option whose default and help are those of the eval setting ``setting`` (EvalOptions)."""
    return click.option(*decls, default=options.default(setting), help=options.help_of(setting), **kw)


@click.command("eval")
@project_arg
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the contract) on stdout.")
@click.option("--candidate", "candidates", multiple=True, metavar="NAME",
              help=options.help_of("candidates") + " Repeatable.")
@click.option("--strategy", "strategies", multiple=True, type=click.Choice(STRATEGIES),
              help=options.help_of("strategies") + " Repeatable.")
@_opt("--endpoint", setting="endpoint", metavar="URL")
@_opt("--endpoint-model", setting="endpoint_model", metavar="NAME")
@_opt("--api-key-env", setting="api_key_env", metavar="VAR")
@_opt("--concurrency", setting="concurrency", show_default=True, type=click.IntRange(1, 256))
@_opt("--timeout", setting="timeout", show_default=True, type=click.FloatRange(0.1, 3600))
@_opt("--retries", "max_retries", setting="max_retries", show_default=True, type=click.IntRange(0, 20))
@_opt("--max-items", setting="max_items", type=click.IntRange(min=1))
@click.option("--no-cache", is_flag=True, help="Answer every item again (the new answers replace the cached ones).")
@_opt("--seed", setting="seed", type=int, show_default=True)
@_opt("--temperature", setting="temperature", type=click.FloatRange(0, 5), show_default=True)
@_opt("--batch-size", setting="batch_size", type=click.IntRange(1, 1024), show_default=True)
@_opt("--retriever", setting="retriever", type=click.Choice(RETRIEVERS), show_default=True)
@_opt("--canary", setting="canary", show_default=True, metavar="shipped|none|FILE")
@_opt("--benchmarks", setting="benchmarks", metavar="TASK,...|none")
@click.option("--judge-model", default=None, metavar="NAME",
              help="LLM-as-judge: a model served by --judge-endpoint, or a local model id/directory.")
@click.option("--judge-endpoint", default=None, metavar="URL", help="OpenAI-compatible server of the judge model.")
@click.option("--judge-api-key-env", default=None, metavar="VAR", help="Environment variable with the judge's API key.")
@_opt("--local-backend", setting="local_backend", type=click.Choice(LOCAL_BACKENDS), show_default=True)
@click.option("--trust-remote-code", is_flag=True, help=options.help_of("trust_remote_code"))
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--mlflow", "mlflow_uri", default=None, metavar="URI",
              help="Also log the eval to MLflow (default: project.yaml's tracking.mlflow).")
@click.option("--predictions", "prediction_files", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Score answers produced elsewhere: a JSONL of {\"id\", \"output\"} lines (no id: line N answers "
                   "eval line N), as candidate external:NAME. Repeatable, each with its --name.")
@click.option("--name", "prediction_names", multiple=True, metavar="NAME",
              help="The name of the --predictions file's candidate (external:NAME).")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1, 100), metavar="K",
              help="Answers per item (with --temperature above 0): pass@k, pass^k, within/between-item variance "
                   "and flaky items (docs/eval.md).")
@guard
@ratings_options
def eval_cmd(project_dir: Path, as_json: bool, candidates, strategies, endpoint, endpoint_model, api_key_env,
             concurrency, timeout, max_retries, max_items, no_cache, seed, temperature, batch_size, retriever, canary,
             benchmarks, judge_model, judge_endpoint, judge_api_key_env, local_backend, trust_remote_code, no_progress,
             mlflow_uri, prediction_files=(), prediction_names=(), samples=1):
    """Evaluate baselines (base model zero-shot, few-shot, RAG) and tuned models on the held-out items of
    PROJECT_DIR, with 95% confidence intervals and paired comparisons.

    \b
    Candidates: base:zero-shot, base:few-shot, base:rag, tuned:<method> (every finished train run),
    endpoint:<model>:<strategy> (with --endpoint). Answers are cached in .advise/: an unchanged re-run
    makes no model call, an interrupted one resumes. Exit 2 when nothing can be evaluated.
    --export-ratings / --import-ratings: human rating sheets of the stored answers (no model call).
    """
    from rich.console import Console

    project = load_project(project_dir)
    if endpoint_model and not endpoint:
        raise AdviseError("--endpoint-model needs --endpoint URL")
    if endpoint and not endpoint_model:
        raise AdviseError("--endpoint needs --endpoint-model NAME (the model name the server serves)")
    for opt, name in (("--api-key-env", api_key_env), ("--judge-api-key-env", judge_api_key_env)):
        if name and not ENV_NAME.fullmatch(name):  # a key pasted here is never printed nor stored
            raise AdviseError(f"{opt} takes the NAME of an environment variable (letters, digits, _), "
                              "not the key itself")
    if tracking_uri(project, mlflow_uri):
        require_mlflow()
    if judge_endpoint and not judge_model:
        raise AdviseError("a judge needs a model: --judge-model NAME (with --judge-endpoint URL for a server)")
    if not (judge_model or judge_endpoint) and {"judge_score", "judge_pairwise", "faithfulness_judge"} & set(project.eval.metrics or []):
        raise AdviseError("eval.metrics asks for an LLM judge: give one with --judge-model NAME "
                          "(and --judge-endpoint URL for a served model)", file=project.project_file)
    predictions = _prediction_pairs(project, prediction_files, prediction_names)
    canary_arg = None if canary.lower() == "none" else canary
    if canary_arg not in (None, "shipped"):
        p = Path(canary_arg)
        if not p.is_absolute() and not p.exists() and project.root is not None:
            p = project.root / p
        if not p.is_file():
            raise AdviseError("canary file not found", file=p)
        canary_arg = str(p)
    judge = None
    if judge_model:
        judge = make_judge(project, endpoint=judge_endpoint, model=judge_model, api_key_env=judge_api_key_env,
                           trust_remote_code=trust_remote_code, concurrency=concurrency, timeout=max(timeout, 120))
    opts = EvalOptions(candidates=list(candidates) or None, strategies=list(strategies) or None, endpoint=endpoint,
                       endpoint_model=endpoint_model, api_key_env=api_key_env, concurrency=concurrency,
                       timeout=timeout, max_retries=max_retries, max_items=max_items, use_cache=not no_cache,
                       seed=seed, temperature=temperature, batch_size=batch_size, retriever=retriever,
                       canary=canary_arg, benchmarks=_task_list(benchmarks), local_backend=local_backend, trust_remote_code=trust_remote_code,
                       progress=not no_progress)
    with writing(project, "advise eval"):
        result = run_eval(project, opts, judge=judge, console=Console(stderr=True), predictions=predictions,
                          samples=samples)
    leak = stored_leakage(project)
    if leak and leak.get("eval_items_leaked") and result.get("data", {}).get("eval_source") == "file":
        result.setdefault("warnings", []).append(
            f"{leak['eval_items_leaked']} of the eval records ({leak.get('distinct_texts_leaked', '?')} distinct "
            "texts) also appear in train (advise assess): a tuned model's score on them is inflated; "
            "re-split the train side for a fair score")
    for w in result.get("warnings", []):
        click.echo(f"advise: warning: {w}", err=True)
    tracked = track_eval(project, result, mlflow_uri)
    if tracked:
        click.echo(f"advise: logged to MLflow as run {tracked}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        print_eval(result)
    sys.stdout.flush()
