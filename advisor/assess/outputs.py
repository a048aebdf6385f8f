"""What the outputs (the replies the model must learn) look like.

Streaming: :meth:`OutputStats.add` each output, then :meth:`OutputStats.summary`. It finds
label-like outputs (a small closed set) with class balance, JSON outputs with parse rate and key
structure, the form of each output (JSON, SQL, code, text) and the outputs in another form than the
one the task asks for or most outputs follow, templatedness, refusal-like replies (by how a reply
opens, not by words inside quotes), and number/entity density of the free-text outputs.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections import Counter
from dataclasses import dataclass

from advisor.data.findings import Findings
from advisor.data.textnorm import words
from advisor.rubric import value

_NUM = re.compile(r"\d")
_SQL = re.compile(r"(?is)^\s*(?:```sql\s*)?(?:select|with|insert|update|delete|create)\b.*\b(?:from|into|set|table|as)\b")
_QUOTED = re.compile(r'"[^"\n]{1,200}"|\u201c[^\u201d\n]{1,200}\u201d|\*[^*\n]{1,200}\*|\u00ab[^\u00bb\n]{1,200}\u00bb')
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
STRUCTURED = ("json", "sql", "code")
# how JSON opens: '{"', '{}', '[{', '["', '[1', '[]', '[true' ... ; not '[image]' or '[laughs]' in a chat reply
_JSONISH = re.compile(r'\s*(?:\{\s*(?:"|\}|$)|\[\s*(?:["{\[\d.-]|\]|true\b|false\b|null\b|$))')


def output_form(text: str) -> str:
    """json, sql, code (a fenced block) or text: the form an output is written in."""
    t = text.lstrip()
    if t[:1] in "{[" and _JSONISH.match(t):
        return "json"
    if _SQL.match(t):
        return "sql"
    if t.startswith("```"):
        return "code"
    return "text"


def task_form(task: str, rubric: dict) -> str | None:
    """The output form the task text asks for (its cue words, matched as words), or None."""
    text = task.casefold()
    for form, cues in value(rubric, "outputs", "task_form_cues").items():
        if any(re.search(r"\b" + re.escape(c.casefold()) + r"\b", text) for c in cues):
            return form
    return None


@dataclass(frozen=True)
class Expected:
    """What the task text asks of the outputs: a form (json, sql, code) and/or a closed label set."""

    form: str | None = None
    labels: tuple[str, ...] = ()


_ITEM = r"[\w'`\"-]+(?: [\w'-]+){0,2}"
_LIST = rf"{_ITEM}(?:\s*,\s*{_ITEM})*,?\s+(?:or|and)\s+{_ITEM}|{_ITEM}(?:\s*,\s*{_ITEM})+"
_LABEL_LISTS = (
    re.compile(r"\(([^()\n]{3,400})\)"),  # "... queues (card_arrival, exchange_rate, top_up_failed)"
    re.compile(rf"(?i)\b(?:answer|reply|respond|label|classify|tag)\b[^.:;\n]{{0,40}}?\bwith\s+(?:exactly\s+)?"
               rf"(?:one of\s*:?\s*)?({_LIST})"),  # "answer the question with yes, no or maybe"
    re.compile(rf"(?i)\bone of\s*:?\s*({_LIST})"),  # "one of: billing, tech or account"
)
_STOP = {"the", "a", "an", "one", "only", "label", "labels", "words", "word"}


def task_labels(task: str) -> tuple[str, ...]:
    """The closed label set a task text spells out ("(a, b, c)", "answer with yes, no or maybe",
    "one of: x, y, z"), as written; () when it spells out none."""
    for pat in _LABEL_LISTS:
        for m in pat.finditer(task or ""):
            items = [i.strip(" '\"`.") for i in re.split(r"\s*,\s*|,?\s+(?:or|and)\s+", m.group(1))]
            items = [i for i in items if i]
            if (len(items) >= 2 and len(set(items)) == len(items)
                    and all(len(i) <= 40 and len(i.split()) <= 3 and i.casefold() not in _STOP for i in items)):
                return tuple(items)
    return ()


def task_expectation(task: str, rubric: dict) -> Expected:
    return Expected(task_form(task, rubric), task_labels(task))


_EDGE = re.compile(r"^[\s\"'`*.:;!,()\[\]]+|[\s\"'`*.:;!,()\[\]]+$")


def _label_form(text: str, labels: tuple[str, ...], folded: dict[str, str]) -> tuple[str, str | None]:
    """('exact' | 'case' | 'surrounding' | 'other', the label meant) of one output against the task's labels."""
    if text in labels:
        return "exact", text
    bare = _EDGE.sub("", text).casefold()
    if bare in folded:
        return "case", folded[bare]
    t = text.casefold()
    found = [lab for key, lab in folded.items() if re.search(r"(?<![\w-])" + re.escape(key) + r"(?![\w-])", t)]
    if len(found) == 1 and len(text) <= 200:
        return "surrounding", found[0]
    return "other", None


def opening(text: str, sentences: int = 2, chars: int = 300) -> str:
    """How a reply opens: its first sentences, with quoted spans (titles, quotes) taken out."""
    t = _QUOTED.sub(" ", text[: chars * 2])
    end = 0
    for _ in range(sentences):
        m = _SENTENCE_END.search(t, end)
        if not m:
            end = len(t)
            break
        end = m.end()
    return t[: min(end, chars)]
_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]+")


