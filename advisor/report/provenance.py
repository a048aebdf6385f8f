"""Provenance and risk, in the spirit of the NIST AI Risk Management Framework (AI RMF 1.0, NIST AI 100-1,
January 2023, https://doi.org/10.6028/NIST.AI.100-1): what the model is made of (MAP: data and base
model, their hashes and licences), what was measured (MEASURE: the eval, the forgetting canary) and
what was not, and the known limits (MANAGE: what a team must handle before and after shipping).

Read from the project's files and the run store, no model call and no network: licences are what the
project states (a LICENSE or NOTICE file, a ``License``/``Source`` line of its README) and what the base
model's card says (the YAML front matter of a local model directory's README.md, or a card already in
the Hugging Face cache); anything not stated reads "not stated", never a guess.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml

from advisor.hashing import file_hash
from advisor.project import Project

NIST = ("NIST AI 100-1, Artificial Intelligence Risk Management Framework (AI RMF 1.0), January 2023, "
        "https://doi.org/10.6028/NIST.AI.100-1")
LICENCE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING", "NOTICE")
README_LINE = re.compile(r"^\s*(?:[-*]\s*)?\**(licen[cs]e|source)\**\s*[:\u2014-]\s*(.+)$", re.I | re.M)
NOT_MEASURED = [
    "safety and toxicity beyond the refusal-like answers counted in the plan",
    "bias and fairness across groups of users (the eval set has no group labels)",
    "robustness to adversarial inputs and prompt injection",
    "calibration of the model's confidence",
    "latency, throughput and cost under production load",
    "inputs unlike the eval set (other languages, topics or lengths)",
]


def _first_line(path: Path) -> str | None:
    """The first line that says something (not a rule, not the file's own name)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip() and not set(line.strip()) <= set("=-#*") and line.strip().upper() != path.name.upper():
                    return line.strip()[:200]
    except OSError:
        return None
    return None


def _front_matter(readme: Path) -> dict:
    """The YAML front matter of a model card (README.md), or {}."""
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    m = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not m:
        return {}
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def stated_licences(root: Path) -> list[str]:
    """What a folder states about its licence and source: licence files' first lines, README lines."""
    out = []
    for name in LICENCE_FILES:
        line = _first_line(root / name)
        if line:
            out.append(f"{name}: {line}")
    for name in ("README.md", "README"):
        p = root / name
        if p.is_file():
            text = p.read_text(encoding="utf-8", errors="replace")[:20_000]
            meta = _front_matter(p)
            if meta.get("license"):
                out.append(f"{name} front matter: license {meta['license']}")
            out += [f"{name}: {k}: {v.strip()[:200]}" for k, v in README_LINE.findall(text)]
            break
    return out


def _data(project: Project, assessment: dict | None, trained_on: dict) -> list[dict]:
    rows = []
    for role in ("train", "eval", "docs"):
        p = project.data_path(role)
        if p is None or not p.exists():
            continue
        rel = str(p.relative_to(project.root)) if p.is_relative_to(project.root) else str(p)
        if p.is_dir():  # a folder (docs/): sha256 of its files' relative paths and sha256s, sorted
            files = sorted(f for f in p.rglob("*") if f.is_file())
            tree = "".join(f"{f.relative_to(p).as_posix()}\0{file_hash(f)}\n" for f in files)
            digest = hashlib.sha256(tree.encode()).hexdigest() + f" ({len(files):,} files)"
        else:
            digest = file_hash(p)
        examples = (((assessment or {}).get("data") or {}).get(role) or {}).get("examples")
        licences = stated_licences(p.parent if p.is_file() else p)
        changed = bool(trained_on.get(f"{role}_sha256")) and trained_on[f"{role}_sha256"] != digest
        rows.append({"role": role, "path": rel, "sha256": digest, "examples": examples, "licences": licences,
                     "changed_since_training": changed})
    return rows


def _base_model(project: Project, train: dict | None) -> dict:
    out = {"id": project.base_model, "revision": (train or {}).get("base_model_revision"), "licence": None,
           "card": None, "architecture": None}
    d = project.base_model_dir()
    readme = None
    if d is not None:
        readme = d / "README.md"
        cfg = d / "config.json"
        if cfg.is_file():
            try:
                c = json.loads(cfg.read_text(encoding="utf-8"))
                out["architecture"] = ", ".join(c.get("architectures") or []) or c.get("model_type")
            except (OSError, ValueError):
                pass
    elif project.base_model:
        try:
            from huggingface_hub import try_to_load_from_cache

            got = try_to_load_from_cache(project.base_model, "README.md", revision=out["revision"])
            readme = Path(got) if isinstance(got, str) else None
        except Exception:  # noqa: BLE001 - no cache, no card: stated as such
            readme = None
    if readme is not None and readme.is_file():
        meta = _front_matter(readme)
        out["card"] = "the model card's YAML front matter" if meta else "a model card without YAML metadata"
        lic = meta.get("license")
        out["licence"] = ", ".join(map(str, lic)) if isinstance(lic, list) else (str(lic) if lic else None)
        if meta.get("license_name"):
            out["licence"] = f"{out['licence'] or 'other'} ({meta['license_name']})"
    return out


def _limits(project: Project, assessment: dict | None, decision: dict | None, ev: dict | None,
            train: dict | None) -> list[str]:
    out = []
    if decision:
        n = decision.get("items") or 0
        ci = decision.get("ci")
        out.append(f"the offline eval has {n:,} items" + (
            f": the paired difference is known to within [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
        if decision.get("min_detectable_effect"):
            out.append(f"differences smaller than {decision['min_detectable_effect']:.3f} {decision['metric']} "
                       "are below what this eval detects")
    a = assessment or {}
    leak = (a.get("data") or {}).get("leakage") or {}
    if leak.get("eval_items_leaked"):
        out.append(f"{leak['eval_items_leaked']:,} eval items also occur (or nearly) in the training data: "
                   "the eval overstates what the model does on new inputs")
    src = ((ev or {}).get("data") or {}).get("eval_source")
    if src == "holdout":
        out.append("the eval set was carved from the training file: it shares that file's sources and biases")
    if train:
        out.append(f"one training run (seed {((train.get('config') or {}).get('seed'))}): "
                   "the spread over training seeds was not measured")
    out.append("offline scores on a fixed eval set; the online effect can differ (see the A/B plan)")
    return out


def provenance(project: Project, assessment: dict | None, ev: dict | None, train: dict | None,
               decision: dict | None, canary: dict | None, trained_on: dict | None = None) -> dict:
    """The provenance and risk section's facts; ``trained_on``: the training run's data facts (its hashes)."""
    project_licences = stated_licences(project.root)
    forgetting = None
    if canary:
        forgetting = {"measured": [{"candidate": k, "value": v.get("value"), "ci": v.get("ci")} for k, v in canary.items()],
                      "what": "a general-capability canary (short general questions, evaluators/data/canary.jsonl "
                              "unless the project gives its own) answered zero-shot by the base and each tuned model; a drop "
                              "means lost general ability, the set is too small to rank models"}
    return {"framework": NIST, "data": _data(project, assessment, trained_on or {}), "project_licences": project_licences,
            "base_model": _base_model(project, train), "forgetting": forgetting, "not_measured": NOT_MEASURED,
            "limits": _limits(project, assessment, decision, ev, train)}
