"""The decision engine: from data profile, goal signals, constraints and estimates to a
recommendation with reasons, confidence, alternatives and blockers.

Rules are data (``rubrics/decision.yaml``): each rule that fires gives points to methods, and says
why with the signal, its value and the threshold with its source. Rules that switch at a count or a
score fire on a logistic ramp around their threshold (``ramps`` in the rubric), so 190 and 210
examples get close scores, not opposite verdicts. The method with most points wins; the margin over
the runner-up sets the confidence, which falls near a threshold, with blockers and with signals that
disagree. The reasons say what argued against the winner too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from advisor.assess.estimate.compute import duration
from advisor.hardware import parse_hardware
from advisor.methods import METHODS
from advisor.rubric import value

TRAINING = ("lora", "full", "rlhf")


@dataclass
class Facts:
    """Everything the rules read, in one place (so tests can build cases directly)."""

    train_examples: int
    train_invalid: int
    train_format: str | None
    eval_examples: int | None
    leaked_eval: int = 0
    leak_detail: str = ""
    leak: dict | None = None  # the data.leakage block (kinds, distinct texts, groups, templates)
    mixed_formats: bool = False
    duplicate_share: float = 0.0
    knowledge_score: float = 0.5
    label_like: bool = False
    has_docs: bool = False
    facts_change: str | None = None
    needs_citations: bool = False
    requirements_change: str | None = None
    hardware: str | None = None
    budget_usd: float | None = None
    on_prem: bool = False  # constraints.data_must_stay_on_prem: no hosted API to fall back on
    method_override: str = "auto"
    estimates: dict = field(default_factory=dict)  # method -> estimate entry
    signal_disagreement: float = 0.0  # 0: the goal signals agree, 1: they split evenly (signals.disagreement)
    output_form: dict | None = None  # outputs.forms of the train file (expected form, outputs in another)


class _Board:
    def __init__(self, rubric: dict):
        self.r = rubric
        self.score = dict.fromkeys(METHODS, 0.0)
        self.reasons: dict[str, list[tuple[float, str]]] = {m: [] for m in METHODS}
        self.fired: list[dict] = []
        self.ambiguity = 0.0  # 1 when some ramped rule sits right at its threshold

    def src(self, key: str) -> str:
        """The short citation of a source key (the full reference stays in the rubric)."""
        entry = self.r["sources"].get(key, key)
        return entry[0] if isinstance(entry, list) else str(entry)

    def th(self, name: str):
        return value(self.r, "thresholds", name)

    def th_src(self, name: str) -> str:
        return self.src(self.r["thresholds"][name]["source"])

    def fire(self, rule: str, reason: str, only: tuple[str, ...] | None = None, weight: float = 1.0) -> None:
        """Give the rule's points (times ``weight``, its ramp value near a threshold) to the methods."""
        pts = self.r["points"][rule]
        given = {}
        for m in METHODS:
            p = pts.get(m, pts.get("any", 0.0))
            if only is not None and m not in only:
                p = 0.0 if "any" in pts else p
            p = round(p * weight, 4)
            if p:
                self.score[m] += p
                self.reasons[m].append((p, reason))
                given[m] = p
        self.fired.append({"rule": rule, "points": given, "reason": reason, "weight": round(weight, 4)})

    def ramp_count(self, n: int, name: str) -> float:
        """Weight of 'n >= threshold' on a logistic ramp in log(count) (0.5 at the threshold)."""
        t = self.th(name)
        x = (math.log(max(n, 1)) - math.log(t)) / value(self.r, "ramps", "count_log_width")
        w = _logistic(x)
        self.ambiguity = max(self.ambiguity, 1 - abs(2 * w - 1))
        return w

    def ramp_score(self, x: float, t: float) -> float:
        w = _logistic((x - t) / value(self.r, "ramps", "score_width"))
        self.ambiguity = max(self.ambiguity, 1 - abs(2 * w - 1))
        return w