class OutputStats:
    SEEN_OUTPUTS = 20_000  # distinct short outputs whose analysis is kept
    SEEN_CHARS = 200

    def __init__(self, rubric: dict, file: str, findings: Findings, seed: int = 0,
                 expected_form: str | Expected | None = None):
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
        exp = expected_form if isinstance(expected_form, Expected) else Expected(expected_form)
        self.expected_form = exp.form
        self.task_labels = exp.labels
        self._folded = {lab.casefold(): lab for lab in exp.labels}
        self.label_forms: dict[str, array] = {}  # exact / case / surrounding / other -> lines
        self.label_examples: dict[int, tuple[str, str]] = {}  # line -> (output, label meant), first few
        self.form_lines: dict[str, array] = {}
        self._seen: dict[str, tuple] = {}  # output -> _look(output): labels and stock replies repeat

    def add(self, line: int, output: str) -> None:
        info = self._seen.get(output)
        if info is None:
            info = self._look(output)
            if len(output) <= self.SEEN_CHARS and len(self._seen) < self.SEEN_OUTPUTS:
                self._seen[output] = info
        text, nwords, lab, parsed, refusal, form, (lform, meant) = info
        self.n += 1
        if self.task_labels:
            ll = self.label_forms.get(lform)
            if ll is None:
                ll = self.label_forms[lform] = array("q")
            ll.append(line)
            if lform in ("case", "surrounding") and len(self.label_examples) < 1000:
                self.label_examples[line] = (text[:80], meant)
        fl = self.form_lines.get(form)
        if fl is None:
            fl = self.form_lines[form] = array("q")
        fl.append(line)
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
        (stripped text, words, label, None or (parses, key structure or error), refusal-like, form)."""
        text = output.strip()
        parsed = None
        if text[:1] in "{[" and (self.expected_form == "json" or _JSONISH.match(text)):
            try:
                obj = json.loads(text)
                parsed = (True, tuple(sorted(obj)) if isinstance(obj, dict) else ("<list>",))
            except ValueError as e:
                parsed = (False, str(e))
        form = output_form(text)
        refusal = form == "text" and self._refusal.search(opening(text)) is not None
        lform = _label_form(text, self.task_labels, self._folded) if self.task_labels else ("exact", None)
        return text, len(text.split()), text.casefold(), parsed, refusal, form, lform

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
        for form, lines in later.form_lines.items():
            self.form_lines.setdefault(form, array("q")).extend(lines)
        for form, lines in later.label_forms.items():
            self.label_forms.setdefault(form, array("q")).extend(lines)
        for line, ex in later.label_examples.items():
            if len(self.label_examples) < 1000:
                self.label_examples[line] = ex
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
        """Numbers and capitalised words per 100 words of the free-text outputs (in JSON, SQL and code,
        identifiers, aliases, indices and years are not facts)."""
        nums = caps = total = 0
        for t in self.sample:
            if output_form(t) != "text":
                continue
            toks = t.split()
            total += len(toks)
            nums += sum(1 for w in toks if _NUM.search(w))
            caps += len(_CAP.findall(t))
        return {
            "numbers_per_100_words": round(100 * nums / total, 2) if total else None,
            "capitalised_per_100_words": round(100 * caps / total, 2) if total else None,
        }

    def forms(self) -> dict:
        """The forms of the outputs, the one expected (asked for by the task, or followed by most
        outputs) and a finding with file:line for each output in another form."""
        counts = {f: len(v) for f, v in sorted(self.form_lines.items(), key=lambda kv: -len(kv[1]))}
        out: dict = {"counts": counts, "expected": None, "why": None, "other": 0, "other_share": 0.0}
        if not self.n:
            return out
        main, k = next(iter(counts.items()))
        if self.expected_form in STRUCTURED:
            expected, why = self.expected_form, "the task asks for it"
        elif main in STRUCTURED and k / self.n >= value(self.r, "outputs", "form_majority"):
            expected, why = main, f"{k / self.n:.0%} of outputs are {main}"
        else:
            return out
        other = self.n - counts.get(expected, 0)
        out.update(expected=expected, why=why, other=other, other_share=round(other / self.n, 4))
        for form, lines in self.form_lines.items():
            if form != expected:
                for line in lines:
                    self.findings.add("output_form_mismatch", self.file, line, f"{form}, not {expected} ({why})")
        return out

    def label_form(self) -> dict | None:
        """Outputs against the label set the task spells out: how many are a label as written, a label in
        another case or with punctuation, a label inside other text ("Label: x"), or none; a
        label_form_mismatch finding with file:line for each of the middle two. Only when most outputs
        are (loosely) a declared label: otherwise the list in the task text is not the output set."""
        if not self.task_labels or not self.n:
            return None
        counts = {k: len(self.label_forms.get(k, ())) for k in ("exact", "case", "surrounding", "other")}
        out = {"labels": list(self.task_labels), **counts, "applies": False}
        if (self.n - counts["other"]) / self.n < value(self.r, "outputs", "form_majority"):
            return out
        out["applies"] = True
        why = {"case": "in another case or with punctuation", "surrounding": "inside other text"}
        for kind in ("case", "surrounding"):
            for line in self.label_forms.get(kind, ()):
                text, meant = self.label_examples.get(line, ("", None))
                detail = f"'{text}' for the label '{meant}' ({why[kind]})" if meant else why[kind]
                self.findings.add("label_form_mismatch", self.file, line, detail)
        return out

    def summary(self) -> dict:
        out: dict = {
            "outputs": self.n,
            "mean_words": round(self.words_total / self.n, 2) if self.n else 0.0,
            "label_like": self.is_label_like(),
            "templatedness": self.templatedness(),
            "refusal_share": round(self.refusals / self.n, 4) if self.n else 0.0,
            **self.density(),
            "forms": self.forms(),
        }
        lf = self.label_form()
        if lf is not None:
            out["task_labels"] = lf
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
