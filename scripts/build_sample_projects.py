#!/usr/bin/env python3
"""Build ``sample_projects/`` from the real public datasets in ``../shared/datasets``.

    python scripts/build_sample_projects.py [DATASETS_DIR] [--out sample_projects] [--only NAME ...]

Reproducible: no clock, no process-dependent hashing and no global random state is used; every
selection is a deterministic order of the source records (SHA-256 of a fixed seed, a salt and the
record's position in its source file), so running it twice gives byte-identical files.
Standard library only.

Each sample project keeps the messiness of its source on purpose (leakage, duplicates, empty
replies, imbalance ...), so that ``advise assess`` has something real to find. The known problems
of each source are forced into the sample rather than left to chance; each project's README.md
states what it keeps, with the counts measured on the written files.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import re
import sys
import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

SEED = 20240611
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
DEFAULT_OUT = REPO_ROOT / "sample_projects"
QWEN = "Qwen/Qwen2.5-0.5B-Instruct"
GENERATOR = "scripts/build_sample_projects.py"

SOURCES = {
    "banking77": {
        "title": "BANKING77",
        "repo": "PolyAI-LDN/task-specific-datasets",
        "commit": "57ec275d",
        "paths": "banking_data/train.csv, banking_data/test.csv, banking_data/categories.json",
        "licence": "Creative Commons Attribution 4.0 International (CC BY 4.0)",
        "licence_url": "https://creativecommons.org/licenses/by/4.0/",
        "cite": "Casanueva et al., Efficient Intent Detection with Dual Sentence Encoders (NLP4ConvAI 2020)",
    },
    "covid_qa": {
        "title": "COVID-QA",
        "repo": "deepset-ai/COVID-QA",
        "commit": "fb2eb5e2",
        "paths": "data/question-answering/200423_covidQA.json, data/faqs/faq_covidbert.csv",
        "licence": "Apache License 2.0 (the papers quoted in the contexts are CC BY, see each paper's URL)",
        "licence_url": "https://www.apache.org/licenses/LICENSE-2.0",
        "cite": "Möller et al., COVID-QA: A Question Answering Dataset for COVID-19 (2020)",
    },
    "hh_rlhf_harmless": {
        "title": "Anthropic HH-RLHF (harmless-base)",
        "repo": "anthropics/hh-rlhf",
        "commit": "354e5c3c",
        "paths": "harmless-base/test.jsonl.gz",
        "licence": "MIT License",
        "licence_url": "https://opensource.org/licenses/MIT",
        "cite": "Bai et al., Training a Helpful and Harmless Assistant with RLHF (2022)",
    },
    "e2e_nlg": {
        "title": "E2E NLG Challenge dataset",
        "repo": "tuetschek/e2e-dataset",
        "commit": "ab0d967d",
        "paths": "devset.csv, testset_w_refs.csv",
        "licence": "Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0)",
        "licence_url": "https://creativecommons.org/licenses/by-sa/4.0/",
        "cite": "Novikova, Dušek and Rieser, The E2E Dataset: New Challenges For End-to-End Generation "
        "(SIGDIAL 2017)",
    },
    "scitldr": {
        "title": "SciTLDR",
        "repo": "allenai/scitldr",
        "commit": "5ccad9c0",
        "paths": "SciTLDR-Data/SciTLDR-A/train.jsonl, SciTLDR-Data/SciTLDR-A/dev.jsonl",
        "licence": "Apache License 2.0",
        "licence_url": "https://www.apache.org/licenses/LICENSE-2.0",
        "cite": "Cachola et al., TLDR: Extreme Summarization of Scientific Documents (Findings of EMNLP 2020)",
    },
    "openai_toy_chat": {
        "title": "OpenAI Cookbook toy chat fine-tuning examples",
        "repo": "openai/openai-cookbook",
        "commit": "9172b0ff",
        "paths": "examples/data/toy_chat_fine_tuning.jsonl",
        "licence": "MIT License",
        "licence_url": "https://github.com/openai/openai-cookbook/blob/main/LICENSE",
        "cite": "OpenAI Cookbook, 'Data preparation and analysis for chat model fine-tuning'",
    },
}


# -- deterministic helpers ---------------------------------------------------------------------

def _rank(salt: str, key: str) -> str:
    return hashlib.sha256(f"{SEED}|{salt}|{key}".encode()).hexdigest()


def ordered(items: Iterable, salt: str, key: Callable[[object], str]) -> list:
    """The items in a fixed pseudo-random order (independent of Python version and PYTHONHASHSEED)."""
    return sorted(items, key=lambda it: _rank(salt, key(it)))


def jsonl(records: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def text(s: str) -> bytes:
    return s.encode("utf-8")


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def slug(s: str, limit: int = 60) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")
    return s[:limit].rstrip("-") or "untitled"


# -- project.yaml ------------------------------------------------------------------------------

class Raw(str):
    """A YAML value written as is (numbers such as 2.0e-4 that PyYAML must read as floats)."""


_PLAIN = re.compile(r"[A-Za-z_./][A-Za-z0-9_./-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(v: object) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    s = str(v)
    if _PLAIN.fullmatch(s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s, ensure_ascii=False)


def project_yaml(*, name: str, comment: str, task: str, base_model: str, data: dict, constraints: dict,
                 gates: dict | None, train: dict, method: str = "auto") -> bytes:
    out = [f"# {line}".rstrip() for line in comment.strip().splitlines()]
    out.append(f"name: {_scalar(name)}")
    out.append("task: >")
    out += ["  " + line for line in textwrap.wrap(" ".join(task.split()), 96)]
    out.append(f"base_model: {_scalar(base_model)}")
    out.append("data:")
    out += [f"  {k}: {_scalar(v)}" for k, v in data.items()]
    out.append("constraints:")
    out += [f"  {k}: {_scalar(v)}" for k, v in constraints.items()]
    out.append(f"method: {method}")
    if gates:
        out.append("eval:")
        out.append("  gates:")
        out += [f"    {k}: {_scalar(v)}" for k, v in gates.items()]
    out.append("train:")
    out += [f"  {k}: {_scalar(v)}" for k, v in train.items()]
    return text("\n".join(out) + "\n")


def notice(source_key: str, changes: list[str], extra: str = "", paths: str | None = None) -> bytes:
    s = SOURCES[source_key]
    lines = [
        "NOTICE",
        "",
        f"This sample project contains data derived from {s['title']}.",
        "",
        f"  Source repository: https://github.com/{s['repo']}",
        f"  Commit:            {s['commit']}",
        f"  Source file(s):    {paths or s['paths']}",
        f"  Licence:           {s['licence']}",
        f"                     {s['licence_url']}",
        f"  Reference:         {s['cite']}",
        "",
        f"Changes made (by {GENERATOR}, which regenerates these files byte for byte):",
    ]
    for c in changes:
        lines += textwrap.wrap(c, 96, initial_indent="  - ", subsequent_indent="    ")
    if extra:
        lines += [""] + textwrap.wrap(extra, 100)
    lines += ["", "The licence of the source applies to these derived files as well."]
    return text("\n".join(lines) + "\n")


def licence_copy(ds: Path, folder: str) -> dict[str, bytes]:
    p = ds / folder / "LICENSE"
    return {"LICENSE": p.read_bytes()} if p.is_file() else {}


# What `advise assess` says about each project, re-checked by hand (issue 12): the verdict and why.
VERDICTS = {
    "banking77-intents": """\
        **LoRA**, confidence about 0.95. 1,498 examples of a closed 77-label set with no knowledge to
        look up (knowledge score 0.00): a fine-tuned small model learns the labels and the answer
        format. Full fine-tuning is the runner-up only at 10,000+ examples. Warnings, not blockers:
        11 of 308 eval records (3.6%) reappear in train after normalisation, within the 5.6%
        half-width of the metric's 95% interval on 308 records (remove them from train, the eval file
        stays fixed); 9 normalised duplicates; 4 rare labels.""",
    "covid-qa-docs": """\
        **RAG**, confidence about 0.95. The answers are spans of the papers in `docs/` (knowledge
        score 0.96), the facts change monthly and answers must cite sources: retrieval, not
        fine-tuning. 233 examples sit near the 200-example floor, which adds to the case against
        training. Warning: 1 eval record reappears in train (keep it out of the few-shot pool).""",
    "e2e-restaurants": """\
        **LoRA**, confidence about 0.9. 2,003 examples of a data-to-text transformation with a fixed
        style (knowledge score 0.33): a behaviour to fine-tune. E2E gives several references per
        meaning representation, so most inputs recur with another output (`conflicting_outputs`):
        expected for this dataset, worth knowing when reading the loss. 66 exact duplicates; 1 eval
        record shares content with train (a warning).""",
    "hh-harmless-prefs": """\
        **RLHF (DPO)**, confidence about 0.87. 1,196 preference pairs (chosen/rejected), above the
        ~500-pair working minimum: DPO learns from the rejected replies too, which supervised LoRA on
        the chosen ones ignores (LoRA is the runner-up). The findings to fix: 4 empty chosen replies,
        25 replies with embedded `Human:`/`Assistant:` turns; 4 eval pairs overlap train (a warning).""",
    "policy-faq-rag": """\
        **RAG**, confidence about 0.92. The answers come from the FAQ documents (knowledge score
        0.96), change weekly and must be cited; 60 examples are far too few to fine-tune. Prompting
        is the runner-up because the requirements change often.""",
    "scitldr-summaries": """\
        **LoRA**, confidence about 0.92. 600 one-sentence summaries: a style and length behaviour with
        the content in the input (knowledge score 0.12). 1 eval record reappears in train (a
        warning).""",
    "ticket-routing-tiny": """\
        **LoRA**, confidence about 0.93, trained on this CPU. 396 clean examples of a 5-label
        routing task; with `hardware: none` the tiny model trains here in under a minute (the cost
        table shows CPU time, $0), and the data stay on premises. The labels the task names are the
        labels the outputs use (a label in another case or inside other text would be a
        `label_form_mismatch` finding). Without `.advise/models/tiny` built, `assess` reports a
        `base_model_missing` finding and estimates tokens from characters.""",
    "toy-chat": """\
        **Prompting**, confidence about 0.88. Five examples are far below the 200-example floor of
        any fine-tuning; with no documents RAG has nothing to retrieve. No blocker, since nothing is
        trained, but one example has no user message and one reply (26,000 characters) runs far
        past `train.max_length`.""",
}


def readme(title: str, body: str) -> bytes:
    verdict = VERDICTS.get(title)
    tail = ("\n## What `advise assess` says\n\n" + textwrap.dedent(verdict).strip() + "\n") if verdict else ""
    return text(f"# {title}\n\n" + textwrap.dedent(body).strip() + "\n" + tail)


def _range(counter: Counter) -> str:
    return f"{min(counter.values())}..{max(counter.values())}"


# -- 1. banking77-intents ----------------------------------------------------------------------

def norm_banking(s: str) -> str:
    """Lower case, no punctuation, single spaces: the normalisation of the datasets README."""
    return " ".join(re.sub(r"[^\w\s]", "", s.lower()).split())


BANKING_SYSTEM = (
    "You route customer messages for a digital bank to the right support queue. Reply with the "
    "queue's intent label exactly as written (for example card_arrival) and nothing else."
)


def _banking_rows(ds: Path) -> tuple[list[dict], list[dict]]:
    train = read_csv(ds / "banking77" / "train.csv")
    test = read_csv(ds / "banking77" / "test.csv")
    for split, rows in (("train", train), ("test", test)):
        for i, r in enumerate(rows):
            r["_key"] = f"{split}:{i}"
    return train, test


def _stratified(rows: list[dict], frac: float, forced: set[str], salt: str, minimum: int) -> list[dict]:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[r["category"]].append(r)
    chosen = []
    for label in sorted(by_label):
        pool = by_label[label]
        quota = max(minimum, round(len(pool) * frac))
        must = [r for r in pool if r["_key"] in forced]
        rest = ordered([r for r in pool if r["_key"] not in forced], salt, lambda r: r["_key"])
        chosen += must + rest[: max(0, quota - len(must))]
    return chosen


def banking_chat(r: dict, system: str, strip: bool = False) -> dict:
    user = r["text"].strip() if strip else r["text"]
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": r["category"]}]}


def build_banking77(ds: Path) -> dict[str, bytes]:
    train, test = _banking_rows(ds)
    labels = json.loads((ds / "banking77" / "categories.json").read_text(encoding="utf-8"))
    train_by_norm: dict[str, list[dict]] = defaultdict(list)
    for r in train:
        train_by_norm[norm_banking(r["text"])].append(r)
    # the known messiness, forced in: test messages equal to train messages after normalisation
    # (both sides), and the near-duplicate groups inside train
    leak_test = [r for r in test if norm_banking(r["text"]) in train_by_norm]
    forced = {r["_key"] for r in leak_test}
    forced |= {t["_key"] for r in leak_test for t in train_by_norm[norm_banking(r["text"])]}
    forced |= {t["_key"] for group in train_by_norm.values() if len(group) > 1 for t in group}

    tr = _stratified(train, 1500 / len(train), forced, "banking77-train", 2)
    ev = _stratified(test, 300 / len(test), forced, "banking77-eval", 2)
    tr = ordered(tr, "banking77-train-order", lambda r: r["_key"])
    ev = ordered(ev, "banking77-eval-order", lambda r: r["_key"])

    # measured on what is written
    tr_counts = Counter(r["category"] for r in tr)
    tr_norm = Counter(norm_banking(r["text"]) for r in tr)
    near_dup_groups = sum(1 for v in tr_norm.values() if v > 1)
    exact_dup = len(tr) - len({r["text"] for r in tr})
    leaked = sum(1 for r in ev if norm_banking(r["text"]) in tr_norm)
    ws = sum(1 for r in tr + ev if r["text"] != r["text"].strip())
    qlabel = [x for x in labels if "?" in x]
    assert len(tr_counts) == len(labels) == 77 and set(tr_counts) == set(labels)

    files = {
        "project.yaml": project_yaml(
            name="banking77-intents",
            comment=f"Generated by {GENERATOR} from BANKING77 (CC BY 4.0); see README.md and NOTICE.",
            task="Route each customer message to one of the bank's 77 support queues (the BANKING77 intents). "
            "Answer with the queue's intent label only, exactly as written, e.g. card_arrival.",
            base_model=QWEN,
            data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "format": "chat"},
            constraints={"budget_usd": 300, "hardware": "1x A10G", "data_must_stay_on_prem": False,
                         "facts_change": "never", "needs_citations": False, "requirements_change": "rarely"},
            gates={"accuracy": ">= 0.85"},
            train={"epochs": 3, "learning_rate": Raw("2.0e-4"), "batch_size": 16, "max_length": 256,
                   "lora_r": 16, "seed": 42},
        ),
        "data/train.jsonl": jsonl(banking_chat(r, BANKING_SYSTEM) for r in tr),
        "data/eval.jsonl": jsonl(banking_chat(r, BANKING_SYSTEM) for r in ev),
        "NOTICE": notice("banking77", [
            f"Train: {len(tr)} of the {len(train)} rows of train.csv, stratified by label (about 15% of each "
            "label, at least 2), so the original imbalance is kept; eval: "
            f"{len(ev)} of the {len(test)} rows of test.csv (about 10% of each label).",
            "Forced into the sample: every test message that equals a train message after normalising "
            "case, punctuation and spaces (with its train twin), and every near-duplicate group of train.",
            "Each row became a chat record: a fixed system message, the customer text verbatim as the "
            "user message (leading/trailing newlines kept) and the label as the assistant message.",
            "Records are written in a seeded order. Nothing was cleaned or corrected.",
        ]),
        "README.md": readme("banking77-intents", f"""
            Intent classification for banking customer support: the model reads one customer message and
            answers with one of 77 queue labels. Demonstrates a **narrow, stable classification task with
            plenty of labelled data** -- the classic case where a small fine-tuned model (LoRA) beats
            prompting a general model, at low cost.

            - `data/train.jsonl`: {len(tr)} chat examples, all 77 labels ({_range(tr_counts)} per label).
            - `data/eval.jsonl`: {len(ev)} chat examples from the original *test* split.
            - Format: system = routing instruction, user = customer message, assistant = label.

            Real messiness kept on purpose (measured on these files):

            - class imbalance: {_range(tr_counts)} train examples per label (source: 35..187);
            - {leaked} eval messages equal a train message after normalising case, punctuation and spaces
              (train/eval leakage; all {len(leak_test)} such test messages of the source are forced in);
            - {near_dup_groups} groups of near-duplicates inside train ({exact_dup} exact duplicates);
            - {ws} messages with leading or trailing newlines/spaces, kept verbatim;
            - a label with a question mark: {", ".join(qlabel)}.

            The 77 labels: {", ".join(labels)}.

            Source: BANKING77 (PolyAI), CC BY 4.0 -- see NOTICE. Regenerate with
            `python {GENERATOR}`.
            """),
    }
    files.update(licence_copy(ds, "banking77"))
    return files


# -- 7. ticket-routing-tiny --------------------------------------------------------------------

TINY_LABELS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "cash_withdrawal_charge"]
TINY_SYSTEM = "Route the banking message. Reply with its label only."
TINY_MAX_CHARS = 110


def _norm(text: str) -> str:
    """advisor.data.textnorm.normalise, restated with the standard library only."""
    import string

    table = str.maketrans({c: " " for c in string.punctuation + "“”‘’«»–—…¿¡"})
    return " ".join(text.casefold().translate(table).split())


def build_ticket_routing_tiny(ds: Path) -> dict[str, bytes]:
    train, test = _banking_rows(ds)

    def pick(rows: list[dict], per_label: int, salt: str) -> list[dict]:
        out = []
        for label in TINY_LABELS:
            pool = [r for r in rows if r["category"] == label and len(r["text"].strip()) <= TINY_MAX_CHARS]
            out += ordered(pool, salt, lambda r: r["_key"])[:per_label]
        return ordered(out, salt + "-order", lambda r: r["_key"])

    tr = pick(train, 80, "tiny-train")
    # the demo must not start with a leakage blocker: no eval message may equal a train message
    # after normalising case, punctuation and spacing (as `advise assess` checks)
    seen = {_norm(r["text"]) for r in train}
    ev = pick([r for r in test if _norm(r["text"]) not in seen], 20, "tiny-eval")
    tr_counts = Counter(r["category"] for r in tr)
    ev_counts = Counter(r["category"] for r in ev)
    files = {
        "project.yaml": project_yaml(
            name="ticket-routing-tiny",
            comment=f"Generated by {GENERATOR} from BANKING77 (CC BY 4.0); see README.md and NOTICE.\n"
            "base_model is a local directory relative to this project; build it first with\n"
            "  advise models tiny sample_projects/ticket-routing-tiny/.advise/models/tiny",
            task="Route each customer message to one of five support queues (card_arrival, lost_or_stolen_card, "
            "exchange_rate, top_up_failed, cash_withdrawal_charge). Answer with the queue label only.",
            base_model=".advise/models/tiny",
            data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "format": "chat"},
            constraints={"budget_usd": 0, "hardware": "none", "data_must_stay_on_prem": True,
                         "facts_change": "never", "needs_citations": False, "requirements_change": "rarely"},
            gates={"accuracy": ">= 0.6"},
            train={"max_steps": 200, "learning_rate": Raw("1.0e-3"), "batch_size": 16, "max_length": 128,
                   "seed": 42},
        ),
        "data/train.jsonl": jsonl(banking_chat(r, TINY_SYSTEM, strip=True) for r in tr),
        "data/eval.jsonl": jsonl(banking_chat(r, TINY_SYSTEM, strip=True) for r in ev),
        "NOTICE": notice("banking77", [
            f"Only the 5 intents {', '.join(TINY_LABELS)}; only messages of at most {TINY_MAX_CHARS} "
            "characters (so that a 128-token window holds the whole example).",
            f"Train: {len(tr)} rows of train.csv (up to 80 per label, seeded); eval: {len(ev)} rows of "
            "test.csv (20 per label, seeded), leaving out test messages equal to a train message after "
            "normalising case, punctuation and spacing.",
            "Each row became a chat record: a short fixed system message, the customer text with leading "
            "and trailing whitespace removed as the user message, and the label as the assistant message.",
        ], paths="banking_data/train.csv, banking_data/test.csv"),
        "README.md": readme("ticket-routing-tiny", f"""
            The CPU demo: five well-separated BANKING77 intents, small enough that a tiny (about 1-2M
            parameter) model fine-tuned for about 200 steps on a laptop CPU clearly beats its untrained
            base. Demonstrates the whole `assess -> eval -> train -> eval -> gate` loop with no GPU and
            no download.

            - `data/train.jsonl`: {len(tr)} chat examples ({", ".join(f"{k} {v}" for k, v in sorted(tr_counts.items()))}).
            - `data/eval.jsonl`: {len(ev)} chat examples from the original test split
              ({", ".join(f"{k} {v}" for k, v in sorted(ev_counts.items()))}).
            - Format: short system message, user = customer message (stripped), assistant = label only.
            - `base_model: .advise/models/tiny` is a local directory relative to this project. Build it
              first (the demo does this for you):

                  advise models tiny sample_projects/ticket-routing-tiny/.advise/models/tiny

            - `constraints.hardware: none`, `budget_usd: 0`; `train:` max_steps 200, batch_size 16,
              learning_rate 1.0e-3, max_length 128. Gate: accuracy >= 0.6 (chance is 0.2).

            Unlike `banking77-intents` this subset is deliberately clean (balanced, short messages,
            whitespace stripped) so that the demo's result is about training, not about data problems.

            Source: BANKING77 (PolyAI), CC BY 4.0 -- see NOTICE.
            """),
    }
    files.update(licence_copy(ds, "banking77"))
    return files


# -- 2. covid-qa-docs --------------------------------------------------------------------------

COVID_DOCS = 20
COVID_KEEP_CHARS = 25000
COVID_SYSTEM = (
    "You answer questions about COVID-19 and coronavirus research using the papers in the document "
    "collection. Answer with the passage of the paper that answers the question."
)
TRUNC_MARK = "\n\n[Truncated for this sample project; the original paper continues.]\n"


def _answer_end(context: str, text_: str, start: int) -> int:
    if context[start:start + len(text_)] == text_:
        return start + len(text_)
    occ, i = [], context.find(text_)
    while i >= 0:
        occ.append(i)
        i = context.find(text_, i + 1)
    if not occ:
        return -1
    return min(occ, key=lambda o: abs(o - start)) + len(text_)


def build_covid_qa(ds: Path) -> dict[str, bytes]:
    raw = json.loads((ds / "covid_qa" / "200423_covidQA.json").read_text(encoding="utf-8"))
    papers = [para for p in raw["data"] for para in p["paragraphs"]]
    all_q = Counter(q["question"] for para in papers for q in para["qas"])
    # forced in: the three shortest papers that hold a question asked more than once
    with_repeats = sorted((len(p["context"]), p["document_id"]) for p in papers
                          if any(all_q[q["question"]] > 1 for q in p["qas"]))
    forced = {d for _, d in with_repeats[:3]}
    rest = ordered([p for p in papers if p["document_id"] not in forced], "covid-docs",
                   lambda p: str(p["document_id"]))
    chosen = [p for p in papers if p["document_id"] in forced] + rest[: COVID_DOCS - len(forced)]
    chosen.sort(key=lambda p: p["document_id"])

    files: dict[str, bytes] = {}
    qa_rows = []
    truncated = 0
    bad_offsets = 0
    for para in chosen:
        ctx = para["context"]
        title = ctx.strip().splitlines()[0]
        name = f"docs/{para['document_id']}-{slug(title)}.txt"
        ends = [_answer_end(ctx, q["answers"][0]["text"], q["answers"][0]["answer_start"]) for q in para["qas"]]
        assert min(ends) >= 0, para["document_id"]
        cut = max(COVID_KEEP_CHARS, max(ends))
        if cut < len(ctx):
            nl = ctx.find("\n", cut)
            cut = len(ctx) if nl < 0 else nl
        body = ctx[:cut] + (TRUNC_MARK if cut < len(ctx) else "")
        truncated += cut < len(ctx)
        files[name] = text(body)
        for q in para["qas"]:
            a = q["answers"][0]
            if ctx[a["answer_start"]:a["answer_start"] + len(a["text"])] != a["text"]:
                bad_offsets += 1
            qa_rows.append({"id": str(q["id"]), "question": q["question"], "answer": a["text"], "source": name,
                            "answer_start": a["answer_start"]})

    def rec(r: dict) -> dict:
        return {"messages": [{"role": "system", "content": COVID_SYSTEM},
                             {"role": "user", "content": r["question"]},
                             {"role": "assistant", "content": r["answer"]}],
                "id": r["id"], "source": r["source"],
                "metadata": {"answer_start": r["answer_start"]}}

    qa_rows = ordered(qa_rows, "covid-qa", lambda r: r["id"])
    n_eval = round(len(qa_rows) * 0.2)
    ev, tr = qa_rows[:n_eval], qa_rows[n_eval:]
    files["data/train.jsonl"] = jsonl(rec(r) for r in tr)
    files["data/eval.jsonl"] = jsonl(rec(r) for r in ev)

    q_counts = Counter(r["question"] for r in qa_rows)
    repeated = {q for q, n in q_counts.items() if n > 1}
    rep_diff = {q for q in repeated if len({r["answer"] for r in qa_rows if r["question"] == q}) > 1}
    straddle = {r["question"] for r in tr} & {r["question"] for r in ev}
    ws_answers = sum(1 for r in qa_rows if r["answer"] != r["answer"].strip())
    doc_chars = sorted(len(files[k].decode("utf-8")) for k in files if k.startswith("docs/"))

    files["project.yaml"] = project_yaml(
        name="covid-qa-docs",
        comment=f"Generated by {GENERATOR} from COVID-QA (Apache-2.0; papers CC BY); see README.md and NOTICE.",
        task="Answer researchers' questions about COVID-19 and coronavirus research from the papers in docs/. "
        "Quote the passage that answers the question and name the paper it comes from.",
        base_model=QWEN,
        data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "docs": "docs/", "format": "chat"},
        constraints={"budget_usd": 500, "hardware": "1x A10G", "data_must_stay_on_prem": False,
                     "facts_change": "monthly", "needs_citations": True, "requirements_change": "rarely"},
        gates=None,
        train={"epochs": 2, "learning_rate": Raw("2.0e-4"), "batch_size": 8, "max_length": 512, "lora_r": 16,
               "seed": 42},
    )
    files["NOTICE"] = notice("covid_qa", [
        f"{len(chosen)} of the {len(papers)} papers of 200423_covidQA.json (the 3 shortest papers with a "
        "repeated question, the rest seeded); each paper's `context` is written verbatim to docs/<document_id>-"
        f"<title>.txt, cut at a line end after {COVID_KEEP_CHARS} characters (never before the end of the last "
        f"answer of that paper) with a marker line added at the cut ({truncated} papers cut).",
        "Every question of those papers became a chat record: a fixed system message, the question as the "
        "user message and the answer text verbatim as the assistant message, plus the keys `id` (question "
        "id), `source` (the docs/ file) and `metadata.answer_start` (the original offset, kept as is even where "
        "it is wrong). Questions were split 80/20 into train/eval by a seeded order.",
        "Nothing was cleaned or corrected.",
    ], paths="data/question-answering/200423_covidQA.json", extra="The papers quoted in the contexts were published under CC BY licences; each file starts with "
             "the paper's title, URL, authors and date as in the source.")
    files["README.md"] = readme("covid-qa-docs", f"""
        Knowledge-heavy question answering over research papers: the answers live in the documents
        (`docs/`), the facts change as new papers appear, and users need citations. Demonstrates a task
        where **retrieval (RAG) is the right tool** and fine-tuning the facts into the weights is not.

        - `docs/`: {len(chosen)} COVID-19 / coronavirus papers as .txt (title, URL, authors, date, full
          text), {doc_chars[0]}..{doc_chars[-1]} characters each; {truncated} long papers are cut after
          about {COVID_KEEP_CHARS} characters, always after the last answer they hold.
        - `data/train.jsonl`: {len(tr)} and `data/eval.jsonl`: {len(ev)} chat examples (system, question,
          answer passage). Extra keys: `id`, `source` (the docs/ file that holds the answer),
          `metadata.answer_start` (the source's character offset of the answer in that file).
        - `constraints`: facts_change monthly, needs_citations true.

        Real messiness kept on purpose (measured on these files):

        - {bad_offsets} of {len(qa_rows)} `answer_start` offsets do not point at the answer (source: 234 of 1,380);
        - {len(repeated)} questions asked more than once, {len(rep_diff)} of them with different answers
          ({len(straddle)} of them in both train and eval);
        - {ws_answers} answers with leading/trailing whitespace, and answers that are fragments or whole
          paragraphs, as annotated.

        Source: COVID-QA (deepset), Apache-2.0; papers CC BY -- see NOTICE.
        """)
    files.update(licence_copy(ds, "covid_qa"))
    return files


# -- 8. policy-faq-rag -------------------------------------------------------------------------

FAQ_DOC_NAMES = {
    "Center for Disease Control and Prevention (CDC)": "cdc",
    "European Centre for Disease Prevention and Control (ECDC)": "ecdc",
    "Bundesministerium für Gesundheit": "german-federal-ministry-of-health",
    "World Health Organization (WHO)": "who",
    "California Department of Public Health": "california-department-of-public-health",
    "Washington State Department of Health": "washington-state-department-of-health",
}
FAQ_SYSTEM = (
    "You answer the public's questions about COVID-19 from the official health-authority FAQs. Answer "
    "with the relevant sentence of the FAQ and say which authority it comes from."
)
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")


def _first_sentences(answer: str, min_chars: int = 60) -> str:
    """The first sentence of an answer (two if the first is short), as a verbatim slice of it."""
    a = answer.strip()
    start = answer.index(a)
    ends = [m.start() for m in _SENT_END.finditer(a)] + [len(a)]
    end = ends[0]
    if end < min_chars and len(ends) > 1:
        end = ends[1]
    return answer[start:start + end].strip()


def build_policy_faq(ds: Path) -> dict[str, bytes]:
    rows = read_csv(ds / "covid_qa" / "faq_covidbert.csv")
    for i, r in enumerate(rows):
        r["_key"] = f"faq:{i}"
    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_source[r["source"]].append(r)
    files: dict[str, bytes] = {}
    doc_of: dict[str, str] = {}
    for source in sorted(by_source):
        name = f"docs/{FAQ_DOC_NAMES.get(source) or slug(source)}.md"
        parts = [f"# COVID-19 FAQ: {source}\n"]
        for r in by_source[source]:
            doc_of[r["_key"]] = name
            meta = ", ".join(x for x in (r["name"].strip(), r["link"].strip(),
                                         f"last updated {r['last_update']}" if r["last_update"] else "") if x)
            parts.append(f"## {r['question'].strip()}\n\n{r['answer'].strip()}\n\nSource: {meta}\n")
        files[name] = text("\n".join(parts))

    usable = [r for r in rows if len(_first_sentences(r["answer"])) >= 20]
    picked = ordered(usable, "faq-examples", lambda r: r["_key"])[:100]

    def rec(r: dict) -> dict:
        answer = _first_sentences(r["answer"])
        assert answer in files[doc_of[r["_key"]]].decode("utf-8")
        return {"messages": [{"role": "system", "content": FAQ_SYSTEM},
                             {"role": "user", "content": r["question"].strip()},
                             {"role": "assistant", "content": answer}],
                "source": doc_of[r["_key"]]}

    tr, ev = picked[:60], picked[60:]
    files["data/train.jsonl"] = jsonl(rec(r) for r in tr)
    files["data/eval.jsonl"] = jsonl(rec(r) for r in ev)
    per_doc = Counter(doc_of[r["_key"]] for r in rows)
    dup_q = Counter(r["question"].strip() for r in picked)
    external_icon = sum("external icon" in r["answer"] for r in rows)

    files["project.yaml"] = project_yaml(
        name="policy-faq-rag",
        comment=f"Generated by {GENERATOR} from COVID-QA's FAQ file (Apache-2.0); see README.md and NOTICE.",
        task="Answer the public's questions about COVID-19 with the current guidance of the health authorities "
        "in docs/. Quote the relevant FAQ sentence and cite its source. The guidance is revised every week "
        "and the list of questions we must cover keeps changing.",
        base_model=QWEN,
        data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "docs": "docs/", "format": "chat"},
        constraints={"budget_usd": 200, "hardware": "1x A10G", "data_must_stay_on_prem": False,
                     "facts_change": "weekly", "needs_citations": True, "requirements_change": "often"},
        gates=None,
        train={"epochs": 3, "learning_rate": Raw("2.0e-4"), "batch_size": 8, "max_length": 512, "lora_r": 16,
               "seed": 42},
    )
    files["NOTICE"] = notice("covid_qa", [
        f"All {len(rows)} rows of faq_covidbert.csv were grouped by their `source` column into "
        f"{len(by_source)} Markdown files in docs/ (one '## question' section per row: the plain-text "
        "`answer`, then the page name, link and last-update date); `answer_html` was dropped.",
        f"100 rows (seeded) became chat examples, {len(tr)} train and {len(ev)} eval: a fixed system message, "
        "the FAQ question as the user message and the first sentence of the answer (two when the first is "
        "shorter than 60 characters), verbatim, as the assistant message, plus a `source` key naming the docs/ "
        "file.",
        "Nothing else was changed; scraping artefacts such as 'external icon' are kept.",
    ], paths="data/faqs/faq_covidbert.csv")
    files["README.md"] = readme("policy-faq-rag", f"""
        Answering the public's COVID-19 questions from official FAQs that change every week. The
        answers are sentences of the documents in `docs/`, users need citations and the task itself
        keeps changing -- so the right answer is **retrieval plus prompting (RAG), not training**:
        anything trained into the weights would be out of date next week.

        - `docs/`: {len(by_source)} Markdown files, one per health authority
          ({", ".join(f"{k[5:]} {v}" for k, v in sorted(per_doc.items()))} FAQ entries).
        - `data/train.jsonl`: {len(tr)} and `data/eval.jsonl`: {len(ev)} chat examples; each assistant
          answer is a verbatim sentence of the file named by the record's extra key `source`.
        - `constraints`: facts_change weekly, needs_citations true, requirements_change often.

        Real messiness kept: {sum(v - 1 for v in dup_q.values() if v > 1)} repeated question(s) among the
        examples, {external_icon} FAQ answers with the scraping artefact "external icon", answers of very
        different lengths, and guidance dated March-April 2020.

        Source: COVID-QA (deepset), data/faqs/faq_covidbert.csv, Apache-2.0 -- see NOTICE.
        """)
    files.update(licence_copy(ds, "covid_qa"))
    return files


# -- 3. hh-harmless-prefs ----------------------------------------------------------------------

ASSISTANT_MARK = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt transcript, chosen reply, rejected reply): the longest common prefix of the two
    transcripts, cut at the last "\\n\\nAssistant:" inside it."""
    n, limit = 0, min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen[:n].rfind(ASSISTANT_MARK)
    if cut < 0:
        raise ValueError("no assistant turn in the shared prefix")
    end = cut + len(ASSISTANT_MARK)
    return chosen[:cut], chosen[end:].strip(), rejected[end:].strip()


def transcript_messages(transcript: str) -> list[dict]:
    parts = _TURN.split(transcript)
    if parts[0].strip():
        raise ValueError("text before the first turn")
    return [{"role": "user" if role == "Human" else "assistant", "content": content.strip()}
            for role, content in zip(parts[1::2], parts[2::2], strict=True)]


def build_hh(ds: Path) -> dict[str, bytes]:
    rows = read_jsonl(ds / "hh_rlhf_harmless" / "harmless-base_test.jsonl.gz")
    recs = []
    for i, r in enumerate(rows):
        prompt, ch, rj = split_pair(r["chosen"], r["rejected"])
        naive = r["chosen"][: r["chosen"].rfind(ASSISTANT_MARK)]
        recs.append({"_key": f"hh:{i}", "_prompt": prompt, "_naive_wrong": naive != prompt,
                     "prompt": transcript_messages(prompt), "chosen": ch, "rejected": rj})
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by_prompt[r["_prompt"]].append(r)
    forced = [r for r in recs if not r["chosen"] or r["_naive_wrong"]
              or len(by_prompt[r["_prompt"]]) > 1]
    forced_keys = {r["_key"] for r in forced}
    rest = ordered([r for r in recs if r["_key"] not in forced_keys], "hh", lambda r: r["_key"])
    tr = ordered(forced + rest[: 1200 - len(forced)], "hh-train-order", lambda r: r["_key"])
    ev = rest[1200 - len(forced): 1200 - len(forced) + 200]

    def out(r: dict) -> dict:
        return {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}

    def markers(r: dict) -> bool:
        return any(m in r[k] for k in ("chosen", "rejected") for m in ("Human:", "Assistant:"))

    empty = sum(1 for r in tr + ev if not r["chosen"])
    tr_prompts = Counter(r["_prompt"] for r in tr)
    dup = sum(v - 1 for v in tr_prompts.values() if v > 1)
    fake = sum(1 for r in tr + ev if markers(r))
    naive_wrong = sum(1 for r in tr + ev if r["_naive_wrong"])
    leak = sum(1 for r in ev if r["_prompt"] in tr_prompts)
    turns = Counter(len(r["prompt"]) for r in tr + ev)

    files = {
        "project.yaml": project_yaml(
            name="hh-harmless-prefs",
            comment=f"Generated by {GENERATOR} from Anthropic HH-RLHF harmless-base (MIT); see README.md "
            "and NOTICE.\nContent warning: red-team data, offensive text on both sides.",
            task="Be a helpful assistant that answers the user's requests, while refusing harmful, dangerous "
            "or unethical ones politely and without lecturing. Learn from pairs of replies where people "
            "preferred the more harmless one.",
            base_model=QWEN,
            data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "format": "preference"},
            constraints={"budget_usd": 1000, "hardware": "1x A100-80GB", "data_must_stay_on_prem": False,
                         "facts_change": "rarely", "needs_citations": False, "requirements_change": "rarely"},
            gates=None,
            train={"epochs": 1, "learning_rate": Raw("5.0e-6"), "batch_size": 8, "max_length": 1024,
                   "lora_r": 16, "seed": 42},
        ),
        "data/train.jsonl": jsonl(out(r) for r in tr),
        "data/eval.jsonl": jsonl(out(r) for r in ev),
        "NOTICE": notice("hh_rlhf_harmless", [
            f"{len(tr)} train and {len(ev)} eval pairs of the {len(rows)} pairs of harmless-base/test.jsonl.gz "
            "(seeded; the pairs with an empty chosen reply, a duplicated prompt, or fake turns that defeat "
            "splitting at the last 'Assistant:' are forced into train).",
            "Each pair became a preference record: `prompt` = the longest common prefix of `chosen` and "
            "`rejected` cut at the last '\\n\\nAssistant:' inside it, split on '\\n\\nHuman:' / "
            "'\\n\\nAssistant:' into a list of user/assistant messages (content stripped); `chosen` and "
            "`rejected` = the rest of each transcript (stripped).",
            "Nothing was cleaned: empty replies, duplicated prompts and fake turns are kept.",
        ]),
        "README.md": readme("hh-harmless-prefs", f"""
            **Content warning: red-team conversations; offensive and harmful text on both sides.**

            Preference data for harmlessness: for each conversation, a reply people preferred (`chosen`)
            and one they did not (`rejected`). Demonstrates the case for **preference tuning (DPO/RLHF)**:
            the target is a behaviour judged by comparison, not a single right answer.

            - `data/train.jsonl`: {len(tr)} and `data/eval.jsonl`: {len(ev)} preference records;
              `prompt` is a list of messages ({min(turns)}..{max(turns)} turns), `chosen`/`rejected` are the
              final assistant replies.
            - The prompt is the longest common prefix of the two transcripts cut at the last
              "\\n\\nAssistant:" inside it (splitting each transcript at its own last "Assistant:" gives the
              wrong prompt for {naive_wrong} of these records).

            Real messiness kept on purpose (measured on these files):

            - {empty} records with an empty `chosen` reply (invalid under the contract: "empty content");
            - {dup} duplicated prompt(s) inside train; {leak} eval prompt(s) also in train;
            - {fake} records whose replies contain fake "Human:"/"Assistant:" turns.

            Source: Anthropic HH-RLHF, harmless-base test split, MIT -- see NOTICE.
            """),
    }
    files.update(licence_copy(ds, "hh_rlhf_harmless"))
    return files