def _logistic(x: float) -> float:
    return 0.0 if x < -50 else 1.0 / (1.0 + math.exp(-x))


MIN_WEIGHT = 0.02  # a ramped rule below this weight does not fire


def _side(n, t, w: float, claim: str) -> str:
    """'>= t' / '< t' as it is, and, near the threshold, how much the rule (which claims ``claim``) counts."""
    rel = f">= {t}" if n >= t else f"< {t}"
    if not 0.05 < w < 0.95:
        return rel
    if rel.startswith(claim):
        return f"{rel} (near the threshold: weighed {w:.2f})"
    return f"{rel}, but near it (the rule for '{claim} {t}' still weighs {w:.2f})"


def decide(f: Facts, rubric: dict) -> dict:
    b = _Board(rubric)
    n = f.train_examples
    is_pref = f.train_format == "preference"

    min_ft, src_ft = b.th("min_examples_finetune"), b.th_src("min_examples_finetune")
    u = b.ramp_count(n, "min_examples_finetune")
    if 1 - u >= MIN_WEIGHT:
        b.fire("few_examples", f"train examples: {n} {_side(n, min_ft, 1 - u, '<')} ({src_ft})", weight=1 - u)
    if u >= MIN_WEIGHT:
        b.fire("enough_for_sft", f"train examples: {n} {_side(n, min_ft, u, '>=')} ({src_ft})", weight=u)
        lo, hi = b.th("typical_supervised_min"), b.th("typical_supervised_max")
        wr = u * b.ramp_count(n, "typical_supervised_min") * (1 - b.ramp_count(n, "typical_supervised_max"))
        if wr >= MIN_WEIGHT:
            where = "within" if lo <= n <= hi else "near"
            b.fire("typical_supervised_range",
                   f"train examples: {n} {where} the usual supervised range {lo}-{hi} "
                   f"({b.th_src('typical_supervised_min')})", weight=wr)
        wl = b.ramp_count(n, "full_min_examples")
        if wl >= MIN_WEIGHT:
            fm = b.th("full_min_examples")
            b.fire("large_data", f"train examples: {n} {_side(n, fm, wl, '>=')} ({b.th_src('full_min_examples')})",
                   weight=wl)

    ks, kt, bt = f.knowledge_score, b.th("knowledge_score_rag"), b.th("behaviour_score_max")
    wk, wb = b.ramp_score(ks, kt), b.ramp_score(bt, ks)
    if wk >= MIN_WEIGHT:
        rel = f">= {kt}" if ks >= kt else f"< {kt} but near it (weighed {wk:.2f})"
        b.fire("knowledge_goal", f"knowledge score: {ks:.2f} {rel} (the answers depend on facts; "
                                 f"{b.src('ovadia2023')})", weight=wk)
    if wb >= MIN_WEIGHT:
        rel = f"<= {bt}" if ks <= bt else f"> {bt} but near it (weighed {wb:.2f})"
        b.fire("behaviour_goal", f"knowledge score: {ks:.2f} {rel} (the task is about form and behaviour; "
                                 f"{b.src('form_not_facts')})", weight=wb)
    if f.facts_change in ("monthly", "weekly", "daily"):
        b.fire("facts_change", f"constraints.facts_change: {f.facts_change} (more often than 'rarely'; {b.src('form_not_facts')})")
    if f.needs_citations:
        b.fire("needs_citations", f"constraints.needs_citations: true (answers must cite sources; {b.src('form_not_facts')})")
    if f.requirements_change == "often":
        b.fire("requirements_change_often", f"constraints.requirements_change: often ({b.src('prompting_first')})")
    if is_pref:
        mp = b.th("min_preference_pairs")
        wp = b.ramp_count(n, "min_preference_pairs")
        if wp >= MIN_WEIGHT:
            b.fire("preference_pairs", f"preference pairs: {n} {_side(n, mp, wp, '>=')} ({b.src('dpo_pairs')}; "
                                       f"{b.src('dpo')})", weight=wp)
        if 1 - wp >= MIN_WEIGHT:
            b.fire("few_preference_pairs", f"preference pairs: {n} {_side(n, mp, 1 - wp, '<')} "
                                           f"({b.src('dpo_pairs')})", weight=1 - wp)
    else:
        b.score["rlhf"] -= 5
        b.reasons["rlhf"].append((-5.0, "no preference pairs (chosen/rejected) in the data: DPO needs them"))
    if f.label_like and u >= MIN_WEIGHT:
        b.fire("label_outputs", "outputs are a closed label set: a fine-tuned model learns the labels and their format",
               weight=u)
    if not f.has_docs:
        b.fire("no_docs", "no docs/ directory: retrieval has nothing to retrieve")
    try:  # the one hardware parser ("none", "cpu only", "no GPU", ... all read alike)
        no_gpu = parse_hardware(f.hardware).kind == "cpu"
    except ValueError:
        no_gpu = False
    cpu_max = b.th("cpu_training_max_hours")
    on_cpu = {m for m in TRAINING if (f.estimates.get(m) or {}).get("cpu_hours") is not None
              and f.estimates[m]["cpu_hours"] <= cpu_max}
    if no_gpu:
        if on_cpu:
            cpu = f.estimates.get("lora", {}).get("cpu_hours")
            b.reasons["lora"].append((0.0, f"no GPU, but the model is small: training runs on this CPU in "
                                           f"{duration(cpu)} (<= {cpu_max:g} h)" if cpu is not None else ""))
        off_cpu = tuple(m for m in TRAINING if m not in on_cpu)
        if off_cpu:  # (an empty `only` would mean every method)
            b.fire("no_training_hardware", "constraints.hardware: none (training needs a GPU or a hosted service)",
                   only=off_cpu)

    for m in TRAINING:
        est = f.estimates.get(m)
        if not est or m in on_cpu:
            continue
        if est.get("within_budget") is False:
            b.fire("over_budget", f"{m}: estimated ${est.get('cost_usd', 0):,.0f} > budget ${f.budget_usd:,.0f}", only=(m,))
        if est.get("fits") is False and not (m == "lora" and est.get("suggest") == "qlora"):
            b.fire("does_not_fit", f"{m}: needs about {est.get('memory_gb', 0):.0f} GB per GPU, more than {f.hardware}",
                   only=(m,))

    ranked = sorted(METHODS, key=lambda m: (-b.score[m], METHODS.index(m)))
    best = ranked[0]
    overridden = f.method_override not in ("auto", None, "") and f.method_override != best
    method = f.method_override if f.method_override not in ("auto", None, "") else best

    # also: RAG and fine-tuning gains stack (balaguer2024)
    also: list[str] = []
    if (method == "rag" and f.has_docs and n >= b.th("rag_plus_lora_min_examples") and b.score["lora"] > 0
            and (f.label_like or f.knowledge_score < b.th("rag_plus_lora_max_knowledge"))):
        also.append("lora")
    elif method in ("lora", "full") and f.has_docs and b.score["rag"] > 0:
        also.append("rag")

    # confidence from the margin, less data-quality penalties
    margin = b.score[best] - b.score[ranked[1]]
    c = value(rubric, "confidence", "base") + value(rubric, "confidence", "per_point_of_margin") * margin
    total = n + f.train_invalid
    if total:
        c -= value(rubric, "confidence", "penalty_invalid_share") * f.train_invalid / total
    if f.eval_examples is None:
        c -= value(rubric, "confidence", "penalty_no_eval")
    c -= value(rubric, "confidence", "penalty_near_threshold") * b.ambiguity
    c -= value(rubric, "confidence", "penalty_disagreement") * f.signal_disagreement
    blockers = _blockers(f, method, b, on_cpu)
    c -= value(rubric, "confidence", "penalty_per_blocker") * len(blockers)
    raw = c
    c = calibrated(raw, rubric)
    if overridden:
        c = min(c, 0.5)
    c = max(value(rubric, "confidence", "min"), min(value(rubric, "confidence", "max"), c))

    reasons = [txt for p, txt in sorted(b.reasons[method], key=lambda t: -t[0]) if p > 0 or (p == 0 and txt)]
    if overridden:
        reasons.insert(0, f"method set in project.yaml: {method} (the rules would pick {best}, "
                          f"{b.score[best]:.1f} points against {b.score[method]:.1f})")
    if also:
        reasons.append(f"also {', '.join(also)}: {b.src('balaguer2024')}")
    if method in ("lora",) and f.estimates.get("lora", {}).get("suggest") == "qlora":
        reasons.append(f"LoRA in 16-bit does not fit {f.hardware}; QLoRA (4-bit base) does ({b.src('qlora')})")
    if method == "lora":
        reasons.append(f"LoRA rather than full fine-tuning: {b.src('biderman2024')}")
    est = f.estimates.get(method) or {}
    if method in TRAINING and method not in on_cpu and _misfit(method, est):
        way = _fit_way(f, method, est)
        if way:
            reasons.insert(0, f"{method} needs about {est.get('memory_gb', 0):.0f} GB per GPU, more than "
                              f"{_hw(f)}; the way it fits: {way}")
    elif method == "full" and est.get("fits") and est.get("cost_usd") is not None:
        budget = "no budget stated" if f.budget_usd is None else f"within the budget of ${f.budget_usd:,.0f}"
        cost = "under $0.01" if est["cost_usd"] < 0.01 else f"about ${est['cost_usd']:,.2f}"
        reasons.append(f"full fine-tuning is affordable here: {cost} on "
                       f"{est.get('timed_on') or _hw(f)} ({duration(est.get('wall_hours'))}), {budget}; about "
                       f"{est.get('memory_gb') or 0:.0f} GB per GPU fits {_hw(f)}")
    # what argued against the winner: its own negative points, and the runner-up's strongest case
    against = [txt for p, txt in sorted(b.reasons[method], key=lambda t: t[0]) if p < 0]
    for txt in against[:3]:
        reasons.append(f"against {method}: {txt}")
    runner = next((m for m in ranked if m != method), None)
    if runner is not None:
        mine = {txt for _, txt in b.reasons[method]}
        pro = [txt for p, txt in sorted(b.reasons[runner], key=lambda t: -t[0]) if p > 0 and txt not in mine]
        if pro:
            reasons.append(f"for {runner} (runner-up, {b.score[runner]:.1f} points against {b.score[method]:.1f}): "
                           f"{pro[0]}")

    alternatives = []
    for m in ranked:
        if m == method:
            continue
        # its strongest case against, unless that barely counted (a rule at the far end of its ramp)
        neg = [txt for p, txt in sorted(b.reasons[m], key=lambda t: t[0]) if p <= -0.5]
        why = neg[0] if neg else _why_not(m, f, b, method)
        why += f" ({b.score[m]:.1f} points against {b.score[method]:.1f})"
        alternatives.append({"method": m, "score": round(b.score[m], 2), "why_not": why})

    warnings = []
    form = _form_text(f, method, b)
    if form and not form[0]:
        warnings.append(form[1])
    leak_text = _leak_text(f, method, b)
    if leak_text and not leak_text[0]:
        warnings.append(leak_text[1])
    return {
        "method": method,
        "variant": "qlora" if method == "lora" and f.estimates.get("lora", {}).get("suggest") == "qlora" else (
            "dpo" if method == "rlhf" else None),
        "also": also,
        "confidence": round(c, 2),
        "confidence_raw": round(raw, 4),  # the score before calibration (bench/verdict_calibration.py fits on it)
        "reasons": reasons,
        "alternatives": alternatives,
        "blockers": blockers,
        "warnings": warnings,
        "scores": {m: round(s, 2) for m, s in b.score.items()},
        "rules_fired": b.fired,
    }


