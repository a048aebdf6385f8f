"""The measured verdict: which method wins at full data on the dev split, by how much (with a paired
95% interval), and how that compares with the rule-based verdict of `advise assess`."""

from __future__ import annotations

import numpy as np

from advisor.methods import estimate_row
from evaluators.stats import is_binary, min_detectable_effect


def paired_delta(a: dict[str, float | None], b: dict[str, float | None], *, resamples: int = 2000,
                 seed: int = 0) -> dict | None:
    """mean(a - b) over the items both scored, with a percentile bootstrap interval over items."""
    common = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    if len(common) < 2:
        return None
    d = np.asarray([float(a[k]) - float(b[k]) for k in common])
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (resamples, len(d)))].mean(axis=1)
    return {"delta": round(float(d.mean()), 4), "ci": [round(float(np.percentile(boots, 2.5)), 4),
                                                        round(float(np.percentile(boots, 97.5)), 4)],
            "n": len(common), "sd": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "binary": bool(is_binary([float(a[k]) for k in common]) and is_binary([float(b[k]) for k in common]))}


def measured_verdict(arms: list[dict], curve: dict | None, plugin: str | None, rule: dict) -> dict:
    """arms: ArmResult dicts (with per_item); curve: fit_curve(...).to_dict() over the fine-tuning arms."""
    by_kind: dict[str, list[dict]] = {}
    for a in arms:
        if a.get("value") is not None:
            by_kind.setdefault(a["kind"], []).append(a)
    options: list[dict] = []  # {method, value, ci, arm, source}
    if by_kind.get("prompting"):
        best = max(by_kind["prompting"], key=lambda a: a["value"])
        options.append({"method": "prompting", "value": best["value"], "ci": best["ci"], "arm": best["name"],
                        "source": "measured"})
    if by_kind.get("rag"):
        best = max(by_kind["rag"], key=lambda a: a["value"])
        options.append({"method": "rag", "value": best["value"], "ci": best["ci"], "arm": best["name"],
                        "source": "measured"})
    ft = sorted(by_kind.get("fine-tuning", []), key=lambda a: a.get("train_examples") or 0)
    ft_method = estimate_row(plugin) if ft and plugin else None  # the method a plugin trains (advisor.methods)
    if ft:
        pred = (curve or {}).get("predictions", {}).get("1x")
        if curve and curve.get("status") == "fitted" and pred:
            options.append({"method": ft_method, "value": pred["value"], "ci": pred["ci"], "arm": "curve at 100%",
                            "source": "extrapolated"})
        else:
            top = ft[-1]
            options.append({"method": ft_method, "value": top["value"], "ci": top["ci"], "arm": top["name"],
                            "source": "measured (largest fraction; no curve)"})
    if not options:
        return {"status": "inconclusive", "why": "no arm produced a score", "method": None}
    higher = all(a.get("higher_is_better", True) for a in arms)
    options.sort(key=lambda o: o["value"], reverse=higher)
    win, runner = options[0], (options[1] if len(options) > 1 else None)
    out = {"method": win["method"], "value": win["value"], "ci": win["ci"], "evidence": win["source"],
           "arm": win["arm"], "options": options, "status": "decided"}
    if runner is None:
        out.update(status="inconclusive", why="only one method could be measured")
        return out
    arm_of = {a["name"]: a for a in arms}
    margin = None
    if win["source"] == "extrapolated" and runner["arm"] in (curve or {}).get("against", {}):
        margin = dict(curve["against"][runner["arm"]])
    elif runner["source"] == "extrapolated" and win["arm"] in (curve or {}).get("against", {}):
        m = curve["against"][win["arm"]]
        margin = {"delta": -m["delta"], "ci": [-m["ci"][1], -m["ci"][0]] if m.get("ci") else None}
    elif win["arm"] in arm_of and runner["arm"] in arm_of:
        margin = paired_delta(arm_of[win["arm"]]["per_item"], arm_of[runner["arm"]]["per_item"])
    if margin and not higher:
        margin = {**margin, "delta": -margin["delta"], "ci": [-margin["ci"][1], -margin["ci"][0]] if margin.get("ci") else None}
    out["over"] = runner["method"]
    out["margin"] = margin
    if margin is None or margin.get("ci") is None or margin["ci"][0] <= 0:
        out["status"] = "inconclusive"
        n = margin.get("n") if margin else None
        n = n or max((a.get("n") or 0) for a in arms)
        p_base = runner["value"] if runner["value"] is not None and 0 < runner["value"] < 1 else None
        mde = None
        try:
            if margin and margin.get("binary") is False and margin.get("sd"):
                mde = min_detectable_effect(n, sd=margin["sd"])
            elif p_base is not None:
                mde = min_detectable_effect(n, p_base=p_base)
        except ValueError:
            mde = None
        out["min_detectable_difference"] = None if mde is None else round(mde, 4)
        out["why"] = (f"{win['method']} leads {runner['method']} by "
                      f"{margin['delta']:+.3f}" if margin else f"{win['method']} leads {runner['method']}") + (
            f" [{margin['ci'][0]:+.3f}, {margin['ci'][1]:+.3f}]" if margin and margin.get("ci") else "") + (
            f", but a dev split of {n} items cannot separate them"
            + (f" (it detects differences of {mde:.3f} and more at 80% power)" if mde else ""))
    rule_method = rule.get("method")
    out["rule_method"] = rule_method
    out["agrees_with_rules"] = rule_method == win["method"] or estimate_row(rule_method or "") == win["method"]
    if not out["agrees_with_rules"]:
        out["disagreement"] = (
            f"the rules chose {rule_method} from proxies ({(rule.get('reasons') or ['no reason given'])[0]}); "
            f"measured on the team's own data, {win['method']} ({win['source']}) scores {win['value']:.3f} against "
            f"{runner['method']} {runner['value']:.3f}"
            + ("; the measurement decides" if out["status"] == "decided" else "; the measurement is inconclusive, "
               "so the rule-based verdict stands"))
    return out
