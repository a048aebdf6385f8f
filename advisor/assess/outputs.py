"""What the outputs (the replies the model must learn) look like.

Streaming: :meth:`OutputStats.add` each output, then :meth:`OutputStats.summary`. It finds
label-like outputs (a small closed set) with class balance, JSON outputs with parse rate and key
structure, templatedness, refusal-like replies, and number/entity density.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

from advisor.data.findings import Findings
from advisor.data.textnorm import words
from advisor.rubric import value

_NUM = re.compile(r"\d")
_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]+")


class OutputStats:
    SEEN_OUTPUTS = 20_000  # distinct short outputs whose analysis is kept
    SEEN_CHARS = 200

    def __init__(self, rubric: dict, file: str, findings: Findings, seed: int = 0):
        self.r = rubric
        self.file = file
        self.findings = findings
        self.n = 0
        self.max_classes = value(rubric, "outputs", "label_max_classes")
        self.labels: Counter | None = Counter()
        self.label_first_line: dict[str, int] = {}
        self.words_total = 0
        self.json_like = 0
        self.json_ok = 0
        self.json_keys: Counter = Counter()
        self.refusals = 0
        self._refusal = re.compile("|".join(value(rubric, "outputs", "refusal_patterns")), re.IGNORECASE)
        self.sample_size = value(rubric, "outputs", "sample_outputs")
        self.sample: list[str] = []
        self._seen: dict[str, tuple] = {}  # output -> _look(output): labels and stock replies repeat

    def add(self, line: int, output: str) -> None:
        info = self._seen.get(output)
        if info is None:
            info = self._look(output)
            if len(output) <= self.SEEN_CHARS and len(self._seen) < self.SEEN_OUTPUTS:
                self._seen[output] = info
        text, nwords, lab, parsed, refusal = info
        self.n += 1
        self.words_total += nwords
        if self.labels is not None:
            self.labels[lab] += 1
            self.label_first_line.setdefault(lab, line)
            if len(self.labels) > self.max_classes * 5:
                self.labels = None  # clearly not a closed label set: stop tracking
        if parsed is not None:
            self.json_like += 1
            ok, what = parsed
            if ok:
                self.json_ok += 1
                self.json_keys[what] += 1
            else:
                self.findings.add("invalid_json_output", self.file, line, what)
        if refusal:
            self.refusals += 1
            self.findings.add("refusal_like", self.file, line, text[:80])
        if len(self.sample) < self.sample_size:
            self.sample.append(text)

    def _look(self, output: str) -> tuple:
        """What :meth:`add` needs to know of an output, the same each time it occurs:
        (stripped text, words, label, None or (parses, key structure or error), refusal-like)."""
        text = output.strip()
        parsed = None
        if text[:1] in "{[":
            try:
                obj = json.loads(text)
                parsed = (True, tuple(sorted(obj)) if isinstance(obj, dict) else ("<list>",))
            except ValueError as e:
                parsed = (False, str(e))
        return text, len(text.split()), text.casefold(), parsed, self._refusal.search(text[:300]) is not None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_seen": {}}  # the cache stays behind (for worker processes)

    def merge(self, later: OutputStats) -> None:
        """Add the stats of the outputs that follow these in the file (read by another worker)."""
        self.n += later.n
        self.words_total += later.words_total
        if self.labels is not None and later.labels is not None:
            self.labels.update(later.labels)  # Counter order: first appearance, as one pass would have it
            for lab, line in later.label_first_line.items():
                self.label_first_line.setdefault(lab, line)
            if len(self.labels) > self.max_classes * 5:
                self.labels = None
        else:
            self.labels = None
        self.json_like += later.json_like
        self.json_ok += later.json_ok
        self.json_keys.update(later.json_keys)
        self.refusals += later.refusals
        self.sample.extend(later.sample[: self.sample_size - len(self.sample)])

    # -- summary ---------------------------------------------------------------------------------
    def is_label_like(self) -> bool:
        if self.labels is None or not self.n:
            return False
        return (len(self.labels) <= self.max_classes
                and self.words_total / self.n <= value(self.r, "outputs", "label_max_words")
                and len(self.labels) / self.n <= value(self.r, "outputs", "label_max_distinct_share"))

    def templatedness(self) -> float | None:
        """1 - distinct/total word 3-grams over the sampled outputs: 0 free text, near 1 a template."""
        grams: Counter = Counter()
        for t in self.sample:
            w = words(t)
            grams.update(zip(w, w[1:], w[2:], strict=False))
        total = sum(grams.values())
        return None if total < 20 else round(1 - len(grams) / total, 4)

    def density(self) -> dict:
        nums = caps = total = 0
        for t in self.sample:
            toks = t.split()
            total += len(toks)
            nums += sum(1 for w in toks if _NUM.search(w))
            caps += len(_CAP.findall(t))
        return {
            "numbers_per_100_words": round(100 * nums / total, 2) if total else 0.0,
            "capitalised_per_100_words": round(100 * caps / total, 2) if total else 0.0,
        }

    def summary(self) -> dict:
        out: dict = {
            "outputs": self.n,
            "mean_words": round(self.words_total / self.n, 2) if self.n else 0.0,
            "label_like": self.is_label_like(),
            "templatedness": self.templatedness(),
            "refusal_share": round(self.refusals / self.n, 4) if self.n else 0.0,
            **self.density(),
        }
        if self.is_label_like():
            counts = self.labels.most_common()
            probs = [c / self.n for _, c in counts]
            entropy = -sum(p * math.log(p) for p in probs)
            ratio = counts[0][1] / counts[-1][1]
            out["labels"] = {
                "classes": len(counts),
                "counts": dict(counts),
                "imbalance_ratio": round(ratio, 2),
                "normalised_entropy": round(entropy / math.log(len(counts)), 4) if len(counts) > 1 else 0.0,
            }
            if ratio >= value(self.r, "outputs", "imbalance_ratio_warn"):
                self.findings.add("label_imbalance", self.file, None,
                                  f"'{counts[0][0]}' x{counts[0][1]} vs '{counts[-1][0]}' x{counts[-1][1]}")
            rare = value(self.r, "outputs", "rare_label_examples")
            for lab, c in counts:
                if c < rare:
                    self.findings.add("rare_label", self.file, self.label_first_line.get(lab), f"'{lab}' x{c}")
        if self.json_like:
            top = self.json_keys.most_common(1)[0][1] if self.json_keys else 0
            out["json"] = {
                "outputs": self.json_like,
                "share_of_outputs": round(self.json_like / self.n, 4),
                "parse_rate": round(self.json_ok / self.json_like, 4),
                "structures": len(self.json_keys),
                "main_structure_share": round(top / self.json_ok, 4) if self.json_ok else 0.0,
            }
            if self.json_ok and top / self.json_ok < value(self.r, "outputs", "json_consistency_warn"):
                self.findings.add("inconsistent_json_structure", self.file, None,
                                  f"{len(self.json_keys)} key structures; the main one covers {top}/{self.json_ok}")
        return out
