"""Reading JSON Lines training data in any contract format, one record at a time.

:func:`iter_records` streams a file, detects each record's format, validates it, reports problems to
a :class:`~advisor.data.findings.Findings` with file and line, and yields the valid records normalised
to one shape (:class:`Record`). Invalid records are counted and skipped; the rest of the file is
still used. Nothing is held in memory beyond the record being read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from advisor.data.findings import Findings

ROLES = {"system", "user", "assistant", "tool", "function"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"}
EXTRA_KEYS = {"id", "tags", "metadata", "references", "source", "label", "weight", "tools"}
FORMAT_KEYS = {
    "chat": {"messages"},
    "alpaca": {"instruction", "input", "output"},
    "prompt_completion": {"prompt", "completion"},
    "preference": {"prompt", "chosen", "rejected"},
}
TURN_MARKERS = ("\n\nHuman:", "\n\nAssistant:")
TURN_STARTS = ("Human:", "Assistant:")  # a reply that opens with a fake turn


def _context(prompt: list[dict]) -> str:
    """The non-user messages of a prompt (system, earlier assistant turns), joined."""
    return "\x1f".join(m["content"] for m in prompt if m.get("role") != "user")


@dataclass(slots=True)
class Record:
    """One valid example, normalised whatever its format.

    ``prompt`` is the conversation the model reads (system/user/... messages, without the final
    target); ``output`` is the reply it must learn (the last assistant message, ``output``,
    ``completion`` or ``chosen``). ``key`` is the distinctive input text (user content without the
    system prompt or a shared instruction), used for retrieval, n-gram leakage and signals; duplicates
    and exact leakage compare ``(context, key)``.
    """

    line: int
    fmt: str
    prompt: list[dict]
    output: str
    key: str
    rejected: str | None = None
    targets: list[str] = field(default_factory=list)  # every assistant turn that is trained on
    extra: dict | None = None  # keys beyond the format (references, tags, id ...)
    # what else the prompt says besides ``key`` (system prompt, earlier assistant turns, an alpaca
    # instruction over an input): two records with the same key and another context are different
    # examples, so duplicates, conflicts and exact leakage compare (context, key)
    context: str = ""
    # > 0: the record's texts held this many characters, over the per-record limit, and were clipped to
    # it (see clip_record); assess analyses the clipped record, training and eval skip it
    clipped: int = 0

    @property
    def texts(self) -> list[str]:
        """Every text of the example, message by message (for token counts)."""
        return [m["content"] for m in self.prompt if isinstance(m.get("content"), str)] + (
            self.targets or [self.output]
        )


def detect_format(obj: dict) -> str | None:
    if "messages" in obj:
        return "chat"
    if "chosen" in obj or "rejected" in obj:
        return "preference"
    if "instruction" in obj or "output" in obj:
        return "alpaca"
    if "prompt" in obj or "completion" in obj:
        return "prompt_completion"
    return None


class _Invalid(Exception):
    def __init__(self, code: str, detail: str = ""):
        self.code, self.detail = code, detail


def _text(obj: dict, key: str, required: bool = True) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise _Invalid("missing_field", f"'{key}' is missing")
        return None
    v = obj[key]
    if not isinstance(v, str):
        raise _Invalid("wrong_type", f"'{key}' is {type(v).__name__}, expected text")
    return v


def _nonempty(v: str, key: str, code: str = "empty_content") -> str:
    if not v.strip():
        raise _Invalid(code, f"'{key}' is empty")
    return v


class _Checker:
    def __init__(self, file: str, findings: Findings):
        self.file = file
        self.f = findings
        self._shapes: dict[tuple, tuple] = {}  # role sequence -> what it implies (see _chat_shape)

    def warn(self, code: str, line: int, detail: str = "") -> None:
        self.f.add(code, self.file, line, detail)

    # -- chat ------------------------------------------------------------------------------------
    def messages(self, msgs, line: int, where: str = "messages") -> list[dict]:
        if type(msgs) is list and msgs:
            # fast path: every message is exactly {"role": <known role>, "content": <non-blank text>}
            out = []
            for m in msgs:
                if type(m) is not dict or len(m) != 2:
                    break
                role = m.get("role")
                content = m.get("content")
                if role.__class__ is not str or role not in ROLES or content.__class__ is not str or (
                    not content or content.isspace()
                ):
                    break
                out.append({"role": role, "content": content})
            else:
                return out
        return self._messages(msgs, line, where)

    def _messages(self, msgs, line: int, where: str = "messages") -> list[dict]:
        if not isinstance(msgs, list) or not msgs:
            raise _Invalid("missing_messages_list", f"'{where}' must be a non-empty list of messages")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m or "content" not in m and not m.get("tool_calls"):
                raise _Invalid("message_missing_key", f"{where}[{i}] lacks 'role' or 'content'")
            extra = set(m) - MESSAGE_KEYS
            if extra:
                raise _Invalid("message_unrecognized_key", f"{where}[{i}] has key(s) {sorted(extra)}")
            role = m["role"]
            if not isinstance(role, str) or role not in ROLES:  # a list or object: not a role either
                raise _Invalid("unrecognized_role", f"{where}[{i}] has role {role!r}")
            content = m.get("content")
            if content is None and m.get("tool_calls"):
                content = ""
            elif not isinstance(content, str) or content == "":
                raise _Invalid("missing_content", f"{where}[{i}] ({role}) has no text content")
            elif not content.strip():
                raise _Invalid("empty_content", f"{where}[{i}] ({role}) is whitespace only")
            out.append({"role": role, "content": content} if len(m) == 2 else {**m, "content": content})
        return out

    def chat(self, obj: dict, line: int) -> Record:
        if "messages" not in obj:
            raise _Invalid("missing_messages_list", "no 'messages' key")
        rec = self._chat_fast(obj["messages"], line)
        if rec is not None:
            return rec
        msgs = self.messages(obj["messages"], line)
        last, users, assistants = self._shape(tuple([m["role"] for m in msgs]), line)
        output = msgs[last]["content"]
        targets = [msgs[i]["content"] for i in assistants if msgs[i].get("weight", 1) != 0]
        key = msgs[users[0]]["content"] if len(users) == 1 else "\n".join([msgs[i]["content"] for i in users])
        return Record(line, "chat", msgs[:last], output, key, targets=targets or [output],
                      context=_context(msgs[:last]))

    def _shape(self, roles: tuple, line: int) -> tuple[int, list[int], list[int]]:
        """Check a sequence of roles once per distinct sequence (cached); report its warnings at
        ``line``; return (index of the last assistant message, user indices, assistant indices)."""
        shape = self._shapes.get(roles)
        if shape is None:
            shape = _chat_shape(roles)
            if len(self._shapes) < 4096:
                self._shapes[roles] = shape
        error, warnings, last, users, assistants = shape
        if error is not None:
            raise _Invalid(*error)
        for code, detail in warnings:
            self.f.add(code, self.file, line, detail)
        return last, users, assistants

    def _chat_fast(self, msgs, line: int) -> Record | None:
        """The common case in a few C-level passes: every message is exactly {"role": <known role>,
        "content": <non-blank text>}. None when the record needs the full checks of :meth:`chat`."""
        if msgs.__class__ is not list or not msgs:
            return None
        try:
            if sum(map(len, msgs)) != 2 * len(msgs):
                return None
            roles = tuple([m["role"] for m in msgs])  # with the sum: each message has exactly these two keys
            contents = [m["content"] for m in msgs]
            if not all(map(str.strip, contents)):  # TypeError when one is not text
                return None
            known = roles in self._shapes  # TypeError when a role is not hashable
        except (TypeError, KeyError):
            return None
        if not known and not all(r.__class__ is str and r in ROLES for r in roles):
            return None
        last, users, assistants = self._shape(roles, line)
        output = contents[last]
        key = contents[users[0]] if len(users) == 1 else "\n".join([contents[i] for i in users])
        prompt = [{"role": r, "content": c} for r, c in zip(roles[:last], contents[:last], strict=True)]
        ctx = "\x1f".join([contents[i] for i in range(last) if roles[i] != "user"]) if last > len(users) else ""
        return Record(line, "chat", prompt, output, key, targets=[contents[i] for i in assistants], context=ctx)

    # -- alpaca ----------------------------------------------------------------------------------
    def alpaca(self, obj: dict, line: int) -> Record:
        instruction = _nonempty(_text(obj, "instruction"), "instruction")
        inp = _text(obj, "input", required=False) or ""
        output = _nonempty(_text(obj, "output"), "output")
        user = instruction + ("\n\n" + inp if inp.strip() else "")
        key = inp if inp.strip() else instruction
        return Record(line, "alpaca", [{"role": "user", "content": user}], output, key,
                      context=instruction if inp.strip() else "")

    # -- prompt / completion ---------------------------------------------------------------------
    def _prompt(self, obj: dict, line: int) -> list[dict]:
        p = obj.get("prompt")
        if isinstance(p, list):
            return self.messages(p, line, "prompt")
        text = _nonempty(_text(obj, "prompt"), "prompt")
        return [{"role": "user", "content": text}]

    def _reply(self, obj: dict, key: str, line: int, empty_code: str = "empty_content") -> str:
        v = obj.get(key)
        if isinstance(v, list):
            msgs = self.messages(v, line, key)
            texts = [m["content"] for m in msgs if m["role"] == "assistant"]
            if not texts:
                raise _Invalid("example_missing_assistant_message", f"'{key}' has no assistant message")
            return _nonempty("\n".join(texts), key, empty_code)
        return _nonempty(_text(obj, key), key, empty_code)

    def prompt_completion(self, obj: dict, line: int) -> Record:
        prompt = self._prompt(obj, line)
        completion = self._reply(obj, "completion", line)
        key = "\n".join(m["content"] for m in prompt if m["role"] == "user") or prompt[-1]["content"]
        return Record(line, "prompt_completion", prompt, completion, key, context=_context(prompt))

    # -- preference ------------------------------------------------------------------------------
    def preference(self, obj: dict, line: int) -> Record:
        if "prompt" not in obj and isinstance(obj.get("chosen"), str) and isinstance(obj.get("rejected"), str):
            prompt_text, chosen, rejected = split_implicit_prompt(obj["chosen"], obj["rejected"])
            implicit = True
            prompt = transcript_to_messages(prompt_text)
            if not prompt:
                raise _Invalid("missing_field", "no 'prompt' and no shared start of chosen and rejected")
        else:
            implicit = False
            prompt = self._prompt(obj, line)
            chosen = self._reply_raw(obj, "chosen", line)
            rejected = self._reply_raw(obj, "rejected", line)
        if not chosen.strip():
            raise _Invalid("empty_chosen", "'chosen' is empty")
        if not rejected.strip():
            raise _Invalid("empty_rejected", "'rejected' is empty")
        if chosen.strip() == rejected.strip():
            raise _Invalid("chosen_equals_rejected", "")
        if implicit:
            self.warn("implicit_prompt", line)
        for name, reply in (("chosen", chosen), ("rejected", rejected)):
            if any(mark in reply for mark in TURN_MARKERS) or reply.lstrip().startswith(TURN_STARTS):
                self.warn("embedded_turn_markers", line, f"'{name}' contains a turn marker")
        key = "\n".join(m["content"] for m in prompt if m["role"] == "user") or prompt[-1]["content"]
        return Record(line, "preference", prompt, chosen, key, rejected=rejected, context=_context(prompt))

    def _reply_raw(self, obj: dict, key: str, line: int) -> str:
        v = obj.get(key)
        if isinstance(v, list):
            return self._reply(obj, key, line, f"empty_{key}")
        v = _text(obj, key)
        return v


def _chat_shape(roles: tuple) -> tuple:
    """What a chat record's role sequence implies, the same for every record with that sequence:
    (error or None, warnings [(code, detail)], index of the last assistant message, indices of the
    user messages, indices of the assistant messages)."""
    if "assistant" not in roles:
        return ("example_missing_assistant_message", "no assistant message"), [], 0, (), ()
    last = max(i for i, r in enumerate(roles) if r == "assistant")
    if last == 0:  # the reply to learn is the first message: training would get an empty prompt
        return ("no_prompt", f"no message before the assistant reply to learn ({' > '.join(roles)})"), [], 0, (), ()
    warnings = []
    if "system" not in roles:
        warnings.append(("missing_system_message", ""))
    if "user" not in roles:
        warnings.append(("missing_user_message", ""))
    body = [r for r in roles if r != "system"]
    if ("system" in roles and roles.index("system") != 0) or roles.count("system") > 1 or (
        body and body[0] != "user" and "user" in roles
    ) or any(a == b and a in ("user", "assistant") for a, b in zip(body, body[1:], strict=False)):
        warnings.append(("role_order", " > ".join(roles)))
    if roles[-1] != "assistant":
        warnings.append(("last_message_not_assistant", f"ends with {roles[-1]}"))
    users = tuple(i for i, r in enumerate(roles) if r == "user")
    assistants = tuple(i for i, r in enumerate(roles) if r == "assistant")
    return None, warnings, last, users, assistants


def _cap(lengths: list[int], limit: int) -> int:
    """The largest per-text length c with sum(min(n, c) for n in lengths) <= limit (water-filling:
    short texts stay whole, the long ones share what is left equally)."""
    left, k = limit, len(lengths)
    for i, n in enumerate(sorted(lengths)):
        share = left // (k - i)
        if n > share:
            return share
        left -= n
    return max(lengths, default=0)


def clip_record(rec: Record, limit: int) -> int:
    """Clip a record's texts in place so that together they hold at most ``limit`` characters (short
    texts whole, the long ones cut to an equal share each). Returns the characters the record held
    before (0 when it was within the limit and is unchanged)."""
    texts = rec.texts + ([rec.rejected] if rec.rejected is not None else [])
    total = sum(map(len, texts))
    if total <= limit:
        return 0
    c = _cap([len(t) for t in texts], limit)
    rec.prompt = [m if len(m["content"]) <= c else {**m, "content": m["content"][:c]} for m in rec.prompt]
    rec.output = rec.output[:c]
    rec.targets = [t[:c] for t in rec.targets]
    if rec.rejected is not None:
        rec.rejected = rec.rejected[:c]
    rec.key = rec.key[:limit]
    rec.context = rec.context[:limit]
    rec.clipped = total
    return total


def render_plain(messages: list[dict]) -> str:
    """The prompt as plain text, for models without a chat template. Training and eval both use this
    one rendering (the reply follows "Assistant:" after a space), so a tuned model is asked exactly as
    it was trained."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