def calibrated(raw: float, rubric: dict) -> float:
    """The raw confidence (base + margin - penalties) through the fitted monotone mapping of the rubric
    (``confidence.calibration``: Platt scaling, sigmoid(slope * raw + intercept)); raw as is without one."""
    cal = rubric.get("confidence", {}).get("calibration")
    if not cal:
        return raw
    k = value(rubric, "confidence", "calibration")
    return _logistic(float(k["slope"]) * raw + float(k["intercept"]))


def _why_not(m: str, f: Facts, b: _Board, method: str = "") -> str:
    n = f.train_examples
    if m == "full":
        fm = b.th("full_min_examples")
        if n < fm:
            return (f"{n} examples < {fm}, where full fine-tuning starts to pay off ({b.th_src('full_min_examples')}); "
                    f"it costs more and forgets more than LoRA ({b.src('biderman2024')})")
        return f"LoRA reaches most of the gain at a fraction of the memory and forgets less ({b.src('biderman2024')})"
    ks = f.knowledge_score
    if m == "prompting":
        if ks <= b.th("behaviour_score_max"):
            return (f"with {n} examples of a fixed behaviour a tuned model usually beats prompting; "
                    "`advise eval` measures zero- and few-shot prompting as the baseline")
        if ks >= b.th("knowledge_score_rag"):
            return (f"the answers depend on facts (knowledge score {ks:.2f}): a bare prompt has no access to them; "
                    "`advise eval` measures zero- and few-shot prompting as the baseline")
        return (f"with {n} examples a tuned or grounded model usually beats a bare prompt; "
                "`advise eval` measures zero- and few-shot prompting as the baseline")
    if m == "rag":
        return f"the answers do not depend on retrievable facts (knowledge score {ks:.2f})"
    if m == "lora":
        if method == "full":
            return (f"with {n} examples full fine-tuning is expected to gain more than LoRA's low-rank update "
                    f"({b.th_src('full_min_examples')})")
        if method == "rlhf":
            return ("the data are preference pairs: DPO also learns from the rejected replies, which supervised "
                    f"LoRA ignores ({b.src('dpo')})")
        return "the other signals outweigh what fine-tuning would add"
    return "fewer points"


