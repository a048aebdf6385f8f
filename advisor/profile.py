"""One streaming pass over a data file: counts, tokens, duplicates, leakage and outputs.

:func:`profile_file` reads the file once through :func:`advisor.records.iter_records` and feeds
every valid record to the accumulators. Memory stays bounded: per record it keeps a few hashes and
(on large files) token counts of a seeded sample only.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advisor.dedup import LeakageIndex, NearDuplicates
from advisor.findings import Findings
from advisor.outputs import OutputStats
from advisor.records import FileStats, Record, iter_records
from advisor.rubric import value
from advisor.textnorm import normalise
from advisor.tokens import TokenCounter

SAMPLE_RECORDS = 2000  # records kept for goal signals (docs overlap, embeddings)


def count_lines(path: Path) -> int:
    n = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


@dataclass
class FileProfile:
    role: str
    stats: FileStats
    summary: dict = field(default_factory=dict)
    sample: list[Record] = field(default_factory=list)
    label_set: set[str] | None = None


class _TokenStats:
    def __init__(self, counter: TokenCounter, sample_p: float, context: int | None, max_length: int,
                 file: str, findings: Findings, seed: int):
        self.c, self.p, self.context, self.max_length = counter, sample_p, context, max_length
        self.file, self.findings = file, findings
        self.rng = random.Random(seed)
        self.batch: list[Record] = []
        self.example_tokens: list[int] = []
        self.turn_tokens: list[int] = []
        self.over_context = 0
        self.over_max = 0
        self.seen = 0
        self.total_chars = 0

    def add(self, rec: Record) -> None:
        self.seen += 1
        texts = rec.texts
        chars = sum(len(t) for t in texts)
        self.total_chars += chars
        # byte-level tokenizers never make more tokens than bytes: only long records can overflow
        long = self.context is not None and chars * 4 >= self.context
        if self.p >= 1.0 or long or self.rng.random() < self.p:
            self.batch.append(rec)
            if len(self.batch) >= 1024:
                self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        flat: list[str] = []
        spans = []
        for rec in self.batch:
            texts = rec.texts
            spans.append((len(flat), len(texts), len(rec.targets or [rec.output])))
            flat.extend(texts)
        counts = self.c.count(flat)
        for rec, (start, n, n_targets) in zip(self.batch, spans, strict=True):
            toks = counts[start : start + n]
            total = sum(toks) + self.c.per_message * n
            self.example_tokens.append(total)
            self.turn_tokens.extend(toks[n - n_targets :])
            if self.context and total > self.context:
                self.over_context += 1
                self.findings.add("over_context", self.file, rec.line, f"{total} tokens > {self.context}")
            elif total > self.max_length:
                self.over_max += 1
                self.findings.add("over_max_length", self.file, rec.line, f"{total} tokens > {self.max_length}")
        self.batch = []

    def summary(self, n_examples: int) -> dict:
        self.flush()
        ex = np.asarray(self.example_tokens, dtype=np.float64)
        turns = np.asarray(self.turn_tokens, dtype=np.float64)
        if not len(ex):
            return {"method": self.c.describe(), "exact": self.p >= 1.0}
        exact = self.p >= 1.0
        mean = float(ex.mean())
        out = {
            "method": self.c.describe(),
            "exact": exact and self.c.exact,
            "sampled_examples": None if exact else int(len(ex)),
            "per_example": _dist(ex),
            "per_assistant_turn": _dist(turns),
            "over_context": self.over_context,
            "context_window": self.context,
            "over_max_length": self.over_max,
            "max_length": self.max_length,
        }
        if exact:
            out["total"] = int(ex.sum())
        else:  # long records were all counted; the rest come from a Bernoulli sample
            out["total"] = int(round(mean * n_examples))
            sd = float(ex.std(ddof=1)) if len(ex) > 1 else 0.0
            out["total_margin_95"] = int(round(1.96 * sd / math.sqrt(len(ex)) * n_examples))
        hist, edges = np.histogram(ex, bins=min(30, max(1, len(np.unique(ex)))))
        out["histogram"] = {"counts": hist.tolist(), "edges": [round(float(e), 1) for e in edges]}
        return out


def _dist(a: np.ndarray) -> dict:
    if not len(a):
        return {}
    p = np.percentile(a, [50, 90, 99])
    return {"mean": round(float(a.mean()), 1), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]),
            "max": int(a.max()), "min": int(a.min())}


def profile_file(path: Path, *, role: str, declared: str, counter: TokenCounter, rubric: dict,
                 findings: Findings, leakage: LeakageIndex | None, context: int | None, max_length: int,
                 display: str, seed: int = 0) -> FileProfile:
    stats = FileStats(display)
    lines = count_lines(path) if path.is_file() else 0
    limit = value(rubric, "tokens", "exact_up_to_examples")
    p = 1.0 if lines <= limit else limit / lines
    tok = _TokenStats(counter, p, context, max_length, display, findings, seed)
    outs = OutputStats(rubric, display, findings, seed)
    near = NearDuplicates(
        shingle=value(rubric, "duplicates", "shingle_chars"),
        perms=value(rubric, "duplicates", "minhash_permutations"),
        bands=value(rubric, "duplicates", "minhash_bands"),
        threshold=value(rubric, "duplicates", "near_duplicate_jaccard"),
        max_chars=value(rubric, "duplicates", "text_chars"),
        seed=seed + 1,
    )
    exact: dict[int, int] = {}
    norm: dict[int, int] = {}
    by_input: dict[int, tuple[int, int]] = {}
    dup_exact = dup_norm = conflicts = 0
    duplicate_lines: set[int] = set()
    rng = random.Random(seed)
    sample: list[Record] = []
    n = 0
    chosen_len = rejected_len = 0

    for rec in iter_records(path, findings, stats, declared, display):
        n += 1
        line = rec.line
        nkey = normalise(rec.key)
        nout = normalise(rec.output)
        h = hash((rec.key, rec.output, rec.rejected))
        if h in exact:
            dup_exact += 1
            duplicate_lines.add(line)
            findings.add("duplicate_exact", display, line, f"same as line {exact[h]}")
        else:
            exact[h] = line
            hn = hash((nkey, nout))
            if hn in norm:
                dup_norm += 1
                duplicate_lines.add(line)
                findings.add("duplicate_normalised", display, line, f"same as line {norm[hn]}")
            else:
                norm[hn] = line
                near.add(line, nkey + " | " + nout)
        hk, ho = hash(nkey), hash(nout)
        prev = by_input.get(hk)
        if prev is None:
            by_input[hk] = (ho, line)
        elif prev[0] != ho and rec.fmt != "preference":
            conflicts += 1
            findings.add("conflicting_outputs", display, line, f"input also at line {prev[1]} with another output")
        if leakage is not None:
            if role == "eval":
                leakage.add_eval(line, rec.key, rec.output, nkey)
            else:
                leakage.check_train(line, rec.key, rec.output, nkey)
        tok.add(rec)
        outs.add(line, rec.output)
        if rec.rejected is not None:
            chosen_len += len(rec.output)
            rejected_len += len(rec.rejected)
        # reservoir sample of records for the goal signals
        if len(sample) < SAMPLE_RECORDS:
            sample.append(rec)
        else:
            j = rng.randrange(n)
            if j < SAMPLE_RECORDS:
                sample[j] = rec

    near_pairs = [(a, b, j) for a, b, j in near.pairs() if b not in duplicate_lines]
    for a, b, j in near_pairs:
        findings.add("near_duplicate", display, b, f"~line {a} (Jaccard ~{j:.2f})")

    if len(stats.formats) > 1:
        main = stats.format
        others = {f: c for f, c in stats.formats.items() if f != main}
        findings.add("mixed_formats", display, None, f"mostly {main}; also {others}")
    if len(stats.prompt_kinds) > 1:
        findings.add("mixed_prompt_formats", display, None, f"{stats.prompt_kinds}")

    out_summary = outs.summary()
    summary = {
        "examples": stats.examples,
        "invalid": stats.invalid,
        "format": stats.format,
        "formats": stats.formats,
        "lines": stats.lines,
        "tokens": tok.summary(stats.examples),
        "duplicates": {
            "exact": dup_exact,
            "normalised": dup_norm,
            "near": len(near_pairs),
            "conflicting_outputs": conflicts,
            "share": round((dup_exact + dup_norm) / n, 4) if n else 0.0,
        },
        "outputs": out_summary,
    }
    if chosen_len or rejected_len:
        summary["preference"] = {
            "pairs": stats.examples,
            "chosen_to_rejected_length": round(chosen_len / rejected_len, 3) if rejected_len else None,
            "prompt_kinds": stats.prompt_kinds,
        }
    label_set = set(out_summary["labels"]["counts"]) if out_summary.get("labels") else None
    return FileProfile(role, stats, summary, sample, label_set)
