"""One streaming pass over a data file: counts, tokens, duplicates, leakage and outputs.

:func:`profile_file` reads the file through :func:`advisor.data.records.iter_records` and feeds every
valid record to the accumulators. Memory stays bounded: per record it keeps a few hashes and a
MinHash signature, and (on large files) token counts of a seeded sample only; and the work per record
is bounded too: a record over data_checks ``records.max_chars`` is reported and only that many of its
characters are analysed and tokenized (the reader clips it, see advisor.data.records.clip_record).

Large files are read in parallel: cut at line starts into one part per CPU, each part streamed by a
forked worker process (:func:`_scan`), and merged in line order by the main process, so every count,
finding and sample is the one a single sequential pass gives. The seeded samples (tokens, records
for the goal signals) are drawn by the main process from the same random sequences as that pass;
the sampled records are then read again by their byte offsets. Within a process, tokenizing and
MinHash (Rust and numpy, which release the GIL) run on a worker thread beside the reading.

One concept, one file (about 600 lines): the pass, its parallel split and its merge must agree line
for line with a sequential pass, so they stay together.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import signal
import sys
import threading
from array import array
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advisor.assess.dedup import NearDuplicates
from advisor.assess.leakage import LeakageIndex, record_groups
from advisor.assess.outputs import Expected, OutputStats
from advisor.assess.tokens import TokenCounter
from advisor.data.findings import Findings
from advisor.data.records import FileStats, Record, iter_records, records_at
from advisor.data.textnorm import normalise
from advisor.rubric import value

SAMPLE_RECORDS = 2000  # records kept for goal signals (docs overlap, embeddings)
BACKGROUND_FROM_LINES = 1000  # files from this size use a worker thread for tokenizing and MinHash
PARALLEL_FROM_LINES = 50_000  # files from this size are read by several processes (ADVISE_WORKERS)
# a forked worker that has not finished by then is taken for stuck and the file is read in one process:
# generous (the sequential pass reads ~100k examples in a few CPU seconds), so only a hang reaches it
PARALLEL_DEADLINE_S = 300.0
PARALLEL_DEADLINE_PER_LINE_S = 0.002
LINES_PER_WORKER = 25_000
MAX_WORKERS = 8


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


def _is_long(texts: list[str], context: int | None) -> bool:
    # byte-level tokenizers never make more tokens than bytes: only long records can overflow
    return context is not None and sum(map(len, texts)) * 4 >= context


def _token_totals(counter: TokenCounter, batch: list[tuple[Record, list[str]]], counts: list[int] | None = None):
    """(line, tokens of the example, tokens of each trained assistant turn) of each (record, texts)."""
    if counts is None:
        counts = counter.count([t for _, texts in batch for t in texts])
    out = []
    start = 0
    for rec, texts in batch:
        n = len(texts)
        toks = counts[start : start + n]
        start += n
        out.append((rec.line, sum(toks) + counter.per_message * n, toks[n - len(rec.targets or [rec.output]) :]))
    return out


def _count_records(counter: TokenCounter, recs: list[Record]) -> list[tuple[int, int, list[int]]]:
    return _token_totals(counter, [(r, r.texts) for r in recs])


class _TokenStats:
    """Token counts per example and per assistant turn, on every record or a seeded Bernoulli sample.

    With a tokenizer and an ``executor``, batches are encoded on its worker thread (the Rust
    tokenizer releases the GIL) while the caller reads on; results are booked in order.
    """

    def __init__(self, counter: TokenCounter, sample_p: float, context: int | None, max_length: int,
                 file: str, findings: Findings, seed: int, executor: Executor | None = None):
        self.c, self.p, self.context, self.max_length = counter, sample_p, context, max_length
        self.file, self.findings = file, findings
        self.rng = random.Random(seed)
        self.executor = executor if counter.exact else None
        self.pending: deque = deque()  # futures of booked-in-order results, oldest first
        self.batch: list[tuple[Record, list[str]]] = []
        self.example_tokens: list[int] = []
        self.turn_tokens: list[int] = []
        self.over_context = 0
        self.over_max = 0

    def add(self, rec: Record) -> None:
        texts = rec.texts
        if self.p >= 1.0 or _is_long(texts, self.context) or self.rng.random() < self.p:
            self.batch.append((rec, texts))
            if len(self.batch) >= 1024:
                self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        if self.executor is None:
            self.book(_token_totals(self.c, batch))
            return
        self.pending.append(self.executor.submit(_token_totals, self.c, batch))
        while self.pending and (len(self.pending) > 4 or self.pending[0].done()):
            self.book(self.pending.popleft().result())

    def finish(self) -> None:
        """Count what is still batched or in flight."""
        self.flush()
        while self.pending:
            self.book(self.pending.popleft().result())

    def book(self, totals: list[tuple[int, int, list[int]]]) -> None:
        for line, total, turns in totals:
            self.example_tokens.append(total)
            self.turn_tokens.extend(turns)
            if self.context and total > self.context:
                self.over_context += 1
                self.findings.add("over_context", self.file, line, f"{total} tokens > {self.context}")
            elif total > self.max_length:
                self.over_max += 1
                self.findings.add("over_max_length", self.file, line, f"{total} tokens > {self.max_length}")

    def summary(self, n_examples: int) -> dict:
        self.finish()
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


@dataclass
class _Job:
    """What reading one file needs (inherited by forked worker processes)."""

    path: Path
    role: str
    declared: str
    display: str
    rubric: dict
    counter: TokenCounter
    leakage: LeakageIndex | None
    context: int | None
    max_length: int
    p: float  # share of records token-counted (1.0: all)
    seed: int
    keep: int  # locations kept per finding code
    expected_form: Expected | str | None = None  # the output form and label set the task asks for
    max_chars: int | None = None  # characters analysed per record (data_checks records.max_chars)

    def near(self, executor: Executor | None = None) -> NearDuplicates:
        r = self.rubric
        return NearDuplicates(
            shingle=value(r, "duplicates", "shingle_chars"),
            perms=value(r, "duplicates", "minhash_permutations"),
            bands=value(r, "duplicates", "minhash_bands"),
            threshold=value(r, "duplicates", "near_duplicate_jaccard"),
            max_chars=value(r, "duplicates", "text_chars"),
            seed=self.seed + 1,
            executor=executor,
        )


@dataclass
class _Part:
    """What one reader found in its part of a file: per valid record, in line order, its line, hashes
    (exact, normalised, normalised input, normalised output) and MinHash signature."""

    stats: FileStats
    findings: Findings
    outs: OutputStats
    lines: np.ndarray
    h: np.ndarray
    hn: np.ndarray
    hk: np.ndarray
    ho: np.ndarray
    preference: np.ndarray  # bool: preference pairs never conflict
    sig: np.ndarray
    chosen_len: int
    rejected_len: int
    tok: _TokenStats | None = None  # a sole part counts tokens and samples records as it reads
    sample: list[Record] | None = None
    offsets: np.ndarray | None = None  # one of several parts: where each record is, to read it again
    long: np.ndarray | None = None
    leak: tuple | None = None


def _scan(job: _Job, span: tuple[int, int, int] | None, executor: Executor | None) -> _Part:
    """Read a file (``span`` None) or one part of it; a sole part also counts tokens and samples."""
    sole = span is None
    findings = Findings(job.keep)
    stats = FileStats(job.display)
    tok = _TokenStats(job.counter, job.p, job.context, job.max_length, job.display, findings, job.seed,
                      executor) if sole else None
    outs = OutputStats(job.rubric, job.display, findings, job.seed, job.expected_form)
    near = job.near(executor)
    leakage, context = job.leakage, job.context
    check_train = leakage.check_train if leakage is not None and job.role != "eval" else None
    add_eval = leakage.add_eval if leakage is not None and job.role == "eval" else None
    groups = leakage.group_fields if leakage is not None else ()
    lines, hs, hns, hks, hos = array("q"), array("q"), array("q"), array("q"), array("q")
    preference = array("b")
    offsets: list[int] | None = None if sole else []
    longs = array("b")
    getrandbits = random.Random(job.seed).getrandbits
    sample: list[Record] = []
    n = chosen_len = rejected_len = 0
    norm_out: dict[str, str] = {}  # normalised short outputs: labels and stock replies repeat
    norm_ctx: dict[str, str] = {}  # normalised contexts: system prompts and instructions repeat
    add_line, add_h, add_hn, add_hk, add_ho = lines.append, hs.append, hns.append, hks.append, hos.append
    near_add, outs_add = near.add, outs.add
    for rec in iter_records(job.path, findings, stats, job.declared, job.display, span=span, offsets=offsets,
                            max_chars=job.max_chars):
        n += 1
        line = rec.line
        key, output, rejected, ctx = rec.key, rec.output, rec.rejected, rec.context
        nkey = normalise(key)
        if ctx:  # another system prompt / instruction / earlier turn makes another example
            nctx = norm_ctx.get(ctx)
            if nctx is None:
                nctx = normalise(ctx)
                if len(norm_ctx) < 10_000:
                    norm_ctx[ctx] = nctx
            key_id, nkey_id = (ctx, key), (nctx, nkey)
        else:
            key_id, nkey_id = key, nkey
        nout = norm_out.get(output)
        if nout is None:
            nout = normalise(output)
            if len(output) <= 80 and len(norm_out) < 50_000:
                norm_out[output] = nout
        add_line(line)
        add_h(hash((key_id, output, rejected)))
        add_hk(hash(nkey_id))
        add_ho(hash(nout))
        if rejected is None:
            add_hn(hash((nkey_id, nout)))
            near_add(line, nkey + " | " + nout)
        else:  # a preference pair is the whole record: the same prompt with another pair is another example
            nrej = normalise(rejected)
            add_hn(hash((nkey_id, nout, nrej)))
            # and near-duplicates compare all of it, each part cut alike, not a prefix filled by a long prompt
            part = near.max_chars // 3
            near_add(line, nkey[-part:] + " | " + nout[:part] + " | " + nrej[:part])
        if check_train is not None:
            check_train(line, key, output, nkey, key_id, nkey_id, nout, record_groups(rec.extra, groups))
        elif add_eval is not None:
            add_eval(line, key, output, nkey, key_id, nkey_id, nout, record_groups(rec.extra, groups))
        if tok is not None:
            tok.add(rec)
        else:
            longs.append(_is_long(rec.texts, context))
        outs_add(line, output)
        if rejected is not None:
            preference.append(1)
            chosen_len += len(output)
            rejected_len += len(rejected)
        else:
            preference.append(0)
        if sole:  # reservoir sample of records for the goal signals
            if n <= SAMPLE_RECORDS:
                sample.append(rec)
            else:
                k = n.bit_length()  # j = rng.randrange(n), as CPython draws it (see _draw_record_sample)
                j = getrandbits(k)
                while j >= n:
                    j = getrandbits(k)
                if j < SAMPLE_RECORDS:
                    sample[j] = rec
    if tok is not None:
        tok.finish()
    _, sig = near.signatures()

    def arr(a: array, dtype=np.int64) -> np.ndarray:
        return np.frombuffer(a, dtype=dtype).copy() if len(a) else np.empty(0, dtype=dtype)

    part = _Part(stats, findings, outs, arr(lines), arr(hs), arr(hns), arr(hks), arr(hos),
                 arr(preference, np.int8).astype(bool), sig, chosen_len, rejected_len)
    if sole:
        part.tok, part.sample = tok, sample
    else:
        part.offsets = np.asarray(offsets, dtype=np.int64)
        part.long = arr(longs, np.int8).astype(bool)
        if check_train is not None:
            part.leak = leakage.train_state()
    return part


def _first(a: np.ndarray) -> np.ndarray:
    """For each element, the index of the first element equal to it."""
    if not len(a):
        return np.empty(0, dtype=np.int64)
    _, first, inverse = np.unique(a, return_index=True, return_inverse=True)
    return first[inverse.ravel()]


def profile_file(path: Path, *, role: str, declared: str, counter: TokenCounter, rubric: dict,
                 findings: Findings, leakage: LeakageIndex | None, context: int | None, max_length: int,
                 display: str, seed: int = 0, expected_form: Expected | str | None = None) -> FileProfile:
    lines = count_lines(path) if path.is_file() else 0
    limit = value(rubric, "tokens", "exact_up_to_examples")
    p = 1.0 if lines <= limit else limit / lines
    job = _Job(path, role, declared, display, rubric, counter, leakage, context, max_length, p, seed, findings.keep,
               expected_form, value(rubric, "records", "max_chars"))
    spans = _spans(path, _workers(lines)) if lines and role != "eval" else []
    if len(spans) < 2:
        with ThreadPoolExecutor(1, "advise-profile") if lines >= BACKGROUND_FROM_LINES else nullcontext() as ex:
            return _merge(job, [_scan(job, None, ex)], findings)
    return _profile_parallel(job, spans, findings)


# -- several processes -------------------------------------------------------------------------------

_JOB: _Job | None = None  # the job of the forked worker processes


def _workers(lines: int) -> int:
    """Processes to read a file of ``lines`` lines: one per usable CPU for large files on Linux
    (forked workers share the eval index and tokenizer; elsewhere fork is unsafe or missing), at
    least LINES_PER_WORKER lines each. ADVISE_WORKERS=N sets the number (1: one process)."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    env = os.environ.get("ADVISE_WORKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if lines < PARALLEL_FROM_LINES:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, MAX_WORKERS, lines // LINES_PER_WORKER))


