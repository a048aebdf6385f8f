"""LLM-as-judge through any backend, with rubric templates in ``rubrics/`` (jinja2).

* :meth:`Judge.score`: single-answer grading with ``judge_single.jinja``; the judge ends with
  ``Score: [[N]]`` (1-10), mapped to [0, 1] as ``(N - 1) / 9`` (the ``judge_score`` metric).
* :meth:`Judge.faithfulness`: ``judge_faithfulness.jinja``: are the claims of a RAG answer supported by
  the passages it was given (``Score: [[N]]``, the ``faithfulness_judge`` metric beside the lexical
  ``faithfulness``).
* :meth:`Judge.pairwise`: ``judge_pairwise.jinja`` asked twice, answers in both orders, so a judge that
  favours a position cancels out: b wins an item only when it wins in both orders, a likewise;
  anything else is a tie. The share of items where both orders agree is reported (``consistency``).

Templates render with ``StrictUndefined``: a misspelt variable is an error, not an empty string. A
template that does not parse or render is one :class:`~advisor.errors.AdviseError` line naming the
template file and line. A project overrides a template by putting a file of the same name in its own
``rubrics/`` directory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rubrics
from advisor.errors import AdviseError
from advisor.hashing import stable_hash
from evaluators.backends.base import Backend, GenerationSettings

SINGLE_TEMPLATE = "judge_single.jinja"
PAIRWISE_TEMPLATE = "judge_pairwise.jinja"
FAITHFULNESS_TEMPLATE = "judge_faithfulness.jinja"
_SCORE = re.compile(r"\[\[\s*(10|[1-9])(?:\.\d+)?\s*\]\]|score\s*[:=]\s*(10|[1-9])\b", re.IGNORECASE)
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def rubric_dir() -> Path:

    return Path(rubrics.__file__).parent


def template_path(name: str, project_root: Path | None = None) -> Path:
    """A template by file name (the project's ``rubrics/`` first, then the shipped one) or by path."""
    p = Path(name)
    if p.is_file():
        return p
    if project_root is not None and (Path(project_root) / "rubrics" / name).is_file():
        return Path(project_root) / "rubrics" / name
    shipped = rubric_dir() / name
    if shipped.is_file():
        return shipped
    raise AdviseError("judge template not found", file=p)


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line a jinja2 runtime error happened on (jinja rewrites tracebacks to point at it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class Template:
    """A jinja2 template file rendered strictly (autoescape off: the output is a prompt, not markup)."""

    def __init__(self, path: Path):
        import jinja2

        self.path = Path(path).resolve()
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(self.path.parent)),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                 autoescape=False)  # noqa: S701 - plain-text prompts, never HTML
        try:
            self.source = self.path.read_text(encoding="utf-8")
            self.template = env.get_template(self.path.name)
        except jinja2.TemplateSyntaxError as e:
            raise AdviseError(f"judge template syntax error: {e.message}", file=self.path, line=e.lineno) from None
        except (OSError, UnicodeDecodeError, jinja2.TemplateError) as e:
            raise AdviseError(f"judge template cannot be read: {e}", file=self.path) from None

    def render(self, **variables: Any) -> str:
        try:
            return self.template.render(**variables).strip()
        except Exception as e:  # noqa: BLE001 - undefined variables, failing filters: one line, file and line
            line = getattr(e, "lineno", None) or _template_line(e, str(self.path))
            message = getattr(e, "message", None) or str(e) or type(e).__name__
            raise AdviseError(f"judge template error: {message}", file=self.path, line=line) from None

    def fingerprint(self) -> str:
        return stable_hash(self.source)


def parse_score(text: str | None) -> int | None:
    """The 1-10 score of a grading reply (the last ``[[N]]`` or ``Score: N``)."""
    if not text:
        return None
    found = [int(a or b) for a, b in _SCORE.findall(text)]
    return found[-1] if found else None


def parse_verdict(text: str | None) -> str | None:
    """"A", "B" or "C" (tie) from a pairwise reply (the last ``[[X]]``)."""
    if not text:
        return None
    found = _VERDICT.findall(text)
    return found[-1] if found else None


@dataclass
class JudgeScore:
    score: float | None  # in [0, 1]
    raw: int | None
    reply: str | None
    error: str | None = None


