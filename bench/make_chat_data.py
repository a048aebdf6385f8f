"""Generate a realistic chat-format fine-tuning project for the assess benchmarks.

Builds PROJECT/ with
  project.yaml             base_model: ./base_model, data.train, data.eval, format auto
  data/train.jsonl         N chat examples (100,000 are about 24 MB)
  data/eval.jsonl          about 1% of N held-out examples, a few of them leaked from train
  base_model/              tokenizer.json (byte-level BPE trained here on the same sources) and a
                           Llama-style config.json (context window 2,048 tokens)
  NOTICE                   sources and licences

The texts come from the public datasets in ../shared/datasets (BANKING77, CC BY 4.0; E2E NLG,
CC BY-SA 4.0; SciTLDR, Apache-2.0): intent labels and support replies for banking messages,
restaurant descriptions (and JSON extraction) from E2E meaning representations, one-sentence
summaries of SciTLDR abstracts; varied system prompts (some missing), multi-turn conversations, a
few very long records (over the context window), and a few percent of problems of every class that
assess reports: broken JSON, every OpenAI format-error class, role-order problems, empty content,
unknown keys, other formats, exact / normalised / near duplicates, conflicting outputs, refusals,
invalid JSON outputs, blank lines, train/eval leakage.

    .venv/bin/python bench/make_chat_data.py /tmp/bench100k --n 100000
    .venv/bin/python bench/make_chat_data.py /tmp/bench1m --n 1000000 --tokenizer-from /tmp/bench100k/base_model

Generation is streaming (bounded memory) and seeded: the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ADVISE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
CONTEXT = 2048
VOCAB = 16000

CLASSIFY_SYSTEMS = [
    "Classify the message: answer with the intent label only.",
    "Reply with the intent label, nothing else.",
    "Label the message.",
    "Label the message.",
    "Banking intent?",
    "Intent?",
    "Which queue?",
    "Classify.",
    "Intent label:",
    "Label:",
    "Route it.",
    "Classify the message.",
    "What is the intent?",
    "Intent only.",
    "Label.",
    "You are a triage assistant for a retail bank. Read the customer's message and answer with exactly "
    "one intent label from the bank's taxonomy, written in snake_case, without any explanation.",
]
SUPPORT_SYSTEMS = [
    "You are a friendly support agent of Northbank. Answer briefly and point to the right next step.",
    "You are Northbank's virtual assistant. Be concise, polite and never ask for a full card number or PIN.",
    "Answer the customer as a helpful bank support agent.",
    "You help customers of a mobile-only bank. Keep answers under three sentences.",
]
E2E_SYSTEMS = [
    "Describe the restaurant in one sentence.",
    "Turn the attributes into a short description for a restaurant guide.",
    "Describe the venue.",
]
JSON_SYSTEMS = [
    "Extract the restaurant's attributes from the description as a JSON object.",
    "Return a JSON object with the venue's attributes mentioned in the text.",
]
SCI_SYSTEMS = [
    "Summarise the abstract in one sentence (a TL;DR).",
    "You write TL;DRs of machine learning papers: one sentence, no citations.",
    "Give a one-sentence summary.",
]
GREETINGS = ["", "", "", "Hi, ", "Hello! ", "Hey there. ", "Good morning, ", "Hi team, ", "Excuse me, "]
SIGNOFFS = ["", "", "", " Thanks.", " Thank you!", " Please help.", " Cheers", " Any idea?", " Thanks in advance."]
MERCHANTS = ["Tesco", "Amazon", "Uber", "Shell", "Lidl", "Netflix", "Boots", "Ryanair", "Costa", "IKEA", "eBay"]
DETAILS = [
    "It was {amount} at {merchant} on {day} {month}.",
    "My card ends in {digits}.",
    "Ref {ref}.",
    "This is about the {amount} payment to {merchant}.",
    "Since {day} {month}.",
    "Account ending {digits}.",
]
MONTHS = ["Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"]
REPLY_OPENERS = [
    "Thanks for getting in touch about {topic}.",
    "I understand your question about {topic}.",
    "Sorry for the trouble with {topic}.",
    "Happy to help with {topic}.",
]
REPLY_STEPS = [
    "Open the app, go to Account > Help and choose '{topic}'; the steps are listed there.",
    "You can check this under Cards in the app, where the status is updated in real time.",
    "This usually takes up to 3 working days; if it takes longer, reply here and we will look into it.",
    "Please do not share your PIN or full card number in this chat.",
    "I have passed this on to the {topic} team, who will contact you within 24 hours.",
    "There is no fee for this, and you can do it at any time from the app.",
]
FOLLOW_UPS = ["Ok, and how long does that take?", "Is there a fee?", "Can I do it from the website too?",
              "What if that does not work?", "Thanks, anything else I should know?"]
REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I cannot help with that. Please contact the branch directly.",
    "As an AI, I don't have access to your account.",
]


def load_sources(shared: Path) -> dict:
    banking = []
    for name in ("train.csv", "test.csv"):
        with open(shared / "banking77" / name, newline="", encoding="utf-8") as fh:
            banking += [(r["text"].strip(), r["category"]) for r in csv.DictReader(fh)]
    e2e = []
    for name in ("devset.csv", "testset_w_refs.csv"):
        with open(shared / "e2e_nlg" / name, newline="", encoding="utf-8") as fh:
            e2e += [(r["mr"].strip(), r["ref"].strip()) for r in csv.DictReader(fh) if r.get("ref")]
    sci = []
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        with open(shared / "scitldr" / name, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                if r["source"] and r["target"]:
                    sci.append((r["source"], r["target"]))
    return {"banking": banking, "e2e": e2e, "sci": sci}


def mr_to_dict(mr: str) -> dict:
    return {k: v for k, v in re.findall(r"(\w+)\[([^\]]*)\]", mr)}


def msg(role: str, content) -> dict:
    return {"role": role, "content": content}


class Generator:
    def __init__(self, src: dict, seed: int):
        self.src, self.rng = src, random.Random(seed)
        self.pool: list[dict] = []  # recent valid records, for duplicates and leakage (bounded)

    def _banking_text(self) -> tuple[str, str]:
        r = self.rng
        text, label = r.choice(self.src["banking"])
        if r.random() < 0.05:  # two questions in one message
            text = text + " " + r.choice(self.src["banking"])[0]
        if r.random() < 0.45:  # a detail of the customer's case
            detail = r.choice(DETAILS).format(
                amount=f"£{r.randrange(1, 400)}.{r.randrange(100):02d}", merchant=r.choice(MERCHANTS),
                day=r.randrange(1, 29), month=r.choice(MONTHS), digits=f"{r.randrange(10000):04d}",
                ref=f"{r.choice('ABCDEFGHJK')}{r.randrange(10**6):06d}")
            text = text + " " + detail if r.random() < 0.8 else detail + " " + text
        return r.choice(GREETINGS) + text + r.choice(SIGNOFFS), label

    def _with_system(self, systems: list[str], msgs: list[dict]) -> dict:
        if self.rng.random() < 0.15:  # no system prompt (missing_system_message)
            return {"messages": msgs}
        return {"messages": [msg("system", self.rng.choice(systems))] + msgs}

    def valid(self) -> dict:
        r = self.rng
        x = r.random()
        if x < 0.87:
            text, label = self._banking_text()
            return self._with_system(CLASSIFY_SYSTEMS, [msg("user", text), msg("assistant", label)])
        if x < 0.915:
            text, label = self._banking_text()
            topic = label.replace("_", " ")
            reply = r.choice(REPLY_OPENERS).format(topic=topic) + " " + r.choice(REPLY_STEPS).format(topic=topic)
            msgs = [msg("user", text), msg("assistant", reply)]
            if r.random() < 0.1:  # multi-turn
                msgs += [msg("user", r.choice(FOLLOW_UPS)),
                         msg("assistant", r.choice(REPLY_STEPS).format(topic=topic))]
            return self._with_system(SUPPORT_SYSTEMS, msgs)
        if x < 0.97:
            mr, ref = r.choice(self.src["e2e"])
            return self._with_system(E2E_SYSTEMS, [msg("user", mr), msg("assistant", ref)])
        if x < 0.985:
            mr, ref = r.choice(self.src["e2e"])
            out = orjson.dumps(mr_to_dict(mr)).decode()
            return self._with_system(JSON_SYSTEMS, [msg("user", ref), msg("assistant", out)])
        source, target = r.choice(self.src["sci"])
        k = min(len(source), r.choice((1, 1, 1, 2, 2, 3, 4, 8)))
        start = r.randrange(len(source) - k + 1)
        return self._with_system(SCI_SYSTEMS, [msg("user", " ".join(source[start : start + k])),
                                               msg("assistant", r.choice(target))])

    def long(self) -> dict:
        """A paper-sized input: over the 2,048-token context window."""
        parts, chars = [], 0
        while chars < 12000:
            s = " ".join(self.rng.choice(self.src["sci"])[0])
            parts.append(s)
            chars += len(s)
        return {"messages": [msg("system", SCI_SYSTEMS[0]), msg("user", "\n\n".join(parts)),
                             msg("assistant", self.rng.choice(self.src["sci"])[1][0])]}

    def problem(self) -> bytes | dict:
        """One record with a problem, of a class picked at random."""
        r = self.rng
        base = self.valid()
        m = base["messages"]
        kind = r.randrange(22)
        if kind == 0:
            return orjson.dumps(base)[:-7]  # truncated line: invalid_json
        if kind == 1:
            return m  # a JSON list: data_type
        if kind == 2:
            return {"conversation": m}  # unknown_format
        if kind == 3:
            return {"messages": []}  # missing_messages_list
        if kind == 4:
            del m[-1]["role"]  # message_missing_key
        elif kind == 5:
            m[-1]["speaker"] = "agent"  # message_unrecognized_key
        elif kind == 6:
            m[-1]["role"] = "bot"  # unrecognized_role
        elif kind == 7:
            m[-1]["content"] = None if r.random() < 0.5 else ""  # missing_content
        elif kind == 8:
            base["messages"] = [x for x in m if x["role"] != "assistant"]  # example_missing_assistant_message
        elif kind == 9:
            m[-1]["content"] = "   "  # empty_content
        elif kind == 10:
            base["messages"] = [x for x in m if x["role"] != "user"]  # missing_user_message
        elif kind == 11:
            base["messages"] = m + [msg("user", r.choice(FOLLOW_UPS))]  # last_message_not_assistant
        elif kind == 12:
            base["messages"] = m[:-1] + [msg("assistant", "Let me check."), m[-1]]  # role_order
        elif kind == 13:
            base["id"], base["source_ticket"] = r.randrange(10**6), "T-1"  # unrecognized_key
        elif kind == 14:
            text, label = self._banking_text()  # another format: mixed_formats
            return {"instruction": "Classify the banking message.", "input": text, "output": label}
        elif kind == 15:
            m[-1]["content"] = r.choice(REFUSALS)  # refusal_like
        elif kind == 16:
            m[-1]["content"] = '{"name": "Alimentum", "area": '  # invalid_json_output
        elif kind == 17 and self.pool:
            return dict(r.choice(self.pool))  # duplicate_exact
        elif kind == 18 and self.pool:  # duplicate_normalised: case, spacing, punctuation
            c = orjson.loads(orjson.dumps(r.choice(self.pool)))
            u = [x for x in c["messages"] if x["role"] == "user"]
            if u:
                u[0]["content"] = u[0]["content"].upper().replace(" ", "  ").rstrip("?.!") + " ?"
            return c
        elif kind == 19 and self.pool:  # near_duplicate: one word of the reply changed
            c = orjson.loads(orjson.dumps(r.choice(self.pool)))
            u = [x for x in c["messages"] if x["role"] == "user"]
            if u and len(u[0]["content"]) > 40:
                u[0]["content"] = u[0]["content"] + " thanks"
            return c
        elif kind == 20 and self.pool:  # conflicting_outputs: same input, another label
            c = orjson.loads(orjson.dumps(r.choice(self.pool)))
            c["messages"][-1]["content"] = r.choice(self.src["banking"])[1]
            return c
        else:
            return b""  # blank_line
        return base

    def record(self) -> bytes | dict:
        r = self.rng
        x = r.random()
        if x < 0.0005:
            rec = self.long()
        elif x < 0.035:
            return self.problem()
        else:
            rec = self.valid()
        if len(self.pool) < 5000:
            self.pool.append(rec)
        elif r.random() < 0.01:
            self.pool[r.randrange(5000)] = rec
        return rec


def write_jsonl(path: Path, records) -> int:
    n = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, bytes) else orjson.dumps(rec)) + b"\n")
            n += 1
    return n


def train_tokenizer(src: dict, out: Path, vocab: int = VOCAB) -> None:
    """Byte-level BPE (GPT-2 style) trained on the same sources: a stand-in for a base model's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [t for t, _ in src["banking"]] + [t for pair in src["e2e"] for t in pair]
    texts += [" ".join(s) for s, _ in src["sci"]] + [t[0] for _, t in src["sci"]]
    texts += CLASSIFY_SYSTEMS + SUPPORT_SYSTEMS + E2E_SYSTEMS + JSON_SYSTEMS + SCI_SYSTEMS + REPLY_STEPS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))


