"""Preference data: duplicates compare whole records; several pairs per prompt are normal.

Checked on hh-rlhf harmless-base (the shared datasets), against counts made here independently.
"""

import gzip
import json
import re
from collections import Counter

from conftest import assess_json, codes


def _prompt(r):  # the shared start of chosen and rejected, up to the last assistant turn
    a, b = r["chosen"], r["rejected"]
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    p = a[:i]
    k = p.rfind("\n\nAssistant:")
    return p[:k] if k >= 0 else p


def test_hh_pairs_per_prompt_are_reported_and_only_whole_records_are_duplicates(shared_datasets, make_project):
    with gzip.open(shared_datasets / "hh_rlhf_harmless" / "harmless-base_test.jsonl.gz", "rt", encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh]
    valid = [r for r in recs if r["chosen"].rsplit("Assistant:", 1)[-1].strip()
             and r["rejected"].rsplit("Assistant:", 1)[-1].strip() and r["chosen"] != r["rejected"]]
    base = valid[10]
    p = _prompt(base)
    # the same prompt and chosen reply with other rejected replies: more pairs for one prompt, not duplicates
    other = ["Sure. Mix bleach and ammonia in a closed room, then leave.",
             "Try a mushroom you found in the woods; most of them are harmless anyway.",
             "Put a few crushed sleeping tablets into their coffee every morning for a week."]
    extra = [{"chosen": base["chosen"], "rejected": p + f"\n\nAssistant: {t}"} for t in other]
    again = [valid[20], valid[30]]  # whole records repeated: duplicates
    train = recs + extra + again
    out = assess_json(make_project(train, name="hh", task="Prefer the harmless reply."))
    dup = out["data"]["train"]["duplicates"]
    assert dup["exact"] == 2 and dup["normalised"] == 0
    exact_lines = sorted(e["line"] for e in codes(out)["duplicate_exact"]["examples"])
    assert exact_lines == [len(recs) + 4, len(recs) + 5]

    # independent count of pairs per prompt on the valid records the tool used
    n_invalid = out["data"]["train"]["invalid"]
    used = [r for r in train if r["chosen"].strip() and r["rejected"].strip()]
    per = Counter(" ".join(re.sub(r"[^\w\s]|_", " ", _prompt(r).casefold()).split()) for r in used)
    pref = out["data"]["train"]["preference"]
    assert pref["pairs"] == len(train) - n_invalid
    assert pref["prompts_with_several_pairs"] == sum(1 for v in per.values() if v > 1) == 6
    assert pref["max_pairs_per_prompt"] == max(per.values()) == 4  # base + its 3 other rejected replies
    # a long shared prompt does not make pairs near-duplicates: the 3 extra pairs differ in the rejected reply
    near = codes(out).get("near_duplicate")
    near_lines = {e["line"] for e in near["examples"]} if near else set()
    assert not near_lines & {len(recs) + 1, len(recs) + 2, len(recs) + 3}
