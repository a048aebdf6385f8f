"""Goal signals: is the task about knowledge (facts the model must know) or behaviour (form, style,
labels, transformations)?

Each signal is measured on the data, not only read from the task text, and keeps its evidence
(e.g. "71% of answers are found in docs/"). The knowledge score is the weighted mean of the signals
that point either way (1 = knowledge, 0 = behaviour).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from advisor.assess.outputs import output_form
from advisor.assess.profile import FileProfile
from advisor.data.docs import BM25, doc_files, load_docs, passages
from advisor.data.findings import Findings
from advisor.data.textnorm import ngram_hashes, normalise, words
from advisor.embeddings import embed
from advisor.project import Project
from advisor.rubric import value

KNOWLEDGE, BEHAVIOUR, NEUTRAL = "knowledge", "behaviour", "neutral"
EMBED_SAMPLE = 60  # answers embedded for the embedding signal
EMBED_CANDIDATES = 2  # BM25 candidate passages per answer


@dataclass
class Signal:
    name: str
    value: float | str | bool | None
    points_to: str
    strength: float  # 0..1, how strongly it points
    weight: float
    evidence: str

    def to_dict(self) -> dict:
        return asdict(self)


def _docs_signals(project: Project, sample, r: dict, w: dict, use_embeddings: bool,
                  findings: Findings | None = None) -> tuple[list[Signal], dict]:
    docs_dir = project.data_path("docs")
    info: dict = {"docs": None}
    if docs_dir is None:
        return [], info
    docs = load_docs(docs_dir, project.root, findings)  # confined to the project; skipped links are findings
    info["docs"] = {"files": len(docs), "characters": sum(len(t) for t in docs.values())}
    if not docs or not sample:
        return [], info
    grams: set[int] = set()
    for text in docs.values():
        grams |= ngram_hashes(words(text), 4)
    big = " " + normalise(" ".join(docs.values())) + " "
    need = value(r, "signals", "docs_answer_found_ngram_share")
    found = 0
    for rec in sample:
        toks = words(rec.output)
        if len(toks) < 4:
            hit = len(toks) > 0 and (" " + normalise(rec.output) + " ") in big
        else:
            g = ngram_hashes(toks, 4)
            hit = len(g & grams) / len(g) >= need
        found += hit
    share = found / len(sample)
    strong = value(r, "signals", "docs_found_knowledge")
    out = [Signal(
        "answers_in_docs", round(share, 4), KNOWLEDGE if share >= strong else BEHAVIOUR,
        min(1.0, share / strong) if share >= strong else 1 - share / strong, w["docs_found"],
        f"{share:.0%} of answers are found in docs/ (>= {need:.0%} of their word 4-grams); "
        f"threshold for knowledge: {strong:.0%}",
    )]
    if use_embeddings:
        import numpy as np


        ps = passages(docs)
        answers = [rec.output for rec in sample[:EMBED_SAMPLE]]
        # embed only each answer's best lexical candidates (BM25): bounded cost on large docs/
        bm = BM25([p.text for p in ps])
        cand = sorted({i for a in answers for i, _ in bm.top(a, EMBED_CANDIDATES)})
        if not cand:
            return out, info
        pe = embed([ps[i].text for i in cand])
        ae = embed(answers)
        best = (ae @ pe.T).max(axis=1)
        cos = value(r, "signals", "embedding_support_cosine")
        supported = float(np.mean(best >= cos))
        info["embedding"] = {"answers": len(answers), "passages": len(ps), "candidates_embedded": len(cand), "mean_best_cosine": round(float(best.mean()), 4)}
        out.append(Signal(
            "answers_supported_by_docs_embedding", round(supported, 4), KNOWLEDGE if supported >= strong else BEHAVIOUR,
            min(1.0, supported / strong) if supported >= strong else 1 - supported / strong, w["docs_embedding"],
            f"{supported:.0%} of {len(answers)} answers have a docs passage at cosine >= {cos} "
            f"(all-MiniLM-L6-v2; mean best cosine {float(best.mean()):.2f})",
        ))
    return out, info


def goal_signals(project: Project, train: FileProfile, rubric: dict, use_embeddings: bool = True,
                 findings: Findings | None = None) -> dict:
    r = rubric
    w = value(r, "signals", "weights")
    sig: list[Signal] = []
    outs = train.summary.get("outputs", {})
    sample = train.sample

    docs_sig, docs_info = _docs_signals(project, sample, r, w, use_embeddings, findings)
    sig += docs_sig

    if outs.get("label_like"):
        k = outs["labels"]["classes"]
        sig.append(Signal("label_outputs", k, BEHAVIOUR, 1.0, w["label_outputs"],
                          f"outputs are a closed set of {k} labels (a classification behaviour)"))
    ramp = value(r, "signals", "ramp_width")
    tmpl = outs.get("templatedness")
    if tmpl is not None and not outs.get("label_like"):
        t = value(r, "signals", "templatedness_behaviour")
        p = logistic((tmpl - t) / ramp["templatedness"])
        sig.append(Signal("templated_outputs", tmpl, BEHAVIOUR, round(p, 4), round(w["templated"] * p, 4),
                          f"templatedness of outputs {tmpl:.2f} (share of repeated word 3-grams); "
                          f"behaviour from about {t:.2f}"))
    forms = outs.get("forms") or {}
    js = outs.get("json") or {}
    expected = forms.get("expected")
    if expected in ("json", "sql") and forms.get("other_share", 1.0) <= 1 - value(r, "signals", "strict_format_share"):
        strict = expected == "sql" or (js.get("parse_rate", 0) >= value(r, "signals", "strict_format_share")
                                        and js.get("main_structure_share", 0) >= value(r, "signals", "strict_format_share"))
        if strict:
            what = (f"{js.get('parse_rate', 0):.0%} of JSON outputs parse, {js.get('main_structure_share', 0):.0%} "
                    "with one key structure" if expected == "json" else
                    f"{1 - forms.get('other_share', 0):.0%} of outputs are SQL")
            sig.append(Signal("strict_output_format", expected, BEHAVIOUR, 1.0, w["strict_format"],
                              f"{what}: a strict output format (a behaviour)"))
    text_recs = [rec for rec in sample if output_form(rec.output) == "text"] if sample else []
    if text_recs and not outs.get("label_like"):
        # output words found in the input: on free text only (JSON keys, SQL keywords and aliases are not)
        copied = total = 0
        for rec in text_recs:
            ow = words(rec.output)
            iw = set(words(rec.key))
            total += len(ow)
            copied += sum(1 for x in ow if x in iw)
        share = copied / total if total else 0.0
        t = value(r, "signals", "input_copy_behaviour")
        lean = 2 * logistic((share - t) / ramp["input_copy"]) - 1
        sig.append(Signal("output_words_from_input", round(share, 4), BEHAVIOUR if lean >= 0 else KNOWLEDGE,
                          round(lean if lean >= 0 else -0.5 * lean, 4), w["input_copy"],
                          f"{share:.0%} of output words occur in the input of {len(text_recs)} free-text outputs "
                          f"(a transformation from about {t:.0%})"))
    nums = outs.get("numbers_per_100_words")
    if nums is not None and not outs.get("label_like"):
        t = value(r, "signals", "numbers_knowledge")
        p = logistic((nums - t) / ramp["numbers"])
        sig.append(Signal("numbers_in_outputs", nums, KNOWLEDGE, round(p, 4), round(w["numbers"] * p, 4),
                          f"{nums} numbers per 100 words of free-text outputs (fact-heavy from about {t})"))

    kc = [c for c in r["task_cues"]["knowledge"] if _cue_in(c, project.task)]
    bc = [c for c in r["task_cues"]["behaviour"] if _cue_in(c, project.task)]
    if kc or bc:
        lean = (len(kc) - len(bc)) / (len(kc) + len(bc))
        sig.append(Signal("task_text_cues", f"knowledge {kc}, behaviour {bc}",
                          KNOWLEDGE if lean > 0 else BEHAVIOUR if lean < 0 else NEUTRAL, abs(lean), w["task_text"],
                          f"task text mentions {', '.join(repr(c.rstrip('*')) for c in kc + bc)}"))
    c = project.constraints
    if c.facts_change in ("monthly", "weekly", "daily"):
        sig.append(Signal("facts_change", c.facts_change, KNOWLEDGE, 1.0, w["facts_change"],
                          f"constraints.facts_change is {c.facts_change}: the facts move faster than retraining"))
    elif c.facts_change in ("never", "rarely"):
        sig.append(Signal("facts_change", c.facts_change, NEUTRAL, 0.0, w["facts_change"],
                          f"constraints.facts_change is {c.facts_change}"))
    if c.needs_citations:
        sig.append(Signal("needs_citations", True, KNOWLEDGE, 1.0, w["needs_citations"],
                          "constraints.needs_citations is true: answers must point at sources"))

    num = den = 0.0
    for s in sig:
        if s.points_to == NEUTRAL:
            continue
        target = 1.0 if s.points_to == KNOWLEDGE else 0.0
        num += s.weight * s.strength * target + s.weight * (1 - s.strength) * 0.5
        den += s.weight
    score = round(num / den, 4) if den else 0.5
    k = sum(s.weight * s.strength for s in sig if s.points_to == KNOWLEDGE)
    bh = sum(s.weight * s.strength for s in sig if s.points_to == BEHAVIOUR)
    disagreement = round(2 * min(k, bh) / (k + bh), 4) if k + bh else 0.0
    lean = KNOWLEDGE if score >= value(r, "thresholds", "knowledge_score_rag") else (
        BEHAVIOUR if score <= value(r, "thresholds", "behaviour_score_max") else "mixed")
    return {"knowledge_score": score, "leaning": lean, "disagreement": disagreement,
            "signals": [s.to_dict() for s in sig], **docs_info}


def logistic(x: float) -> float:
    """The logistic ramp: 0.5 at a threshold, 0.12 / 0.88 one width below / above it."""
    if x < -50:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


def _cue_in(cue: str, task: str) -> bool:
    """A task-text cue as whole words ('cite' is not in 'cited'); a trailing * matches a word stem."""
    stem = cue.endswith("*")
    pat = r"\b" + re.escape(cue.rstrip("*").casefold()) + ("" if stem else r"\b")
    return re.search(pat, task.casefold()) is not None


def docs_dir_has_files(path: Path | None, root: Path | None = None) -> bool:
    """data.docs holds documents that the docs rule admits (confined to ``root``, the project)."""
    return bool(path and path.is_dir() and doc_files(path, root))
