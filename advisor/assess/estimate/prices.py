"""Prices from ``rubrics/prices.yaml``: GPU rental per hour and hosted fine-tuning per training token."""

from __future__ import annotations

import fnmatch
import statistics
from typing import Any

from advisor.assess.estimate.compute import sig
from advisor.hf import looks_like_path
from advisor.rubric import load_rubric


def prices_as_of() -> str | None:
    return load_rubric("prices").get("as_of")


def _gpu_prices(gpu: str) -> list[dict[str, Any]]:
    return [p for p in (load_rubric("prices")["gpu_hour"].get(gpu) or []) if p.get("usd") is not None]


def price_summary(gpu: str) -> dict[str, Any] | None:
    offers = _gpu_prices(gpu)
    if not offers:
        return None
    cheapest = min(offers, key=lambda p: float(p["usd"]))
    return {
        "gpu": gpu,
        "typical_usd_per_gpu_hour": round(statistics.median(float(p["usd"]) for p in offers), 4),
        "typical_is": f"median of {len(offers)} listed on-demand prices",
        "cheapest": {k: cheapest.get(k) for k in ("provider", "usd", "offering", "source", "approximate",
                                                   "as_of")},
        "listed": len(offers),
        "table_as_of": prices_as_of(),
    }


def hostable(offer: dict[str, Any], model_id: str | None) -> bool:
    """Whether a same-model offer's provider fine-tunes ``model_id`` (a hub id; rubrics/prices.yaml
    ``hostable``). A provider that tunes its own closed model (same_model false) takes any task."""
    if not offer.get("same_model"):
        return True
    if not model_id or looks_like_path(model_id):
        return False  # a local directory: no provider has it
    hosts = load_rubric("prices").get("hostable", {}).get(offer.get("hosts", ""), {})
    return any(fnmatch.fnmatch(model_id.casefold(), p.casefold()) for p in hosts.get("models", []))


def hosted_offers(method: str, n: int | None, train_tokens: float, dpo_tokens: float,
                  model_id: str | None = None) -> list[dict[str, Any]]:
    """The hosted fine-tuning offers for ``method``: same-model offers only for a base model the provider
    fine-tunes (by hub id and size bracket), closed-model offers for any."""
    offers = []
    size_b = None if n is None else n / 1e9
    for offer in load_rubric("prices")["hosted_finetuning"]:
        if method not in offer["methods"] or not hostable(offer, model_id):
            continue
        bracket = offer.get("params_b")
        if bracket is not None and (size_b is None or not (bracket[0] < size_b <= bracket[1])):
            continue
        usd = train_tokens / 1e6 * float(offer["usd_per_1m_tokens"])
        if method == "rlhf":
            usd += dpo_tokens / 1e6 * float(offer.get("dpo_usd_per_1m_tokens", offer["usd_per_1m_tokens"]))
        offers.append({
            "provider": offer["provider"],
            "offering": offer["offering"],
            "usd_per_1m_tokens": offer["usd_per_1m_tokens"],
            **({"dpo_usd_per_1m_tokens": offer["dpo_usd_per_1m_tokens"]}
               if "dpo_usd_per_1m_tokens" in offer else {}),
            "usd": sig(usd),
            "same_model": bool(offer.get("same_model", False)),
            "approximate": bool(offer.get("approximate", False)),
            "as_of": offer.get("as_of"),
            "source": offer["source"],
        })
    return sorted(offers, key=lambda o: o["usd"])

