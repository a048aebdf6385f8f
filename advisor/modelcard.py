"""The Hugging Face model card (README.md with YAML metadata) that `advise export` writes beside a
merged model: base model, method and hyperparameters, data hashes, eval results with their 95%
intervals, gates, intended use and limits. It is built from what the run store holds (the training
run's request snapshot, the newest eval of the project), never from guesses: what is unknown is said
to be unknown. The metadata follows the Hub's model card spec (``base_model``, ``library_name``,
``tags``, ``model-index`` with one result per metric), so huggingface_hub's ModelCard parses it.
"""

from __future__ import annotations

from typing import Any

import yaml

from advisor import __version__

INTENDED_USE = ("The task named above, on inputs like the training data. It was evaluated only on the held-out "
                "items counted below; any other use is unmeasured.")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _card_text(text: str) -> str:
    """Data shown in markdown: no HTML, no table breaks."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def render_card(*, project: dict, snapshot: dict, eval_result: dict | None = None, gates: dict | None = None,
                candidate: str | None = None) -> str:
    """``project``: name, task, licence (if stated); ``snapshot``: the training run's request (plugin,
    base_model, config, data hashes, run_id); ``eval_result``: an `advise eval` result; ``candidate``:
    the eval candidate that is this model (default: the tuned run of the snapshot's plugin)."""
    base = snapshot.get("base_model") or "unknown"
    plugin = snapshot.get("plugin") or "unknown"
    config = snapshot.get("config") or {}
    data = snapshot.get("data") or {}
    meta: dict[str, Any] = {"library_name": "transformers", "tags": ["advise", f"advise-{plugin}"],
                            "base_model": base if "/" in str(base) and not str(base).startswith("/") else None}
    if project.get("license"):
        meta["license"] = project["license"]
    runs = {r["candidate"]: r for r in (eval_result or {}).get("runs", [])}
    cand = candidate or next((c for c in runs if c.startswith(f"tuned:{plugin}")), None)
    mine = runs.get(cand) if cand else None
    results = []
    metrics = [{"type": m, "value": float(v["value"]), "name": m} for m, v in ((mine or {}).get("metrics") or {}).items()
               if isinstance(v, dict) and isinstance(v.get("value"), (int, float))]
    if metrics:
        results.append({"task": {"type": "text-generation"},
                        "dataset": {"type": "advise-heldout", "name": f"{project.get('name')} held-out items"},
                        "metrics": metrics})
    if results:
        meta["model-index"] = [{"name": f"{project.get('name')}-{plugin}", "results": results}]
    meta = {k: v for k, v in meta.items() if v is not None}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {_card_text(project.get('name', 'model'))} ({plugin})", "",
             f"Trained by advise {__version__} (run `{snapshot.get('run_id', 'unknown')}`) from `{_card_text(base)}`.", "",
             "## Task", "", _card_text(project.get("task", "not stated")), "",
             "## Training", "", "| hyperparameter | value |", "|---|---|"]
    for k in sorted(config):
        if config[k] is not None:
            lines.append(f"| {k} | {_card_text(_fmt(config[k]))} |")
    lines += ["", "## Data", "", "| fact | value |", "|---|---|"]
    for k, v in sorted(data.items()):
        if isinstance(v, dict):
            lines.append(f"| {k}: {_card_text(v.get('path', ''))} | `{v.get('sha256') or v.get('hash') or 'unknown'}` |")
        else:
            lines.append(f"| {k} | `{_card_text(v)}` |")
    lines += ["", "## Evaluation", ""]
    if mine:
        lines += [f"On {eval_result.get('items')} held-out items (95% intervals; candidate `{cand}`):", "",
                  "| metric | value | 95% CI |", "|---|---|---|"]
        for m, v in (mine.get("metrics") or {}).items():
            if isinstance(v, dict) and v.get("value") is not None:
                ci = v.get("ci")
                lines.append(f"| {m} | {v['value']:.4f} | {f'[{ci[0]:.4f}, {ci[1]:.4f}]' if ci else ''} |")
        comps = [c for c in eval_result.get("comparisons", []) if c.get("b") == cand]
        for c in comps:
            for m, v in (c.get("metrics") or {}).items():
                if isinstance(v, dict) and v.get("delta") is not None and v.get("ci"):
                    p = v.get("p_value")
                    lines.append(f"\nAgainst `{c['a']}`: {m} {v['delta']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]"
                                 + (f", p {'< 0.001' if p < 0.001 else f'= {p:.3f}'}" if p is not None else ""))
    else:
        lines.append("No stored eval of this model: run `advise eval` before shipping it.")
    lines += ["", "## Gates", ""]
    if gates and gates.get("gates"):  # evaluators.gates' result
        lines.append(f"Overall: {str(gates.get('status', '')).upper()} (candidate `{gates.get('candidate')}`)")
        for g in gates["gates"]:
            lines.append(f"- {_card_text(g.get('gate'))}: {str(g.get('status')).upper()}"
                         + (f" ({_card_text(g['message'])})" if g.get("message") else ""))
    else:
        lines.append("No gate result stored.")
    lines += ["", "## Intended use and limits", "", INTENDED_USE, "",
              "- Measured only on the project's held-out items; forgetting of general abilities is measured only "
              "where the eval's canary ran.",
              "- The base model's own licence and card apply to this derivative."]
    return "\n".join(lines) + "\n"