# -- 4. e2e-restaurants ------------------------------------------------------------------------

E2E_INSTRUCTION = (
    "Write a short description of the restaurant in fluent English that mentions every attribute of "
    "the meaning representation below, and nothing else."
)


def build_e2e(ds: Path) -> dict[str, bytes]:
    dev = read_csv(ds / "e2e_nlg" / "devset.csv")
    test = read_csv(ds / "e2e_nlg" / "testset_w_refs.csv")
    dev_groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(dev):
        dev_groups[r["mr"]].append(i)
    picked: list[int] = []
    for mr in ordered(dev_groups, "e2e-train-mrs", lambda m: m):
        if len(picked) >= 2000:
            break
        picked += dev_groups[mr]
    tr = [dev[i] | {"_key": f"dev:{i}"} for i in picked]
    tr = ordered(tr, "e2e-train-order", lambda r: r["_key"])

    test_groups: dict[str, list[str]] = defaultdict(list)
    for r in test:
        test_groups[r["mr"]].append(r["ref"])
    most = max(len(v) for v in test_groups.values())
    forced = sorted(mr for mr, refs in test_groups.items() if len(refs) == most)
    rest = ordered([mr for mr in test_groups if mr not in forced], "e2e-eval-mrs", lambda m: m)
    ev_mrs = ordered(forced + rest[: 300 - len(forced)], "e2e-eval-order", lambda m: m)

    train_recs = [{"instruction": E2E_INSTRUCTION, "input": r["mr"], "output": r["ref"]} for r in tr]
    eval_recs = [{"instruction": E2E_INSTRUCTION, "input": mr, "output": test_groups[mr][0],
                  "references": test_groups[mr]} for mr in ev_mrs]
    pairs = Counter((r["input"], r["output"]) for r in train_recs)
    dup_extra = sum(v - 1 for v in pairs.values() if v > 1)
    refs = [len(r["references"]) for r in eval_recs]
    dup_refs = sum(len(r["references"]) - len(set(r["references"])) for r in eval_recs)
    n_train_mrs = len({r["input"] for r in train_recs})

    files = {
        "project.yaml": project_yaml(
            name="e2e-restaurants",
            comment=f"Generated by {GENERATOR} from the E2E NLG dataset (CC BY-SA 4.0); see README.md and NOTICE.",
            task="Turn a restaurant's attribute list (meaning representation) into a short, fluent English "
            "description that mentions every attribute and invents nothing.",
            base_model=QWEN,
            data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "format": "alpaca"},
            constraints={"budget_usd": 300, "hardware": "1x A10G", "data_must_stay_on_prem": False,
                         "facts_change": "never", "needs_citations": False, "requirements_change": "rarely"},
            gates={"rouge_l": ">= 0.4"},
            train={"epochs": 2, "learning_rate": Raw("2.0e-4"), "batch_size": 16, "max_length": 256,
                   "lora_r": 16, "seed": 42},
        ),
        "data/train.jsonl": jsonl(train_recs),
        "data/eval.jsonl": jsonl(eval_recs),
        "NOTICE": notice("e2e_nlg", [
            f"Train: every (mr, ref) row of {n_train_mrs} meaning representations of devset.csv (seeded, "
            f"{len(train_recs)} rows), one alpaca record per row: a fixed instruction, `input` = the mr, "
            "`output` = the reference.",
            f"Eval: {len(eval_recs)} meaning representations of testset_w_refs.csv (seeded; the ones with the "
            "most references forced in), one alpaca record each: `output` = its first reference, extra key "
            "`references` = all its references in file order.",
            "Nothing was cleaned: exact duplicate rows and duplicate references are kept.",
        ], extra="As required by CC BY-SA 4.0, these derived files are shared under the same licence."),
        "README.md": readme("e2e-restaurants", f"""
            Data-to-text generation: a restaurant's attributes (`name[The Eagle], eatType[coffee shop],
            food[French], ...`) become a short description. Demonstrates a **format/style task with a
            fixed input schema** where a small fine-tuned model does well, scored against several human
            references (ROUGE-L/BLEU).

            - `data/train.jsonl`: {len(train_recs)} alpaca records ({n_train_mrs} distinct meaning
              representations from the original dev set, one record per human reference).
            - `data/eval.jsonl`: {len(eval_recs)} alpaca records from the original test set, each meaning
              representation once. `output` is its first reference; the **extra key `references`** holds all
              of them ({min(refs)}..{max(refs)} per input) -- the contract allows extra keys, and multi-reference
              metrics should use it.
            - Train and eval share no meaning representation (E2E's dev and test sets are disjoint).

            Real messiness kept on purpose (measured on these files):

            - {dup_extra} exact duplicate (input, output) rows in train;
            - one eval input has {max(refs)} references; {dup_refs} duplicate references inside eval `references`;
            - references that drop or add attributes, typos and inconsistent punctuation, as written by the
              crowd workers.

            Source: E2E NLG Challenge dataset, CC BY-SA 4.0 (so this derived sample is CC BY-SA 4.0 too) --
            see NOTICE.
            """),
    }
    return files