def leak_severity(leaked: int, n_eval: int, rubric: dict) -> dict:
    """Whether leaked eval records could move the primary metric by more than its 95% CI half-width.

    ``blocker_share``: z*sqrt(p(1-p)/n) on n eval records (at least the rubric's floor
    ``max_leaked_eval_share``); ``severity``: blocker above it, warning below, none without leakage.
    """
    th = lambda k: value(rubric, "thresholds", k)  # noqa: E731
    if not n_eval:
        return {"severity": "none", "blocker_share": None}
    p = th("leak_blocker_metric_p")
    half = th("leak_blocker_ci_z") * math.sqrt(p * (1 - p) / n_eval)
    limit = max(th("max_leaked_eval_share"), half)
    share = leaked / n_eval
    sev = "none" if not leaked else ("blocker" if share > limit else "warning")
    return {"severity": sev, "blocker_share": round(limit, 4), "ci_half_width": round(half, 4)}


def _form_text(f: Facts, method: str, b: _Board) -> tuple[bool, str] | None:
    """(is a blocker, text) about train outputs in another form than the expected one."""
    fo = f.output_form or {}
    if not fo.get("expected") or not fo.get("other"):
        return None
    share, limit = fo["other_share"], b.th("form_mix_blocker")
    total = round(fo["other"] / share) if share else fo["other"]
    text = (f"{fo['other']} of {total} train outputs ({share:.1%}) are not {fo['expected']} ({fo['why']}; see the "
            "output_form_mismatch findings)")
    if method in TRAINING and share >= limit:
        return True, (f"{text}: training would teach both forms (>= {limit:.0%}, {b.th_src('form_mix_blocker')}); "
                      f"convert them to {fo['expected']} or remove them")
    if method in TRAINING:
        return False, f"{text}: convert them to {fo['expected']} or remove them before training"
    return False, f"{text}: keep them out of the few-shot examples"


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _leak_text(f: Facts, method: str, b: _Board) -> tuple[bool, str] | None:
    """(is a blocker, text) about eval records that leak into train, with a remedy that fits the case."""
    n_eval, leaked = f.eval_examples or 0, f.leaked_eval
    lk = f.leak or {}
    if not n_eval or (not leaked and not lk.get("template")):
        return None
    sev = leak_severity(leaked, n_eval, b.r)
    if not leaked:  # template overlap only
        ex = lk.get("template_example")
        return False, (f"{lk['template']} of {n_eval} eval records share only template phrasing with train"
                       + (f" (e.g. '{ex}')" if ex else "") + ": a shared template, not leakage; if the eval "
                       "should test unseen templates, re-split train and eval by template")
    distinct = lk.get("distinct_texts_leaked", leaked)
    kinds = ", ".join(f"{k.replace('_', ' ')} {lk[k]}" for k in ("exact", "normalised", "output", "ngram")
                      if lk.get(k)) or f.leak_detail
    copies = f" ({distinct} distinct texts)" if distinct != leaked else ""
    share, limit = leaked / n_eval, sev["blocker_share"]
    head = (f"{leaked} of {n_eval} eval records{copies} also appear in train ({kinds}; "
            f"{share:.1%} of the eval set")
    if sev["severity"] == "blocker":
        head += (f", more than the {limit:.1%} half-width of the metric's 95% confidence interval on {n_eval} "
                 f"records ({b.src('ci95')}): they could move the primary metric by more than its uncertainty)")
    else:
        head += (f", within the {limit:.1%} half-width of the metric's 95% confidence interval on {n_eval} "
                 f"records ({b.src('ci95')}): a warning, not a blocker)")
    groups = lk.get("groups")
    if method in ("prompting", "rag"):
        remedy = ("for prompting and RAG, leakage matters where train records become few-shot examples: keep "
                  f"{_n(lk.get('train_records_involved', leaked), 'train record')} that match eval records out of "
                  "the few-shot pool (the eval file stays as it is)")
    elif groups and groups.get("eval_records"):
        remedy = (f"{groups['eval_records']} eval records share a `{groups['field']}` with train "
                  f"({groups['groups']} groups): re-split train by `{groups['field']}` so each group is on one "
                  "side, keeping the eval file fixed")
    elif lk.get("template"):
        remedy = (f"remove the matching {_n(lk.get('train_records_involved', leaked), 'record')} from train (the "
                  f"eval file stays fixed); {_n(lk['template'], 'more eval record')} share only a template with "
                  "train (not leakage)")
    else:
        remedy = (f"remove the matching {_n(lk.get('train_records_involved', leaked), 'record')} from train, "
                  "keeping the eval file fixed so scores stay comparable (see the leakage findings for the lines)")
    return sev["severity"] == "blocker", f"{head}; {remedy}"


