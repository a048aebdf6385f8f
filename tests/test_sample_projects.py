"""The sample projects follow the project contract and are exactly what the converter writes.

* Every ``sample_projects/*/project.yaml`` uses the contract's keys and values, its data paths stay
  inside the project, and every JSONL line is valid JSON of the declared format.
* Each project is under 2 MB, has a README.md and a NOTICE/LICENSE naming its source.
* The real messiness each project is meant to keep is there (leakage, duplicates, empty replies).
* Re-running ``scripts/build_sample_projects.py`` into a temporary folder reproduces the committed
  files byte for byte (skipped when the shared datasets are not on this machine).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_projects"
SCRIPT = REPO / "scripts" / "build_sample_projects.py"
DATASETS = Path(os.environ.get("ADVISE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))

PROJECTS = {
    # name: (format, has eval, has docs)
    "banking77-intents": ("chat", True, False),
    "covid-qa-docs": ("chat", True, True),
    "hh-harmless-prefs": ("preference", True, False),
    "e2e-restaurants": ("alpaca", True, False),
    "scitldr-summaries": ("prompt_completion", True, False),
    "toy-chat": ("chat", False, False),
    "ticket-routing-tiny": ("chat", True, False),
    "policy-faq-rag": ("chat", True, True),
}
MAX_BYTES = 2_000_000

TOP_KEYS = {"name", "task", "base_model", "data", "constraints", "method", "eval", "train"}
DATA_KEYS = {"train", "eval", "docs", "format"}
FORMATS = {"auto", "chat", "alpaca", "prompt_completion", "preference"}
CONSTRAINT_KEYS = {"budget_usd", "hardware", "data_must_stay_on_prem", "facts_change", "needs_citations",
                   "requirements_change"}
FACTS_CHANGE = {"never", "rarely", "monthly", "weekly", "daily"}
REQUIREMENTS_CHANGE = {"rarely", "often"}
METHODS = {"auto", "prompting", "rag", "lora", "full", "rlhf"}
TRAIN_KEYS = {"max_steps", "epochs", "learning_rate", "batch_size", "max_length", "lora_r", "seed"}
ROLES = {"system", "user", "assistant"}
DOC_SUFFIXES = {".md", ".txt", ".html"}
GATE = re.compile(r"(>=|<=)\s*-?\d+(\.\d+)?")


def load_yaml(name: str) -> dict:
    return yaml.safe_load((SAMPLES / name / "project.yaml").read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")[:-1], 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{path}:{i}: invalid JSON: {e}") from None
    return out


def inside(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    assert not Path(rel).is_absolute(), rel
    p.relative_to(root.resolve())  # raises when outside
    return p


def project_files(root: Path) -> dict[str, bytes]:
    """The committed files of a project, without what the tool writes (.advise/)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".advise" not in p.relative_to(root).parts and "__pycache__" not in p.parts}


# -- record validation (the contract's formats) ----------------------------------------------------

def check_messages(msgs, where: str) -> None:
    assert isinstance(msgs, list) and msgs, f"{where}: messages must be a non-empty list"
    for m in msgs:
        assert isinstance(m, dict), where
        assert m.get("role") in ROLES, f"{where}: role {m.get('role')!r}"
        assert isinstance(m.get("content"), str) and m["content"].strip(), f"{where}: empty content"


def nonempty(rec: dict, key: str, where: str) -> None:
    assert isinstance(rec.get(key), str) and rec[key].strip(), f"{where}: '{key}' missing or empty"


def check_record(rec: dict, fmt: str, where: str) -> list[str]:
    """Assert the record is of ``fmt``; return the names of empty replies found (allowed only where a
    project keeps them on purpose)."""
    assert isinstance(rec, dict), where
    empties = []
    if fmt == "chat":
        check_messages(rec.get("messages"), where)
        assert any(m["role"] == "assistant" for m in rec["messages"]), f"{where}: no assistant message"
    elif fmt == "alpaca":
        nonempty(rec, "instruction", where)
        assert isinstance(rec.get("input", ""), str), where
        nonempty(rec, "output", where)
    elif fmt == "prompt_completion":
        nonempty(rec, "prompt", where)
        nonempty(rec, "completion", where)
    elif fmt == "preference":
        if isinstance(rec.get("prompt"), list):
            check_messages(rec["prompt"], where)
        else:
            nonempty(rec, "prompt", where)
        for key in ("chosen", "rejected"):
            assert isinstance(rec.get(key), str), f"{where}: '{key}' is not text"
            if not rec[key].strip():
                empties.append(key)
        assert rec["chosen"] != rec["rejected"], where
    else:  # pragma: no cover
        raise AssertionError(f"unknown format {fmt}")
    return empties