# -- 5. scitldr-summaries ----------------------------------------------------------------------

def _abstract(r: dict) -> str:
    return " ".join(s.strip() for s in r["source"])


def _norm_title(t: str | None) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", (t or "").lower()).split())


def scitldr_prompt(r: dict) -> str:
    return f"Summarize this paper abstract in one sentence (TLDR).\n\n{_abstract(r)}\n\nTLDR:"


def build_scitldr(ds: Path) -> dict[str, bytes]:
    train = read_jsonl(ds / "scitldr" / "train.jsonl")
    dev = read_jsonl(ds / "scitldr" / "dev.jsonl")
    tr_by_abs: dict[str, list[dict]] = defaultdict(list)
    tr_by_title: dict[str, list[dict]] = defaultdict(list)
    for r in train:
        tr_by_abs[_abstract(r)].append(r)
        if _norm_title(r.get("title")):
            tr_by_title[_norm_title(r.get("title"))].append(r)
    # forced in: dev records whose abstract (or title: another version of the same paper) is in train,
    # with their train twins, and abstracts repeated inside train
    ev_forced, tr_forced = [], []
    for r in dev:
        twins = tr_by_abs.get(_abstract(r), []) + tr_by_title.get(_norm_title(r.get("title")), [])
        if twins:
            ev_forced.append(r)
            tr_forced += twins
    tr_forced += [r for group in tr_by_abs.values() if len(group) > 1 for r in group]
    tr_forced = list({r["paper_id"]: r for r in tr_forced}.values())
    forced_ids = {r["paper_id"] for r in tr_forced + ev_forced}

    tr_rest = ordered([r for r in train if r["paper_id"] not in forced_ids], "scitldr-train", lambda r: r["paper_id"])
    ev_rest = ordered([r for r in dev if r["paper_id"] not in forced_ids], "scitldr-eval", lambda r: r["paper_id"])
    tr = ordered(tr_forced + tr_rest[: 600 - len(tr_forced)], "scitldr-train-order", lambda r: r["paper_id"])
    ev = ordered(ev_forced + ev_rest[: 150 - len(ev_forced)], "scitldr-eval-order", lambda r: r["paper_id"])

    train_recs = [{"prompt": scitldr_prompt(r), "completion": r["target"][0], "id": r["paper_id"]} for r in tr]
    eval_recs = [{"prompt": scitldr_prompt(r), "completion": r["target"][0], "id": r["paper_id"],
                  "references": r["target"]} for r in ev]
    tr_abs = {_abstract(r) for r in tr}
    tr_titles = {_norm_title(r.get("title")) for r in tr} - {""}
    exact_leak = sum(1 for r in ev if _abstract(r) in tr_abs)
    title_leak = sum(1 for r in ev if _abstract(r) not in tr_abs and _norm_title(r.get("title")) in tr_titles)
    tr_dup = len(tr) - len(tr_abs)
    refs = [len(r["target"]) for r in ev]

    files = {
        "project.yaml": project_yaml(
            name="scitldr-summaries",
            comment=f"Generated by {GENERATOR} from SciTLDR (Apache-2.0); see README.md and NOTICE.",
            task="Summarize a scientific paper's abstract in one sentence (a TLDR) that states the paper's main "
            "contribution for a researcher skimming a list of papers.",
            base_model=QWEN,
            data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "format": "prompt_completion"},
            constraints={"budget_usd": 200, "hardware": "1x A10G", "data_must_stay_on_prem": False,
                         "facts_change": "never", "needs_citations": False, "requirements_change": "rarely"},
            gates={"rouge_l": ">= 0.3"},
            train={"epochs": 2, "learning_rate": Raw("2.0e-4"), "batch_size": 8, "max_length": 512,
                   "lora_r": 16, "seed": 42},
        ),
        "data/train.jsonl": jsonl(train_recs),
        "data/eval.jsonl": jsonl(eval_recs),
        "NOTICE": notice("scitldr", [
            f"Train: {len(tr)} of the {len(train)} records of SciTLDR-A train.jsonl; eval: {len(ev)} of the "
            f"{len(dev)} records of dev.jsonl (seeded; dev records whose abstract or title also occurs in train, "
            "their train twins, and abstracts repeated inside train are forced in).",
            "Each record became prompt_completion: `prompt` = a fixed instruction, the abstract (its `source` "
            "sentences joined with spaces) and 'TLDR:'; `completion` = the first `target` TLDR. Extra keys: "
            "`id` = the paper_id; in eval, `references` = all its TLDRs.",
            "Nothing was cleaned: leaked and duplicated abstracts are kept under their different ids.",
        ]),
        "README.md": readme("scitldr-summaries", f"""
            Extreme summarization: one-sentence TLDRs of machine-learning paper abstracts. Demonstrates a
            **generation task scored against several references**, where a strong prompt is a real
            baseline and a fine-tune must beat it by a measured margin.

            - `data/train.jsonl`: {len(tr)} prompt_completion records from the original train split
              (one TLDR each).
            - `data/eval.jsonl`: {len(ev)} records from the original dev split; `completion` is the first
              TLDR and the **extra key `references`** holds all of them ({min(refs)}..{max(refs)} per
              abstract). `id` is the OpenReview paper id.

            Real messiness kept on purpose (measured on these files):

            - train/eval leakage: {exact_leak} eval abstract(s) identical to a train abstract under a different
              id, and {title_leak} more eval paper(s) with the same title as a train paper (another version of
              the same paper, abstract reworded) -- all such pairs of the source splits are forced in;
            - {tr_dup} abstract(s) repeated inside train under different ids;
            - TLDRs written by authors and reviewers with uneven quality and length.

            Source: SciTLDR (AllenAI), Apache-2.0 -- see NOTICE.
            """),
    }
    files.update(licence_copy(ds, "scitldr"))
    return files