def _spans(path: Path, k: int) -> list[tuple[int, int, int]]:
    """``k`` parts of a file cut at line starts: (first byte, end byte, number of the first line)."""
    if k < 2:
        return []
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as fh:
        for i in range(1, k):
            fh.seek(max(size * i // k - 1, cuts[-1]))
            fh.readline()  # to the start of the next line
            pos = fh.tell()
            if cuts[-1] < pos < size:
                cuts.append(pos)
        cuts.append(size)
        spans, line = [], 1
        for a, b in zip(cuts, cuts[1:], strict=False):
            spans.append((a, b, line))
            fh.seek(a)
            left = b - a
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                left -= len(chunk)
                line += chunk.count(b"\n")
    return spans


def _scan_worker(span: tuple[int, int, int]) -> _Part:
    with ThreadPoolExecutor(1, "advise-profile") as ex:
        return _scan(_JOB, span, ex)


def _count_worker(where: list[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
    job = _JOB
    return _count_records(job.counter, records_at(job.path, where, job.declared, job.display, job.max_chars))


def _profile_parallel(job: _Job, spans: list[tuple[int, int, int]], findings: Findings) -> FileProfile:
    global _JOB
    if job.leakage is not None:
        job.leakage.freeze()
    _JOB = job
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    # forked workers tokenize one text after another (and tokenizers stays quiet about the fork)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    deadline = PARALLEL_DEADLINE_S + PARALLEL_DEADLINE_PER_LINE_S * (spans[-1][2] if spans else 0)
    # the workers are forked with SIGTERM's default action: the CLI turns SIGTERM into KeyboardInterrupt,
    # a Python handler that a worker stuck in C (a lock inherited from a thread) never runs, so without
    # this the pool's terminate() below would wait on it for ever
    main = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    term = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        pool_cm = multiprocessing.get_context("fork").Pool(len(spans))
    finally:
        if main:
            signal.signal(signal.SIGTERM, term if term is not None else signal.SIG_DFL)
    try:
        with pool_cm as pool:
            if saved is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = saved
            try:
                parts = pool.map_async(_scan_worker, spans, chunksize=1).get(timeout=deadline)
            except multiprocessing.TimeoutError:
                parts = None  # a forked worker is stuck (a lock inherited from a thread of this process)
            if parts is not None:
                return _merge(job, parts, findings, pool)
            pool.terminate()
    finally:
        _JOB = None
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved
    print(f"advise: the parallel read of {job.display} did not finish within {deadline:.0f} s; "
          "reading it in one process instead (the result is the same)", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(1, "advise-profile") as ex:
        return _merge(job, [_scan(job, None, ex)], findings)


def _draw_token_sample(job: _Job, parts: list[_Part]) -> list[tuple[int, int]]:
    """(offset, line) of the records one sequential pass would have token-counted, in order."""
    long = np.concatenate([q.long for q in parts])
    take = np.ones(len(long), dtype=bool)
    if job.p < 1.0:
        rng = random.Random(job.seed)
        short = np.flatnonzero(~long)
        draws = np.fromiter((rng.random() for _ in range(len(short))), dtype=np.float64, count=len(short))
        take[short] = draws < job.p
    offsets = np.concatenate([q.offsets for q in parts])[take]
    lines = np.concatenate([q.lines for q in parts])[take]
    return list(zip(offsets.tolist(), lines.tolist(), strict=True))


def _draw_record_sample(job: _Job, n: int) -> list[int]:
    """Ordinals of the records in the reservoir sample one sequential pass would have kept."""
    slots = list(range(min(n, SAMPLE_RECORDS)))
    getrandbits = random.Random(job.seed).getrandbits
    for i in range(SAMPLE_RECORDS + 1, n + 1):
        # Random.randrange(i) in CPython: getrandbits(i.bit_length()) until below i (_randbelow);
        # spelled out here and in _scan, so both draw the same sequence fast
        k = i.bit_length()
        j = getrandbits(k)
        while j >= i:
            j = getrandbits(k)
        if j < SAMPLE_RECORDS:
            slots[j] = i - 1
    return slots


# -- merging the parts ----------------------------------------------------------------------------------

def _merge(job: _Job, parts: list[_Part], findings: Findings, pool=None) -> FileProfile:
    display = job.display
    stats = FileStats(display)
    for q in parts:
        stats.lines = max(stats.lines, q.stats.lines)
        stats.examples += q.stats.examples
        stats.messages += q.stats.messages
        stats.invalid += q.stats.invalid
        for f, c in q.stats.formats.items():
            stats.formats[f] = stats.formats.get(f, 0) + c
        for f, c in q.stats.prompt_kinds.items():
            stats.prompt_kinds[f] = stats.prompt_kinds.get(f, 0) + c
        findings.merge(q.findings)
    sole = len(parts) == 1
    if not sole and stats.examples == 0 and stats.invalid == 0:
        findings.add("empty_file", display, None)

    counted = None
    if not sole:  # count tokens of the sampled records in the workers while drawing the record sample here
        where = _draw_token_sample(job, parts)
        step = max(1, -(-len(where) // (4 * len(parts))))
        counted = pool.map_async(_count_worker, [where[i : i + step] for i in range(0, len(where), step)])
        ordinals = _draw_record_sample(job, stats.examples)
        all_offsets = np.concatenate([q.offsets for q in parts])
        all_lines = np.concatenate([q.lines for q in parts])
        sample = records_at(job.path, [(int(all_offsets[i]), int(all_lines[i])) for i in ordinals],
                            job.declared, display, job.max_chars)
    else:
        sample = parts[0].sample

    # duplicates: the first record of each exact / normalised hash; an input seen with another output
    lines = np.concatenate([q.lines for q in parts])
    h = np.concatenate([q.h for q in parts])
    hn = np.concatenate([q.hn for q in parts])
    hk = np.concatenate([q.hk for q in parts])
    ho = np.concatenate([q.ho for q in parts])
    pref = np.concatenate([q.preference for q in parts])
    n = len(lines)
    idx = np.arange(n)
    first = _first(h)
    dup_exact = np.flatnonzero(first != idx)
    for i, a in zip(lines[dup_exact].tolist(), lines[first[dup_exact]].tolist(), strict=True):
        findings.add("duplicate_exact", display, i, f"same as line {a}")
    rest = np.flatnonzero(first == idx)
    first_n = _first(hn[rest])
    is_dup_n = first_n != np.arange(len(rest))
    dup_norm = rest[is_dup_n]
    for i, a in zip(lines[dup_norm].tolist(), lines[rest[first_n[is_dup_n]]].tolist(), strict=True):
        findings.add("duplicate_normalised", display, i, f"same as line {a}")
    first_k = _first(hk)
    conflict = np.flatnonzero((first_k != idx) & (ho != ho[first_k]) & ~pref)
    for i, a in zip(lines[conflict].tolist(), lines[first_k[conflict]].tolist(), strict=True):
        findings.add("conflicting_outputs", display, i, f"input also at line {a} with another output")
    duplicate_lines = set(lines[dup_exact].tolist()) | set(lines[dup_norm].tolist())
    several = None
    if pref.any():  # several pairs for one prompt are normal preference data: counted, not duplicates
        _, per_prompt = np.unique(hk[pref], return_counts=True)
        multi = per_prompt[per_prompt > 1]
        several = {"prompts": int(len(per_prompt)), "prompts_with_several_pairs": int(len(multi)),
                   "pairs_in_them": int(multi.sum()), "max_pairs_per_prompt": int(per_prompt.max())}

    near = job.near()
    unique = rest[~is_dup_n]
    sig = np.concatenate([q.sig for q in parts]) if n else np.empty((0, near.perms), dtype=np.uint32)
    near.add_signatures(lines[unique].tolist(), sig[unique])
    del sig
    near_pairs = [(a, b, j) for a, b, j in near.pairs() if b not in duplicate_lines]
    for a, b, j in near_pairs:
        findings.add("near_duplicate", display, b, f"~line {a} (Jaccard ~{j:.2f})")

    if len(stats.formats) > 1:
        main = stats.format
        others = {f: c for f, c in stats.formats.items() if f != main}
        findings.add("mixed_formats", display, None, f"mostly {main}; also {others}")
    if len(stats.prompt_kinds) > 1:
        findings.add("mixed_prompt_formats", display, None, f"{stats.prompt_kinds}")

    outs = parts[0].outs
    for q in parts[1:]:
        outs.merge(q.outs)
    outs.findings = findings
    out_summary = outs.summary()

    if sole:
        tok = parts[0].tok
    else:
        tok = _TokenStats(job.counter, job.p, job.context, job.max_length, display, findings, job.seed)
        for totals in counted.get():
            tok.book(totals)
        if job.leakage is not None and job.role != "eval":
            for q in parts:
                job.leakage.merge_train(q.leak)
    chosen_len = sum(q.chosen_len for q in parts)
    rejected_len = sum(q.rejected_len for q in parts)
    n_dup = len(dup_exact) + len(dup_norm)
    summary = {
        "examples": stats.examples,
        "invalid": stats.invalid,
        "messages": stats.messages,
        "messages_per_example": round(stats.messages / stats.examples, 2) if stats.examples else 0.0,
        "format": stats.format,
        "formats": stats.formats,
        "lines": stats.lines,
        "tokens": tok.summary(stats.examples),
        "duplicates": {
            "exact": len(dup_exact),
            "normalised": len(dup_norm),
            "near": len(near_pairs),
            "conflicting_outputs": len(conflict),
            "share": round(n_dup / n, 4) if n else 0.0,
        },
        "outputs": out_summary,
    }
    if chosen_len or rejected_len:
        summary["preference"] = {
            "pairs": stats.examples,
            "chosen_to_rejected_length": round(chosen_len / rejected_len, 3) if rejected_len else None,
            **(several or {}),
            "prompt_kinds": stats.prompt_kinds,
        }
    label_set = set(out_summary["labels"]["counts"]) if out_summary.get("labels") else None
    return FileProfile(job.role, stats, summary, sample, label_set)