def _blockers(f: Facts, method: str, b: _Board, on_cpu: set[str]) -> list[str]:
    out = []
    leak_text = _leak_text(f, method, b)
    if leak_text and leak_text[0]:
        out.append(leak_text[1])
    form = _form_text(f, method, b)
    if form and form[0]:
        out.append(form[1])
    total = f.train_examples + f.train_invalid
    if total and f.train_invalid / total > b.th("max_invalid_share"):
        out.append(f"{f.train_invalid} of {total} train records are invalid "
                   f"({f.train_invalid / total:.0%} > {b.th('max_invalid_share'):.0%}): fix them first (see findings)")
    if f.mixed_formats:
        out.append("train records come in several formats: convert them to one format")
    if f.duplicate_share > b.th("max_duplicate_share"):
        out.append(f"{f.duplicate_share:.0%} of train records duplicate others (> {b.th('max_duplicate_share'):.0%}): "
                   "deduplicate before training")
    if method not in TRAINING and f.on_prem:
        est = f.estimates.get(method) or {}
        if est.get("fits") is False:
            out.append(f"serving the base model for {method} needs about {est.get('memory_gb', 0):.0f} GB, which does "
                       f"not fit {f.hardware}, and the data must stay on premises (no hosted API): choose a smaller "
                       "base model or more hardware")
    if method in TRAINING:
        n = f.train_examples
        if method == "rlhf":
            mp = b.th("min_preference_pairs_absolute")
            if f.train_format != "preference":
                out.append("rlhf (DPO) needs preference pairs (prompt, chosen, rejected); the train file has none")
            elif n < mp:
                out.append(f"only {n} preference pairs: too few for DPO (< {mp})")
        elif n < b.th("min_examples_absolute"):
            out.append(f"only {n} train examples: below the hard minimum of {b.th('min_examples_absolute')} that "
                       f"hosted fine-tuning accepts ({b.th_src('min_examples_absolute')}), and far too few for {method}")
        elif n < b.th("min_examples_finetune"):
            out.append(f"only {n} train examples: too few for {method} (< {b.th('min_examples_finetune')}, "
                       f"{b.th_src('min_examples_finetune')})")
        est = f.estimates.get(method) or {}
        if method in on_cpu:
            est = {}
        if est.get("within_budget") is False:
            out.append(f"{method} is estimated at ${est.get('cost_usd', 0):,.0f}, over the budget of ${f.budget_usd:,.0f}")
        if _misfit(method, est) and _fit_way(f, method, est) is None:
            why = ("the data must stay on premises, so no hosted fine-tuning" if f.on_prem else
                   "no listed provider fine-tunes this base model within the budget")
            out.append(f"{method} needs about {est.get('memory_gb', 0):.0f} GB per GPU, more than {_hw(f)}, and "
                       f"no affordable way to fit it is listed: {why}, and no smaller variant fits; choose a smaller "
                       "base model or more GPU memory")
    return out


