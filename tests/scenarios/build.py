"""Build the labelled scenarios of scenarios.yaml from the shared datasets, assess them, and score
the verdicts: top-1 agreement (the expert's first choice), acceptable agreement (any expected
method), Brier score of the confidence, and a reliability table.

    python tests/scenarios/build.py [--shared DIR]     # prints the figures as markdown
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SYSTEM = "You are a careful assistant."


def _chat(user, assistant, system=SYSTEM):
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]}


def _split(rows, n, n_eval, seed=0):
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows[:n], rows[n : n + n_eval]


def banking(shared, n, n_eval, opts):
    def read(name):
        with open(shared / "banking77" / name, newline="", encoding="utf-8") as fh:
            return [(r["text"], r["category"]) for r in csv.DictReader(fh)]
    train, _ = _split(read("train.csv"), n, 0)
    _, ev = _split(read("test.csv"), 0, n_eval)
    fmt = (lambda c: json.dumps({"intent": c})) if opts.get("json") else (lambda c: c)
    tr = [_chat(t, fmt(c), "Route the message to its queue.") for t, c in train]
    evr = [_chat(t, fmt(c), "Route the message to its queue.") for t, c in ev]
    if opts.get("leak"):
        evr = tr[: opts["leak"]] + evr[opts["leak"] :]
    return tr, evr, None


def covid_qa(shared, n, n_eval, opts):
    d = json.loads((shared / "covid_qa" / "200423_covidQA.json").read_text(encoding="utf-8"))
    rows, docs = [], {}
    for art in d["data"]:
        for p in art["paragraphs"]:
            docs[f"paper_{p['document_id']}.txt"] = p["context"]
            for q in p["qas"]:
                rows.append((q["question"], q["answers"][0]["text"].strip()))
    train, ev = _split(rows, n, n_eval)
    sys_p = "Answer from the COVID-19 research papers."
    return ([_chat(q, a, sys_p) for q, a in train], [_chat(q, a, sys_p) for q, a in ev],
            docs if opts.get("docs") else None)


def covid_faq(shared, n, n_eval, opts):
    with open(shared / "covid_qa" / "faq_covidbert.csv", newline="", encoding="utf-8") as fh:
        rows = [(r["question"], r["answer"].strip(), r["source"]) for r in csv.DictReader(fh)
                if r["question"].strip() and r["answer"].strip()]
    train, ev = _split(rows, n, min(n_eval, max(0, len(rows) - n)))
    docs = {f"faq_{i}.txt": f"{q}\n{a}\nSource: {s}" for i, (q, a, s) in enumerate(rows)}
    sys_p = "Answer from the official FAQs."
    return ([_chat(q, a, sys_p) for q, a, _ in train], [_chat(q, a, sys_p) for q, a, _ in ev],
            docs if opts.get("docs") else None)


def pubmedqa(shared, n, n_eval, opts):
    d = json.loads((shared / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    rows = list(d.values())
    train, ev = _split(rows, n, n_eval)
    kind = opts.get("kind", "labels")

    def rec(r):
        ctx = " ".join(r["CONTEXTS"])
        if kind == "labels":
            return _chat(f"Question: {r['QUESTION']}\nAbstract: {ctx}", r["final_decision"], "Answer yes, no or maybe.")
        if kind == "long":
            return _chat(f"Question: {r['QUESTION']}\nAbstract: {ctx}", r["LONG_ANSWER"], "Answer from the abstract.")
        return _chat(r["QUESTION"], r["LONG_ANSWER"], "Answer the biomedical question.")
    docs = {f"abstract_{k}.txt": " ".join(r["CONTEXTS"]) + "\n" + r["LONG_ANSWER"] for k, r in d.items()}
    return [rec(r) for r in train], [rec(r) for r in ev], docs if opts.get("docs") else None


def e2e(shared, n, n_eval, opts):
    rows = []
    for name in ("devset.csv", "testset_w_refs.csv"):
        with open(shared / "e2e_nlg" / name, newline="", encoding="utf-8") as fh:
            rows += [(r["mr"], r["ref"]) for r in csv.DictReader(fh)]
    train, ev = _split(rows, n, n_eval)
    ins = "Write a short description of the restaurant in fluent English from its attributes."
    return ([{"instruction": ins, "input": m, "output": t} for m, t in train],
            [{"instruction": ins, "input": m, "output": t} for m, t in ev], None)


def scitldr(shared, n, n_eval, opts):
    rows = []
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        for line in (shared / "scitldr" / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            rows.append((" ".join(r["source"]), r["target"][0]))
    train, ev = _split(rows, n, n_eval)
    p = "Summarize this paper abstract in one sentence (TLDR).\n\n"
    return ([{"prompt": p + s, "completion": t} for s, t in train],
            [{"prompt": p + s, "completion": t} for s, t in ev], None)


def hh(shared, n, n_eval, opts):
    with gzip.open(shared / "hh_rlhf_harmless" / "harmless-base_test.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    train, ev = _split(rows, n, n_eval)
    if opts.get("sft"):
        def sft(r):
            head, _, reply = r["chosen"].rpartition("\n\nAssistant:")
            return _chat(head.rpartition("\n\nHuman:")[2].strip() or head.strip(), reply.strip() or "I can't help.")
        return [sft(r) for r in train], [sft(r) for r in ev], None
    return train, ev, None


def toy(shared, n, n_eval, opts):
    rows = [json.loads(x) for x in (shared / "openai_toy_chat" / "toy_chat_fine_tuning.jsonl").read_text().splitlines()]
    return rows[:n], None, None


BUILDERS = {f.__name__: f for f in (banking, covid_qa, covid_faq, pubmedqa, e2e, scitldr, hh, toy)}


def load() -> list[dict]:
    spec = yaml.safe_load((HERE / "scenarios.yaml").read_text(encoding="utf-8"))
    d = spec["defaults"]
    out = []
    for s in spec["scenarios"]:
        out.append({**s, "base_model": s.get("base_model", d["base_model"]), "eval": s.get("eval", d["eval"]),
                    "constraints": {**d["constraints"], **s.get("constraints", {})}, "options": s.get("options", {})})
    return out


def write(root: Path, s: dict, shared: Path) -> Path:
    train, ev, docs = BUILDERS[s["data"]](shared, s["n"], s["eval"], s["options"])
    root.mkdir(parents=True)
    (root / "data").mkdir()
    cfg = {"name": s["id"], "task": s["task"], "base_model": s["base_model"],
           "data": {"train": "data/train.jsonl"}, "constraints": s["constraints"]}
    (root / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    if ev:
        (root / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ev), encoding="utf-8")
        cfg["data"]["eval"] = "data/eval.jsonl"
    if docs:
        (root / "docs").mkdir()
        for name, text in docs.items():
            (root / "docs" / name).write_text(text, encoding="utf-8")
        cfg["data"]["docs"] = "docs/"
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return root


BINS = [(0.0, 0.5), (0.5, 0.7), (0.7, 0.85), (0.85, 1.01)]


def evaluate(shared: Path, workdir: Path) -> dict:
    from advisor.assess.assessment import assess
    from advisor.project import load_project

    rows = []
    for s in load():
        a = assess(load_project(write(workdir / s["id"], s, shared)), use_embeddings=False)
        rec = a["recommendation"]
        rows.append({"id": s["id"], "expected": s["expected"], "method": rec["method"],
                     "confidence": rec["confidence"], "confidence_raw": rec.get("confidence_raw", rec["confidence"]), "top1": rec["method"] == s["expected"][0],
                     "acceptable": rec["method"] in s["expected"], "blockers": len(rec["blockers"])})
    n = len(rows)
    brier = sum((r["confidence"] - r["acceptable"]) ** 2 for r in rows) / n
    table = []
    for lo, hi in BINS:
        b = [r for r in rows if lo <= r["confidence"] < hi]
        table.append({"bin": f"{lo:.2f}-{min(hi, 1):.2f}", "n": len(b),
                      "mean_confidence": round(sum(r["confidence"] for r in b) / len(b), 3) if b else None,
                      "acceptable_rate": round(sum(r["acceptable"] for r in b) / len(b), 3) if b else None})
    return {"scenarios": n, "top1": round(sum(r["top1"] for r in rows) / n, 3),
            "acceptable": round(sum(r["acceptable"] for r in rows) / n, 3), "brier": round(brier, 4),
            "reliability": table, "rows": rows}


def markdown(res: dict) -> str:
    out = [f"{res['scenarios']} scenarios: top-1 agreement {res['top1']:.0%}, acceptable {res['acceptable']:.0%}, "
           f"Brier score {res['brier']:.3f} (confidence vs acceptable)", "",
           "| confidence | scenarios | mean confidence | acceptable |", "| --- | --- | --- | --- |"]
    for t in res["reliability"]:
        out.append(f"| {t['bin']} | {t['n']} | {t['mean_confidence']} | {t['acceptable_rate']} |")
    out += ["", "| scenario | expected | verdict | confidence |", "| --- | --- | --- | --- |"]
    for r in res["rows"]:
        mark = "" if r["top1"] else (" (acceptable)" if r["acceptable"] else " **(disagrees)**")
        out.append(f"| {r['id']} | {', '.join(r['expected'])} | {r['method']}{mark} | {r['confidence']:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "datasets")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parents[1]))
    with tempfile.TemporaryDirectory() as tmp:
        print(markdown(evaluate(a.shared, Path(tmp))))