def write_config(out: Path, vocab: int) -> None:
    cfg = {  # the shape of Qwen2.5-0.5B, with a short context window so some records overflow it
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 896,
        "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": vocab, "max_position_embeddings": CONTEXT,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


PROJECT_YAML = """\
# Generated by bench/make_chat_data.py ({n} train examples, seed {seed}); see NOTICE.
name: bench-chat-{n}
task: >
  Answer bank customers: route each message to its intent label or reply as a support agent;
  also describe restaurants from attribute lists and summarise paper abstracts in one sentence.
base_model: ./base_model
data:
  train: data/train.jsonl
  eval: data/eval.jsonl
  format: auto
constraints:
  budget_usd: 500
  hardware: "1x A100-80GB"
  facts_change: rarely
train:
  epochs: 3
  max_length: 512
"""

NOTICE = """\
Synthetic benchmark data built by bench/make_chat_data.py from:
- BANKING77 (PolyAI-LDN/task-specific-datasets), CC BY 4.0
- E2E NLG (tuetschek/e2e-dataset), CC BY-SA 4.0
- SciTLDR (allenai/scitldr), Apache-2.0
Texts are recombined and deliberately damaged for benchmarking; not for training.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="project directory to write (replaced)")
    ap.add_argument("--n", type=int, default=100_000, help="train examples (default 100,000)")
    ap.add_argument("--eval-share", type=float, default=0.01, help="eval examples as a share of n (default 0.01)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared datasets folder")
    ap.add_argument("--tokenizer-from", type=Path, default=None,
                    help="copy tokenizer.json from this directory instead of training one")
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    src = load_sources(a.shared)
    if a.out.exists():
        shutil.rmtree(a.out)
    (a.out / "data").mkdir(parents=True)
    bm = a.out / "base_model"
    if a.tokenizer_from:
        bm.mkdir()
        shutil.copy(a.tokenizer_from / "tokenizer.json", bm / "tokenizer.json")
    else:
        train_tokenizer(src, bm)
    from tokenizers import Tokenizer

    write_config(bm, Tokenizer.from_file(str(bm / "tokenizer.json")).get_vocab_size())

    gen = Generator(src, a.seed)
    n_train = write_jsonl(a.out / "data" / "train.jsonl", (gen.record() for _ in range(a.n)))
    # eval: fresh records from another stream, plus ~5% copied from train (leakage)
    ev = Generator(src, a.seed + 1000)
    n_eval = max(50, int(a.n * a.eval_share))

    def eval_records():
        for _ in range(n_eval):
            yield dict(gen.rng.choice(gen.pool)) if ev.rng.random() < 0.05 else ev.valid()

    write_jsonl(a.out / "data" / "eval.jsonl", eval_records())
    (a.out / "project.yaml").write_text(PROJECT_YAML.format(n=a.n, seed=a.seed))
    (a.out / "NOTICE").write_text(NOTICE)
    size = (a.out / "data" / "train.jsonl").stat().st_size
    print(json.dumps({"project": str(a.out), "train_examples": n_train, "eval_examples": n_eval,
                      "train_mb": round(size / 1e6, 1), "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