# -- tests -----------------------------------------------------------------------------------------

def test_every_sample_project_is_present():
    assert SAMPLES.is_dir(), "run python scripts/build_sample_projects.py"
    present = {p.name for p in SAMPLES.iterdir() if p.is_dir() and (p / "project.yaml").is_file()}
    assert set(PROJECTS) <= present, f"missing: {sorted(set(PROJECTS) - present)}"


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_project_yaml_follows_the_contract(name):
    root = SAMPLES / name
    cfg = load_yaml(name)
    fmt, has_eval, has_docs = PROJECTS[name]
    assert set(cfg) <= TOP_KEYS, set(cfg) - TOP_KEYS
    assert cfg["name"] == name and re.fullmatch(r"[A-Za-z0-9_-]+", cfg["name"])
    assert isinstance(cfg["task"], str) and len(cfg["task"].split()) >= 8
    assert isinstance(cfg["base_model"], str) and cfg["base_model"]
    assert cfg.get("method", "auto") == "auto" and cfg["method"] in METHODS

    data = cfg["data"]
    assert set(data) <= DATA_KEYS and "train" in data
    assert data["format"] in FORMATS and data["format"] == fmt
    assert inside(root, data["train"]).is_file()
    assert ("eval" in data) == has_eval
    if has_eval:
        assert inside(root, data["eval"]).is_file()
    assert ("docs" in data) == has_docs
    if has_docs:
        docs = inside(root, data["docs"])
        files = [p for p in docs.rglob("*") if p.is_file()]
        assert files and all(p.suffix in DOC_SUFFIXES and p.stat().st_size > 0 for p in files)

    c = cfg.get("constraints", {})
    assert set(c) <= CONSTRAINT_KEYS, set(c) - CONSTRAINT_KEYS
    if "budget_usd" in c:
        assert isinstance(c["budget_usd"], int | float) and not isinstance(c["budget_usd"], bool)
        assert c["budget_usd"] >= 0
    if "hardware" in c:
        assert c["hardware"] == "none" or re.fullmatch(r"\d+x \S+", c["hardware"]), c["hardware"]
    for key in ("data_must_stay_on_prem", "needs_citations"):
        assert isinstance(c.get(key, False), bool)
    assert c.get("facts_change", "rarely") in FACTS_CHANGE
    assert c.get("requirements_change", "rarely") in REQUIREMENTS_CHANGE

    ev = cfg.get("eval", {})
    assert set(ev) <= {"gates"}
    for metric, gate in ev.get("gates", {}).items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", metric) and GATE.fullmatch(gate), (metric, gate)

    train = cfg.get("train", {})
    assert set(train) <= TRAIN_KEYS, set(train) - TRAIN_KEYS
    for key in ("max_steps", "batch_size", "max_length", "lora_r", "seed"):
        if key in train:
            assert isinstance(train[key], int) and not isinstance(train[key], bool), key
    for key in ("learning_rate", "epochs"):
        if key in train:
            assert isinstance(train[key], int | float) and train[key] > 0, (key, train[key])


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_every_record_is_valid_json_of_the_declared_format(name):
    root = SAMPLES / name
    cfg = load_yaml(name)
    fmt = cfg["data"]["format"]
    empties: Counter = Counter()
    for key in ("train", "eval"):
        if key not in cfg["data"]:
            continue
        path = inside(root, cfg["data"][key])
        raw = path.read_bytes()
        assert raw.endswith(b"\n") and b"\r" not in raw, f"{path}: LF line ends, final newline"
        recs = read_jsonl(path)
        assert recs, path
        for i, rec in enumerate(recs, 1):
            for e in check_record(rec, fmt, f"{path.name}:{i}"):
                empties[(key, e)] += 1
            if "source" in rec:  # extra key naming the document that holds the answer
                assert inside(root, rec["source"]).is_file(), rec["source"]
    if name == "hh-harmless-prefs":
        # the empty chosen replies of the source are kept on purpose, all in train
        assert empties == Counter({("train", "chosen"): 4})
    else:
        assert not empties


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_size_readme_and_attribution(name):
    root = SAMPLES / name
    files = project_files(root)
    total = sum(len(b) for b in files.values())
    assert total < MAX_BYTES, f"{name} is {total} bytes"
    assert "README.md" in files
    assert "NOTICE" in files or "LICENSE" in files
    notice = files.get("NOTICE", b"").decode("utf-8")
    assert re.search(r"github\.com/[\w.-]+/[\w.-]+", notice), "NOTICE names the source repository"
    assert re.search(r"Commit:\s+[0-9a-f]{7,40}", notice), "NOTICE names the commit"
    assert "Licen" in notice and "Changes made" in notice


