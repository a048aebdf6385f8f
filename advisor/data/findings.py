"""Stable finding codes and a bounded collector for them.

A finding is a problem (or a fact worth knowing) about the data, with a stable ``code`` that scripts
may match on, a severity, and locations (``file:line``). An ``error`` finding makes its record
invalid: the record is counted in ``invalid`` and left out of everything else. ``warning`` and
``info`` findings leave the record in use.

The collector keeps every count but only the first few locations of each code, so a file with a
million bad lines costs no more memory than one with ten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR, WARNING, INFO = "error", "warning", "info"

# code -> (severity, what it means). Codes are stable: rename never, add freely.
CODES: dict[str, tuple[str, str]] = {
    # file-level
    "file_missing": (ERROR, "the data file does not exist"),
    "base_model_missing": (WARNING, "base_model names a local directory that does not exist or holds no model (no config.json): token counts and the estimate fall back"),
    "file_not_utf8": (ERROR, "a line is not valid UTF-8"),
    "empty_file": (ERROR, "the file holds no records"),
    "blank_line": (INFO, "blank line, skipped"),
    "invalid_json": (ERROR, "the line is not valid JSON"),
    "doc_outside_project": (WARNING, "a file under data.docs resolves outside the project directory: not read"),
    "doc_symlink_loop": (WARNING, "a link under data.docs is a symlink loop or dangles: not read"),
    # the 7 classes of OpenAI's chat-format data-prep checks
    "data_type": (ERROR, "the record is not a JSON object"),
    "missing_messages_list": (ERROR, "chat record without a 'messages' list"),
    "message_missing_key": (ERROR, "a message lacks 'role' or 'content'"),
    "message_unrecognized_key": (ERROR, "a message has a key other than role, content, name, weight, tool_calls"),
    "unrecognized_role": (ERROR, "a message role is not system, user, assistant or tool"),
    "missing_content": (ERROR, "a message's content is missing or not a string"),
    "example_missing_assistant_message": (ERROR, "no assistant message to learn from"),
    "no_prompt": (ERROR, "the assistant reply to learn is the first message: nothing before it to answer"),
    # chat structure
    "missing_system_message": (INFO, "no system message"),
    "missing_user_message": (WARNING, "no user message"),
    "role_order": (WARNING, "roles out of order (system not first, two turns of one role in a row, or not user first)"),
    "last_message_not_assistant": (WARNING, "the conversation does not end with an assistant message"),
    "empty_content": (ERROR, "empty or whitespace-only text where the model must read or write"),
    # other formats
    "unknown_format": (ERROR, "the record matches none of chat, alpaca, prompt_completion, preference"),
    "format_mismatch": (ERROR, "the record is not of the format declared in project.yaml"),
    "mixed_formats": (WARNING, "records of several formats in one file"),
    "missing_field": (ERROR, "a required field is missing"),
    "wrong_type": (ERROR, "a field has the wrong type (text expected)"),
    "unrecognized_key": (WARNING, "a key the format does not define"),
    # preference
    "chosen_equals_rejected": (ERROR, "chosen and rejected are identical: the pair teaches nothing"),
    "empty_chosen": (ERROR, "the chosen reply is empty"),
    "empty_rejected": (ERROR, "the rejected reply is empty"),
    "mixed_prompt_formats": (WARNING, "prompts are text in some pairs and message lists in others"),
    "implicit_prompt": (INFO, "no 'prompt' key: the prompt was taken as the shared start of chosen and rejected"),
    "embedded_turn_markers": (WARNING, "a reply contains fake 'Human:'/'Assistant:' turns"),
    # lengths
    "over_context": (WARNING, "the example is longer than the model's context window"),
    "over_max_length": (INFO, "the example is longer than train.max_length and will be truncated"),
    "record_too_long": (WARNING, "the record is longer than data_checks records.max_chars characters: analysed "
                        "only up to that many, and not trained on or evaluated"),
    # duplicates and leakage
    "duplicate_exact": (WARNING, "an earlier record is identical"),
    "duplicate_normalised": (WARNING, "an earlier record is identical after normalising case, spacing, punctuation"),
    "near_duplicate": (INFO, "an earlier record is nearly identical (MinHash Jaccard estimate)"),
    "conflicting_outputs": (WARNING, "the same input appears with different outputs"),
    "leakage_exact": (WARNING, "an eval record also appears in train"),
    "leakage_normalised": (WARNING, "an eval input equals a train input after normalising"),
    "leakage_ngram": (WARNING, "most 13-grams of an eval record occur in train (lm-eval-harness decontamination)"),
    "leakage_output": (WARNING, "an eval output occurs in train under another input"),
    "leakage_template": (INFO, "an eval record shares only boilerplate (a template, a skeleton) with train"),
    "eval_group_in_train": (INFO, "an eval record's group (document, conversation) also has records in train"),
    # outputs
    "label_imbalance": (WARNING, "label classes are strongly imbalanced"),
    "rare_label": (WARNING, "a label has very few examples"),
    "invalid_json_output": (WARNING, "an output looks like JSON but does not parse"),
    "inconsistent_json_structure": (WARNING, "JSON outputs do not share one key structure"),
    "label_form_mismatch": (WARNING, "an output is not one of the task's labels as written (case, surrounding text, 'Label: x')"),
    "output_form_mismatch": (WARNING, "an output is in another form (JSON, SQL, code, text) than the task asks for or most outputs follow"),
    "refusal_like": (INFO, "the output reads like a refusal"),
    "eval_label_unseen": (WARNING, "an eval label never occurs in train"),
    "lookalike_labels": (WARNING, "two spellings of one label that look alike (homoglyphs, invisible or "
                                  "direction characters, a BOM): the model learns them as different labels"),
    # project.yaml (reported by `advise assess` and `advise run --dry-run` before train or gate refuse them)
    "unknown_train_key": (WARNING, "a key under train: that no installed training plugin takes (a typo?)"),
    "gate_unreadable": (WARNING, "a gate under eval.gates that `advise gate` cannot read (form or metric name)"),
}

SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass
class Location:
    file: str
    line: int | None
    detail: str = ""

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "detail": self.detail}


@dataclass
class CodeTally:
    code: str
    count: int = 0
    examples: list[Location] = field(default_factory=list)


class Findings:
    """Counts findings per code, keeping the first ``keep`` locations of each."""

    def __init__(self, keep: int = 20):
        self.keep = keep
        self._by_code: dict[str, CodeTally] = {}

    def add(self, code: str, file: str, line: int | None, detail: str = "") -> None:
        if code not in CODES:
            raise KeyError(f"unknown finding code {code!r}")
        t = self._by_code.get(code)
        if t is None:
            t = self._by_code[code] = CodeTally(code)
        t.count += 1
        if len(t.examples) < self.keep:
            t.examples.append(Location(file, line, detail[:300]))

    def count(self, code: str) -> int:
        t = self._by_code.get(code)
        return t.count if t else 0

    def merge(self, other: Findings) -> None:
        for code, t in other._by_code.items():
            mine = self._by_code.setdefault(code, CodeTally(code))
            mine.count += t.count
            room = self.keep - len(mine.examples)
            if room > 0:
                mine.examples.extend(t.examples[:room])

    def to_list(self) -> list[dict]:
        rows = sorted(self._by_code.values(), key=lambda t: (SEVERITY_ORDER[CODES[t.code][0]], -t.count, t.code))
        return [
            {
                "code": t.code,
                "severity": CODES[t.code][0],
                "count": t.count,
                "message": CODES[t.code][1],
                "examples": [e.to_dict() for e in t.examples],
            }
            for t in rows
        ]
