"""A method the tool itself says does not fit the hardware is never the verdict without the way it would
fit (a smaller variant on the same hardware, hosted fine-tuning where the data may leave) or a blocker
saying no affordable way exists. On real data (BANKING77 from the shared datasets) through `assess`."""

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "scenarios"))

from build import load, write  # noqa: E402

from advisor.assess.assessment import assess  # noqa: E402
from advisor.project import load_project  # noqa: E402

BANK = next(s for s in load() if s["id"] == "bank-1500")


def _assess(tmp_path, shared, name, *, base_model, method="auto", **constraints):
    s = {**BANK, "id": name, "base_model": base_model, "constraints": {**BANK["constraints"], **constraints}}
    root = write(tmp_path / name, s, shared)
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["method"] = method
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return assess(load_project(root), use_embeddings=False)


def _row(a, m):
    return next(e for e in a["estimate"]["methods"] if e["method"] == m)


def test_full_that_does_not_fit_names_the_smaller_variant_that_does(tmp_path, shared_datasets):
    a = _assess(tmp_path, shared_datasets, "full-7b", base_model="Qwen/Qwen2.5-7B-Instruct", method="full",
                hardware="1x A10G")
    rec = a["recommendation"]
    assert rec["method"] == "full" and _row(a, "full")["fits"] is False
    (why,) = [r for r in rec["reasons"] if "the way it fits" in r]
    assert "more than 1x A10G" in why and "of the same base model fits 1x A10G" in why


def test_full_that_does_not_fit_on_a_cpu_is_hosted_when_the_data_may_leave(tmp_path, shared_datasets):
    a = _assess(tmp_path, shared_datasets, "full-cpu", base_model="Qwen/Qwen2.5-7B-Instruct", method="full",
                hardware="none", budget_usd=None)
    rec = a["recommendation"]
    assert _row(a, "full")["fits"] is False
    (why,) = [r for r in rec["reasons"] if "the way it fits" in r]
    assert "hosted full fine-tuning of this model (Together AI" in why
    assert not any("no affordable way" in b for b in rec["blockers"])


def test_no_affordable_way_is_a_blocker(tmp_path, shared_datasets):
    a = _assess(tmp_path, shared_datasets, "full-onprem", base_model="Qwen/Qwen2.5-72B-Instruct", method="full",
                hardware="1x T4", data_must_stay_on_prem=True, budget_usd=None)
    rec = a["recommendation"]
    assert rec["method"] == "full" and _row(a, "full")["fits"] is False and not _row(a, "full").get("suggest")
    (b,) = [b for b in rec["blockers"] if "no affordable way to fit it" in b]
    assert "the data must stay on premises" in b and "choose a smaller base model or more GPU memory" in b
    assert not any("the way it fits" in r for r in rec["reasons"])


def test_the_rules_own_verdict_fits_or_says_how(tmp_path, shared_datasets):
    """Whatever the rules pick on these constraints, a training verdict that does not fit comes with a way or
    a blocker."""
    for name, bm, hw, onprem in (("auto-7b-t4", "Qwen/Qwen2.5-7B-Instruct", "1x T4", False),
                                 ("auto-72b-a10g", "Qwen/Qwen2.5-72B-Instruct", "1x A10G", True),
                                 ("auto-7b-none", "Qwen/Qwen2.5-7B-Instruct", "none", False)):
        a = _assess(tmp_path, shared_datasets, name, base_model=bm, hardware=hw, data_must_stay_on_prem=onprem)
        rec = a["recommendation"]
        row = _row(a, rec["method"]) if rec["method"] in ("lora", "full", "rlhf") else None
        if row is not None and row["fits"] is False and rec.get("variant") != "qlora":
            assert (any("the way it fits" in r for r in rec["reasons"])
                    or any("no affordable way" in b for b in rec["blockers"])), (name, rec)


def test_a_full_fine_tuning_verdict_names_the_budget_and_hardware_that_make_it_affordable(tmp_path, shared_datasets):
    a = _assess(tmp_path, shared_datasets, "full-a100", base_model="Qwen/Qwen2.5-0.5B-Instruct", method="full",
                hardware="1x A100-80GB", budget_usd=300)
    rec, row = a["recommendation"], _row(a, "full")
    assert rec["method"] == "full" and row["fits"] is True
    (why,) = [r for r in rec["reasons"] if r.startswith("full fine-tuning is affordable here")]
    cost = "under $0.01" if row["cost_usd"] < 0.01 else f"about ${row['cost_usd']:,.2f}"
    assert f"{cost} on 1x A100-80GB" in why and "within the budget of $300" in why
    assert "fits 1x A100-80GB" in why