def test_answers_sit_in_the_documents():
    covid = SAMPLES / "covid-qa-docs"
    for split in ("train", "eval"):
        for rec in read_jsonl(covid / "data" / f"{split}.jsonl"):
            doc = (covid / rec["source"]).read_text(encoding="utf-8")
            assert rec["messages"][-1]["content"] in doc
    faq = SAMPLES / "policy-faq-rag"
    for split in ("train", "eval"):
        for rec in read_jsonl(faq / "data" / f"{split}.jsonl"):
            assert rec["messages"][-1]["content"] in (faq / rec["source"]).read_text(encoding="utf-8")


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", s.lower()).split())


def test_the_real_messiness_is_kept():
    # banking77: train/eval leakage after normalisation, near-duplicates in train, imbalance, the '?' label
    b = SAMPLES / "banking77-intents" / "data"
    tr = read_jsonl(b / "train.jsonl")
    ev = read_jsonl(b / "eval.jsonl")
    tr_norm = Counter(_norm(r["messages"][1]["content"]) for r in tr)
    assert sum(_norm(r["messages"][1]["content"]) in tr_norm for r in ev) >= 11
    assert sum(1 for v in tr_norm.values() if v > 1) >= 12
    labels = Counter(r["messages"][-1]["content"] for r in tr)
    assert len(labels) == 77 and max(labels.values()) >= 4 * min(labels.values())
    assert "reverted_card_payment?" in labels

    # hh: duplicated prompts and fake turns
    hh = read_jsonl(SAMPLES / "hh-harmless-prefs" / "data" / "train.jsonl")
    prompts = Counter(json.dumps(r["prompt"]) for r in hh)
    assert sum(v - 1 for v in prompts.values() if v > 1) >= 2
    assert any("Human:" in r["chosen"] or "Human:" in r["rejected"] for r in hh)

    # e2e: exact duplicate rows in train, multi-reference eval with each input once
    e2e = SAMPLES / "e2e-restaurants" / "data"
    rows = Counter((r["input"], r["output"]) for r in read_jsonl(e2e / "train.jsonl"))
    assert any(v > 1 for v in rows.values())
    ev = read_jsonl(e2e / "eval.jsonl")
    assert len({r["input"] for r in ev}) == len(ev)
    assert all(r["output"] == r["references"][0] for r in ev) and max(len(r["references"]) for r in ev) >= 40

    # scitldr: the same abstract under different ids in train and eval
    s = SAMPLES / "scitldr-summaries" / "data"
    tr_prompts = {r["prompt"]: r["id"] for r in read_jsonl(s / "train.jsonl")}
    leaked = [(r["id"], tr_prompts[r["prompt"]]) for r in read_jsonl(s / "eval.jsonl") if r["prompt"] in tr_prompts]
    assert leaked and all(a != b for a, b in leaked)

    # toy-chat: the flaws of the cookbook examples
    toy = read_jsonl(SAMPLES / "toy-chat" / "data" / "train.jsonl")
    assert len(toy) == 5
    assert any(not any(m["role"] == "user" for m in r["messages"]) for r in toy)
    assert any(not any(m["role"] == "system" for m in r["messages"]) for r in toy)
    assert max(len(m["content"]) for r in toy for m in r["messages"]) > 20_000


def test_tiny_routing_project_fits_the_cpu_demo():
    cfg = load_yaml("ticket-routing-tiny")
    assert cfg["base_model"] == ".advise/models/tiny"
    assert cfg["constraints"]["hardware"] == "none" and cfg["constraints"]["budget_usd"] == 0
    assert cfg["train"] == {"max_steps": 200, "learning_rate": 1.0e-3, "batch_size": 16, "max_length": 128,
                            "seed": 42}
    d = SAMPLES / "ticket-routing-tiny" / "data"
    tr, ev = read_jsonl(d / "train.jsonl"), read_jsonl(d / "eval.jsonl")
    assert 350 <= len(tr) <= 450 and len(ev) == 100
    assert len({r["messages"][-1]["content"] for r in tr + ev}) == 5


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_loads_with_the_tool(name):
    from advisor.project import load_project

    p = load_project(SAMPLES / name)
    assert p.name == name


def test_converter_reproduces_the_committed_files(tmp_path):
    if not (DATASETS / "banking77" / "train.csv").is_file():
        pytest.skip(f"shared datasets not found at {DATASETS} (set ADVISE_SHARED_DATASETS)")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(DATASETS), "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in PROJECTS:
        fresh = project_files(tmp_path / name)
        committed = project_files(SAMPLES / name)
        assert sorted(fresh) == sorted(committed), f"{name}: file lists differ"
        for rel, data in fresh.items():
            assert committed[rel] == data, f"{name}/{rel} differs from a fresh run of the converter"