def split_implicit_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two transcripts that share a prefix into (prompt, chosen reply, rejected reply).

    The prompt is their longest common prefix, cut back to the last "\\n\\nAssistant:" in it, so a
    reply that happens to start with the same words is not cut (hh-rlhf style transcripts).
    """
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind("\n\nAssistant:", 0, n)
    if cut >= 0:
        n = cut + len("\n\nAssistant:")
    return chosen[:n], chosen[n:].strip(), rejected[n:].strip()


def transcript_to_messages(text: str) -> list[dict]:
    """'\\n\\nHuman: ..\\n\\nAssistant: ..' -> messages, dropping empty turns."""
    parts = _TURN_SPLIT.split("\n\n" + text.lstrip("\n"))
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2], strict=False):
        content = content.strip()
        if content:
            msgs.append({"role": "user" if role == "Human" else "assistant", "content": content})
    if not msgs and text.strip():
        msgs = [{"role": "user", "content": text.strip()}]
    return msgs


_TURN_SPLIT = re.compile(r"\n\n(Human|Assistant):")


@dataclass
class FileStats:
    """What reading one file found, beyond the records themselves."""

    path: str
    lines: int = 0
    examples: int = 0
    invalid: int = 0
    messages: int = 0  # of valid examples: the prompt's messages plus the reply
    formats: dict[str, int] = field(default_factory=dict)
    prompt_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def format(self) -> str | None:
        return max(self.formats, key=self.formats.get) if self.formats else None


def _line_parser(file: str, findings: Findings, stats: FileStats, declared: str = "auto", max_chars: int | None = None):
    """A function (raw line, line number) -> the valid Record of that line, or None after reporting why.

    ``max_chars`` bounds the characters of one record: a longer one is reported (``record_too_long``)
    and clipped to the bound (:func:`clip_record`), so no later step holds or tokenizes more."""
    chk = _Checker(file, findings)
    handlers = {
        "chat": chk.chat,
        "alpaca": chk.alpaca,
        "prompt_completion": chk.prompt_completion,
        "preference": chk.preference,
    }
    loads, decode_error, auto = orjson.loads, orjson.JSONDecodeError, declared == "auto"
    formats, prompt_kinds, add = stats.formats, stats.prompt_kinds, findings.add

    def parse(raw: bytes, lineno: int) -> Record | None:
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark (Windows editors write one): valid UTF-8, not data
        try:
            obj = loads(raw)
        except decode_error as e:
            if not raw.strip():
                add("blank_line", file, lineno)
                return None
            if "UTF-8" in str(e):
                add("file_not_utf8", file, lineno, str(e))
            else:
                add("invalid_json", file, lineno, f"{e.msg} at column {e.colno}")
            stats.invalid += 1
            return None
        if obj.__class__ is dict and auto and "messages" in obj:
            fmt = "chat"  # the common case, as detect_format would say
        else:
            if not isinstance(obj, dict):
                add("data_type", file, lineno, f"got a JSON {type(obj).__name__}")
                stats.invalid += 1
                return None
            fmt = detect_format(obj)
            if not auto and fmt != declared:
                if fmt is None:
                    fmt = declared  # validate against the declared format: names the missing field
                else:
                    add("format_mismatch", file, lineno, f"looks like {fmt}, project.yaml says {declared}")
                    stats.invalid += 1
                    return None
            if fmt is None:
                add("unknown_format", file, lineno, f"keys {sorted(obj)[:8]}")
                stats.invalid += 1
                return None
        try:
            rec = handlers[fmt](obj, lineno)
        except _Invalid as bad:
            add(bad.code, file, lineno, bad.detail)
            stats.invalid += 1
            return None
        if len(obj) > 1 or fmt != "chat":
            extra = set(obj) - FORMAT_KEYS[fmt]
            if extra:
                unknown = extra - EXTRA_KEYS
                if unknown:
                    add("unrecognized_key", file, lineno, f"{sorted(unknown)}")
                rec.extra = {k: obj[k] for k in extra}
        # a record of n characters takes at least n bytes of JSON: only long lines need counting
        if max_chars is not None and len(raw) > max_chars:
            total = clip_record(rec, max_chars)
            if total:
                add("record_too_long", file, lineno,
                    f"{total:,} characters > the limit of {max_chars:,} (data_checks records.max_chars): "
                    f"only {max_chars:,} analysed; training and eval skip the record")
        formats[fmt] = formats.get(fmt, 0) + 1
        if fmt in ("prompt_completion", "preference") and "prompt" in obj:
            kind = "messages" if isinstance(obj["prompt"], list) else "text"
            prompt_kinds[kind] = prompt_kinds.get(kind, 0) + 1
        stats.examples += 1
        stats.messages += len(rec.prompt) + 1
        return rec

    return parse


def iter_records(
    path: Path, findings: Findings, stats: FileStats, declared: str = "auto", display: str | None = None,
    *, span: tuple[int, int, int] | None = None, offsets: list[int] | None = None, max_chars: int | None = None,
) -> Iterator[Record]:
    """Yield the valid records of a JSONL file; report every problem to ``findings``.

    ``span`` = (first byte, end byte, number of the first line) reads only the lines that start in
    that part of the file (cut at line starts); an empty file is then the caller's to report.
    ``offsets`` receives the byte offset of each record yielded (see :func:`records_at`).
    ``max_chars``: the per-record bound (see :func:`_line_parser`).
    """
    file = display or str(path)
    parse = _line_parser(file, findings, stats, declared, max_chars)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        findings.add("file_missing", file, None)
        return
    start, end, first = span if span is not None else (0, float("inf"), 1)
    pos = start
    with fh:
        if start:
            fh.seek(start)
        for lineno, raw in enumerate(fh, first):
            here = pos
            pos += len(raw)
            if here >= end:
                break
            stats.lines = lineno
            rec = parse(raw, lineno)
            if rec is not None:
                if offsets is not None:
                    offsets.append(here)
                yield rec
    if span is None and stats.examples == 0 and stats.invalid == 0:
        findings.add("empty_file", file, None)


def records_at(path: Path, where: list[tuple[int, int]], declared: str = "auto", display: str | None = None,
               max_chars: int | None = None) -> list[Record]:
    """The records at (byte offset, line number) positions of a file, as :func:`iter_records` yields them."""
    file = display or str(path)
    parse = _line_parser(file, Findings(), FileStats(file), declared, max_chars)
    out = []
    with open(path, "rb") as fh:
        for offset, lineno in where:
            fh.seek(offset)
            rec = parse(fh.readline(), lineno)
            if rec is not None:
                out.append(rec)
    return out


def load_records(path: Path, declared: str = "auto", display: str | None = None,
                 max_chars: int | None = None) -> tuple[list[Record], Findings, FileStats]:
    """Read a whole file into memory (for eval and training; assess streams instead). Records over
    ``max_chars`` come clipped, with ``clipped`` set (the caller decides to skip them)."""
    findings = Findings()
    stats = FileStats(str(display or path))
    recs = list(iter_records(path, findings, stats, declared, display, max_chars=max_chars))
    return recs, findings, stats