def _hw(f: Facts) -> str:
    hw = (f.hardware or "").strip()
    return "this machine (no GPU)" if hw.lower() in ("none", "cpu", "0", "no gpu") else (hw or "the hardware")


def _misfit(method: str, est: dict) -> bool:
    """The estimate says the method does not fit the hardware (LoRA that fits as QLoRA is QLoRA's verdict)."""
    return est.get("fits") is False and not (method == "lora" and est.get("suggest") == "qlora")


def _fit_way(f: Facts, method: str, est: dict) -> str | None:
    """How a method that does not fit the hardware would fit: a smaller variant on the same hardware,
    hosted fine-tuning of the same model where the data may leave, or a provider's own model; None
    when no affordable way is listed."""
    if est.get("suggest") and method in ("full", "lora"):
        return (f"{est['suggest'].upper() if est['suggest'] == 'qlora' else 'LoRA'} of the same base model fits "
                f"{f.hardware} (see the estimate's fits note)")
    hosted = est.get("hosted") if not f.on_prem else None
    if not isinstance(hosted, dict):
        return None
    budget = f.budget_usd
    best = hosted.get("cheapest")
    if best and (budget is None or best["usd"] <= budget):
        return (f"hosted {method} fine-tuning of this model ({best['provider']}, {best['offering']}), about "
                f"${best['usd']:,.2f} (constraints.data_must_stay_on_prem is false)")
    closed = next((o for o in hosted.get("offers") or [] if not o.get("same_model")
                   and (budget is None or o["usd"] <= budget)), None)
    if closed:
        return (f"hosted fine-tuning of a provider's own model ({closed['provider']}, {closed['offering']}), about "
                f"${closed['usd']:,.2f}: comparable at the task level only, the weights stay with the provider")
    return None