@dataclass
class PairVerdict:
    outcome: int | None  # +1: b better, -1: a better, 0: tie or the two orders disagree
    first: str | None  # verdict with a shown as A
    second: str | None  # verdict with b shown as A (already mapped back: "A" means a)
    consistent: bool | None
    error: str | None = None


class Judge:
    """Grades answers with a judge model (any :class:`Backend`: local, HTTP endpoint, vLLM)."""

    def __init__(self, backend: Backend, *, task: str = "", project_root: Path | None = None,
                 single_template: str = SINGLE_TEMPLATE, pairwise_template: str = PAIRWISE_TEMPLATE,
                 max_new_tokens: int = 256, name: str | None = None):
        self.backend = backend
        self.task = task
        self.single = Template(template_path(single_template, project_root))
        self.pair = Template(template_path(pairwise_template, project_root))
        self.faithful = Template(template_path(FAITHFULNESS_TEMPLATE, project_root))
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens)
        self.name = name or backend.describe().get("model") or backend.kind

    def fingerprint(self) -> str:
        d = {k: v for k, v in self.backend.describe().items() if k in ("kind", "model", "url", "adapter")}
        return stable_hash({"judge": d, "single": self.single.fingerprint(), "pair": self.pair.fingerprint(),
                            "settings": self.settings.key()})

    def faithfulness_fingerprint(self) -> str:
        return stable_hash({"judge": self.fingerprint(), "faithfulness": self.faithful.fingerprint()})

    def score(self, questions: Sequence[str], answers: Sequence[str], references: Sequence[str | None]) -> list[JudgeScore]:
        prompts = [[{"role": "user", "content": self.single.render(task=self.task, question=q, answer=a,
                                                                    reference=r or "")}]
                   for q, a, r in zip(questions, answers, references, strict=True)]
        return self._graded(prompts)

    def faithfulness(self, questions: Sequence[str], answers: Sequence[str],
                     passages: Sequence[Sequence[dict]]) -> list[JudgeScore]:
        """How far each RAG answer stays within its retrieved passages (``judge_faithfulness.jinja``),
        mapped to [0, 1] like :meth:`score` (the ``faithfulness_judge`` metric)."""
        prompts = [[{"role": "user", "content": self.faithful.render(task=self.task, question=q, answer=a,
                                                                      passages=list(ps))}]
                   for q, a, ps in zip(questions, answers, passages, strict=True)]
        return self._graded(prompts)

    def _graded(self, prompts: list[list[dict]]) -> list[JudgeScore]:
        out = []
        for g in self.backend.generate(prompts, self.settings):
            if g.error:
                out.append(JudgeScore(None, None, None, g.error))
                continue
            raw = parse_score(g.text)
            out.append(JudgeScore(None if raw is None else (raw - 1) / 9.0, raw, g.text,
                                  None if raw is not None else "the judge gave no score"))
        return out

    def pairwise(self, questions: Sequence[str], answers_a: Sequence[str], answers_b: Sequence[str],
                 references: Sequence[str | None]) -> list[PairVerdict]:
        n = len(questions)
        prompts = []
        for q, a, b, r in zip(questions, answers_a, answers_b, references, strict=True):
            for first, second in ((a, b), (b, a)):
                prompts.append([{"role": "user", "content": self.pair.render(
                    task=self.task, question=q, answer_a=first, answer_b=second, reference=r or "")}])
        gens = self.backend.generate(prompts, self.settings)
        out = []
        swap = {"A": "B", "B": "A", "C": "C"}
        for i in range(n):
            g1, g2 = gens[2 * i], gens[2 * i + 1]
            if g1.error or g2.error:
                out.append(PairVerdict(None, None, None, None, g1.error or g2.error))
                continue
            v1 = parse_verdict(g1.text)
            v2 = parse_verdict(g2.text)
            if v1 is None or v2 is None:
                out.append(PairVerdict(None, v1, v2, None, "the judge gave no verdict"))
                continue
            v2 = swap[v2]  # back to "A" = answer a
            if v1 == v2 == "B":
                outcome = 1
            elif v1 == v2 == "A":
                outcome = -1
            else:
                outcome = 0
            out.append(PairVerdict(outcome, v1, v2, v1 == v2))
        return out