# -- 6. toy-chat -------------------------------------------------------------------------------

OPENAI_COOKBOOK_MIT = """MIT License

Copyright (c) 2023 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def build_toy_chat(ds: Path) -> dict[str, bytes]:
    raw = (ds / "openai_toy_chat" / "toy_chat_fine_tuning.jsonl").read_bytes()
    recs = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    longest = max(len(m["content"]) for r in recs for m in r["messages"])
    no_system = sum(1 for r in recs if not any(m["role"] == "system" for m in r["messages"]))
    no_user = sum(1 for r in recs if not any(m["role"] == "user" for m in r["messages"]))
    return {
        "project.yaml": project_yaml(
            name="toy-chat",
            comment=f"Generated by {GENERATOR} from the OpenAI Cookbook (MIT); see README.md and NOTICE.",
            task="Reply to the user as a happy assistant that puts a positive spin on everything.",
            base_model=QWEN,
            data={"train": "data/train.jsonl", "format": "chat"},
            constraints={"budget_usd": 20, "hardware": "none", "data_must_stay_on_prem": False,
                         "facts_change": "never", "needs_citations": False, "requirements_change": "rarely"},
            gates=None,
            train={"epochs": 3, "learning_rate": Raw("2.0e-4"), "batch_size": 4, "max_length": 512, "lora_r": 8,
                   "seed": 42},
        ),
        "data/train.jsonl": raw,
        "NOTICE": notice("openai_toy_chat", [
            "data/train.jsonl is toy_chat_fine_tuning.jsonl byte for byte (no changes).",
        ]),
        "LICENSE": text(OPENAI_COOKBOOK_MIT),
        "README.md": readme("toy-chat", f"""
            The five toy examples of the OpenAI Cookbook's chat fine-tuning data-preparation notebook,
            verbatim, with their deliberate flaws. Demonstrates what `advise assess` says about a
            **tiny, broken training set**: far too little data to train on, data problems to fix first,
            and prompting as the sensible starting point. There is no eval file.

            - `data/train.jsonl`: {len(recs)} chat examples.

            Flaws kept (measured): {no_system} example(s) without a system message, {no_user} without a user
            message, and one reply of {longest:,} characters ("Eat a banana!" repeated).

            Source: openai/openai-cookbook, examples/data/toy_chat_fine_tuning.jsonl, MIT -- see NOTICE.
            """),
    }


# -- driver ------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path], dict[str, bytes]]] = {
    "banking77-intents": build_banking77,
    "covid-qa-docs": build_covid_qa,
    "hh-harmless-prefs": build_hh,
    "e2e-restaurants": build_e2e,
    "scitldr-summaries": build_scitldr,
    "toy-chat": build_toy_chat,
    "ticket-routing-tiny": build_ticket_routing_tiny,
    "policy-faq-rag": build_policy_faq,
}
MANAGED_DIRS = ("data", "docs")


def build_all(datasets: Path, only: Iterable[str] | None = None) -> dict[str, dict[str, bytes]]:
    names = list(only) if only else list(BUILDERS)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown project(s): {', '.join(unknown)}; known: {', '.join(BUILDERS)}")
    return {name: BUILDERS[name](Path(datasets)) for name in names}


def write_project(root: Path, files: dict[str, bytes]) -> None:
    """Write the files; remove files under data/ and docs/ that this run did not write (stale output).
    Anything else in the project folder (.advise/ above all) is left alone."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in MANAGED_DIRS:
        d = root / sub
        if d.is_dir():
            for p in sorted(d.rglob("*"), reverse=True):
                rel = p.relative_to(root).as_posix()
                if p.is_file() and rel not in files:
                    p.unlink()
                elif p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
    for rel, data in sorted(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_file() or p.read_bytes() != data:
            p.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="?", default=str(DEFAULT_DATASETS),
                    help=f"folder of the shared datasets (default: {DEFAULT_DATASETS})")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"build only these: {', '.join(BUILDERS)}")
    args = ap.parse_args(argv)
    ds = Path(args.datasets)
    if not ds.is_dir():
        print(f"error: datasets folder not found: {ds}", file=sys.stderr)
        return 2
    out = Path(args.out)
    for name, files in build_all(ds, args.only).items():
        write_project(out / name, files)
        size = sum(len(b) for b in files.values())
        print(f"{name}: {len(files)} files, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
