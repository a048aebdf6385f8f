"""Duplicates within a file, and leakage of eval records into train.

* exact: the same input and output, byte for byte;
* normalised: the same after :func:`advisor.data.textnorm.normalise`;
* near: MinHash over character shingles with LSH banding, confirmed on the signature's Jaccard
  estimate (thresholds in ``rubrics/data_checks.yaml``). Signatures are computed with numpy in
  chunks, so a million records take seconds and bounded memory;
* leakage: exact, normalised-input and 13-gram overlap (lm-evaluation-harness decontamination),
  ignoring 13-grams that are shared templates of the eval set.
"""

from __future__ import annotations

from collections import defaultdict, deque
from concurrent.futures import Executor, Future

import numpy as np

from advisor.data.textnorm import words


def _first_equal_rows(m: np.ndarray) -> np.ndarray:
    """For each row of a uint32 matrix, the index of the first row equal to it."""
    n, w = m.shape
    if not n:
        return np.empty(0, dtype=np.int64)
    if w % 2:
        m = np.concatenate([m, np.zeros((n, 1), dtype=m.dtype)], axis=1)
    packed = np.ascontiguousarray(m, dtype=np.uint32).view(np.uint64)  # two hashes a column
    order = np.lexsort(packed.T[::-1])  # stable: equal rows keep their order
    s = packed[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (s[1:] != s[:-1]).any(axis=1)
    group_first = order[np.flatnonzero(new)]
    first = np.empty(n, dtype=np.int64)
    first[order] = group_first[np.cumsum(new) - 1]
    return first


class NearDuplicates:
    """Streaming MinHash-LSH near-duplicate finder: :meth:`add` texts, then :meth:`pairs`."""

    def __init__(self, *, shingle: int = 5, perms: int = 32, bands: int = 8, threshold: float = 0.8,
                 max_chars: int = 400, chunk: int = 20000, seed: int = 1, executor: Executor | None = None):
        if perms % bands:
            raise ValueError("perms must be a multiple of bands")
        rng = np.random.default_rng(seed)
        self.k, self.perms, self.bands, self.threshold = shingle, perms, bands, threshold
        self.max_chars, self.chunk = max_chars, chunk
        self.a = rng.integers(1, 2**63, size=perms, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=perms, dtype=np.uint64)
        self._pending: list[bytes] = []
        self._lines: list[int] = []
        self._sigs: list[np.ndarray] = []
        self._futures: deque[Future] = deque()  # signatures computing on the executor, oldest first
        self.executor = executor
        self.n = 0

    def add(self, line: int, normalised_text: str) -> None:
        self._pending.append(normalised_text[: self.max_chars].encode("utf-8", "replace") or b" ")
        self._lines.append(line)
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self.n += len(pending)
            if self.executor is None:
                self._sigs.append(self._signatures(pending))
            else:  # numpy releases the GIL: signatures are computed while the caller reads on
                self._futures.append(self.executor.submit(self._signatures, pending))
        while self._futures and (len(self._futures) > 2 or self._futures[0].done()):
            self._sigs.append(self._futures.popleft().result())

    def _wait(self) -> None:
        self._flush()
        while self._futures:
            self._sigs.append(self._futures.popleft().result())

    def _signatures(self, pending: list[bytes]) -> np.ndarray:
        """MinHash signatures of documents (bytes), in cache-sized blocks of whole documents.

        Per block: a rolling polynomial hash of every k-byte window (wrapping uint64 arithmetic),
        minus the windows that straddle two documents; then per permutation the minimum per document
        of ``(a*h + b) >> 32`` (the shift taken after the minimum, which it does not change).
        """
        k = self.k
        docs = [d if len(d) >= k else d.ljust(k) for d in pending]
        lens = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        raw = np.frombuffer(b"".join(docs), dtype=np.uint8)
        ends = np.cumsum(lens)
        starts = ends - lens
        sig = np.empty((len(docs), self.perms), dtype=np.uint32)
        target = 1 << 16  # bytes a block
        shift = np.uint64(32)
        mul = np.uint64(257)
        offsets = np.arange(k - 1)
        d0 = 0
        with np.errstate(over="ignore"):
            while d0 < len(docs):
                d1 = max(d0 + 1, int(np.searchsorted(ends, int(starts[d0]) + target, side="right")))
                b0, b1 = int(starts[d0]), int(ends[d1 - 1])
                seg = raw[b0:b1].astype(np.uint64)
                n_win = b1 - b0 - k + 1
                h = seg[:n_win].copy()
                for j in range(1, k):
                    h *= mul
                    h += seg[j : n_win + j]
                if d1 - d0 > 1:  # drop the k-1 windows that straddle each boundary between documents
                    keep = np.ones(n_win, dtype=bool)
                    keep[(ends[d0 : d1 - 1, None] - b0 - k + 1 + offsets).ravel()] = False
                    h = h[keep]
                first = np.concatenate(([0], np.cumsum(lens[d0 : d1 - 1] - k + 1)))
                t = np.empty_like(h)
                mins = np.empty((self.perms, d1 - d0), dtype=np.uint64)
                for p in range(self.perms):
                    np.multiply(h, self.a[p], out=t)
                    t += self.b[p]
                    mins[p] = np.minimum.reduceat(t, first)  # min(x >> 32) == min(x) >> 32
                mins >>= shift
                sig[d0:d1] = mins.T
                d0 = d1
        return sig

    def signatures(self) -> tuple[list[int], np.ndarray]:
        """(lines, signatures) of everything added so far, in order."""
        self._wait()
        sig = np.concatenate(self._sigs) if self._sigs else np.empty((0, self.perms), dtype=np.uint32)
        self._sigs = [sig]
        return self._lines, sig

    def add_signatures(self, lines: list[int], sig: np.ndarray) -> None:
        """Add records whose signatures were computed elsewhere (by :meth:`signatures` of a twin)."""
        self._wait()
        self._lines.extend(lines)
        self._sigs.append(sig)
        self.n += len(lines)

    def pairs(self) -> list[tuple[int, int, float]]:
        """(earlier line, later line, estimated Jaccard) for each later record's best earlier match.

        Candidates are the records that share a band with an earlier one; each is compared with the
        first record of its bucket, and keeps its best match (the earliest band among equals).
        """
        self._wait()
        if not self._sigs:
            return []
        sig = np.concatenate(self._sigs)
        self._sigs = [sig]
        lines = np.asarray(self._lines)
        rows = self.perms // self.bands
        n = len(sig)
        best_j = np.full(n, -1.0)  # Jaccard estimate of each record's best candidate so far
        best_first = np.full(n, -1, dtype=np.int64)
        for b in range(self.bands):
            first = _first_equal_rows(sig[:, b * rows : (b + 1) * rows])  # earliest record of each bucket
            later = np.flatnonzero(first != np.arange(n))
            if not len(later):
                continue
            first = first[later]
            same = np.empty(len(later), dtype=np.int64)
            for s in range(0, len(later), 65536):  # bounded temporaries
                sl = slice(s, s + 65536)
                same[sl] = np.count_nonzero(sig[first[sl]] == sig[later[sl]], axis=1)
            j = same / self.perms
            ok = (j >= self.threshold) & (j > best_j[later])
            best_j[later[ok]] = j[ok]
            best_first[later[ok]] = first[ok]
        idx = np.flatnonzero(best_first >= 0)
        return sorted((int(lines[best_first[i]]), int(lines[i]), float(best_j[i])) for i in idx)


_GRAM_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd: each word's hash stays recoverable in the window hash


def _window_hashes(word_lists: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram of each word list: (hashes, index of the list each comes from).

    A window hash is a polynomial (wrapping uint64 arithmetic) of the n words' hashes, so the
    windows of many texts are hashed at once with numpy rather than as n-tuples one by one. Word
    hashes are Python's, salted per process: compare only within a process and its forks.
    """
    lens = np.fromiter(map(len, word_lists), dtype=np.int64, count=len(word_lists))
    n_win = np.maximum(lens - n + 1, 0)
    total = int(n_win.sum())
    if not total:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    flat = [w for ws in word_lists for w in ws]
    wh = np.fromiter(map(hash, flat), dtype=np.int64, count=len(flat)).view(np.uint64)
    m = len(wh) - n + 1
    g = wh[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            g *= _GRAM_MUL
            g += wh[k : m + k]
    owner = np.repeat(np.arange(len(word_lists)), n_win)
    starts = np.cumsum(lens) - lens
    first_win = np.cumsum(n_win) - n_win
    pos = starts[owner] + (np.arange(total) - first_win[owner])  # window start inside the flat list
    return g[pos], owner


class LeakageIndex:
    """Index of eval records; train records are checked against it as they stream past.

    An eval item counts as n-gram leakage when at least ``min_share`` of its (non-template) n-grams
    occur in train. ``ngram_any`` keeps lm-evaluation-harness's stricter count (any shared n-gram).
    Train records are checked for n-grams in batches (numpy); :meth:`finish` checks the last batch.
    """

    BATCH = 4096

    def __init__(self, n: int = 13, template_share: float = 0.05, min_items_for_template: int = 20,
                 min_share: float = 0.5):
        self.n = n
        self.template_share = template_share
        self.min_items = min_items_for_template
        self.min_share = min_share
        self.exact: dict[int, int] = {}
        self.norm_input: dict[int, int] = {}
        self.ngrams: dict[int, list[int]] = defaultdict(list)
        self.ngram_total: dict[int, int] = {}
        self.ngram_hit: dict[int, set[int]] = defaultdict(set)
        self.ngram_first_train: dict[int, int] = {}
        self.items = 0
        self.templates = 0
        self.hits: dict[str, dict[int, int]] = {"leakage_exact": {}, "leakage_normalised": {}}
        self._frozen = False
        self._keys = np.empty(0, dtype=np.uint64)
        self._pending_lines: list[int] = []
        self._pending_words: list[list[str]] = []
        self._out_words: dict[str, list[str]] = {}

    def add_eval(self, line: int, raw_key: str, output: str, norm_key: str, key_id=None, nkey_id=None) -> None:
        """``key_id``/``nkey_id``: the identity of the input for exact / normalised matches (context and
        key, see Record.context); default the key itself. N-grams use the key and output only."""
        self.items += 1
        self.exact.setdefault(hash((raw_key if key_id is None else key_id, output)), line)
        self.norm_input.setdefault(hash(norm_key if nkey_id is None else nkey_id), line)
        toks = words(raw_key + " " + output)
        if len(toks) >= self.n:
            for g in set(_window_hashes([toks], self.n)[0].tolist()):
                self.ngrams[g].append(line)

    def freeze(self) -> None:
        """Close the eval index (done by the first :meth:`check_train` otherwise)."""
        if not self._frozen:
            self._freeze()

    def train_state(self) -> tuple:
        """What checking train records found, for :meth:`merge_train` in another process."""
        self._check_pending()
        return self.hits["leakage_exact"], self.hits["leakage_normalised"], dict(self.ngram_hit), self.ngram_first_train

    def merge_train(self, state: tuple) -> None:
        """Add what a copy of this index found on other train records (earliest train line wins)."""
        exact, normalised, hit, first = state
        for mine, theirs in ((self.hits["leakage_exact"], exact), (self.hits["leakage_normalised"], normalised),
                             (self.ngram_first_train, first)):
            for ev, line in theirs.items():
                if ev not in mine or line < mine[ev]:
                    mine[ev] = line
        for ev, grams in hit.items():
            self.ngram_hit[ev] |= grams

    def _freeze(self) -> None:
        if self.items >= self.min_items:
            limit = max(2, self.template_share * self.items)
            self.templates = sum(1 for v in self.ngrams.values() if len(v) >= limit)
            self.ngrams = {g: v for g, v in self.ngrams.items() if len(v) < limit}
        for v in self.ngrams.values():
            for ev in v:
                self.ngram_total[ev] = self.ngram_total.get(ev, 0) + 1
        self._keys = np.sort(np.fromiter(self.ngrams, dtype=np.uint64, count=len(self.ngrams)))
        self._frozen = True

    def check_train(self, line: int, raw_key: str, output: str, norm_key: str, key_id=None, nkey_id=None) -> None:
        if not self._frozen:
            self._freeze()
        e = self.exact.get(hash((raw_key if key_id is None else key_id, output)))
        if e is not None:
            self.hits["leakage_exact"].setdefault(e, line)
            return
        e = self.norm_input.get(hash(norm_key if nkey_id is None else nkey_id))
        if e is not None:
            self.hits["leakage_normalised"].setdefault(e, line)
            return
        if self.ngrams:
            # words(raw_key + " " + output), with the words of outputs that repeat (labels) cached
            out_words = self._out_words.get(output)
            if out_words is None:
                out_words = words(output)
                if len(output) <= 200 and len(self._out_words) < 50_000:
                    self._out_words[output] = out_words
            toks = words(raw_key) + out_words
            if len(toks) >= self.n:
                self._pending_lines.append(line)
                self._pending_words.append(toks)
                if len(self._pending_lines) >= self.BATCH:
                    self._check_pending()

    def _check_pending(self) -> None:
        lines, word_lists = self._pending_lines, self._pending_words
        self._pending_lines, self._pending_words = [], []
        if not lines:
            return
        grams, owner = _window_hashes(word_lists, self.n)
        keys = self._keys
        at = np.minimum(np.searchsorted(keys, grams), len(keys) - 1)
        found = np.flatnonzero(keys[at] == grams)
        for g, o in zip(grams[found].tolist(), owner[found].tolist(), strict=True):  # in train order
            line = lines[o]
            for ev in self.ngrams[g]:
                self.ngram_hit[ev].add(g)
                self.ngram_first_train.setdefault(ev, line)

    def finish(self) -> None:
        """Decide the n-gram leaks (after every train record was checked)."""
        if not self._frozen:
            self._freeze()
        self._check_pending()
        done = set(self.hits["leakage_exact"]) | set(self.hits["leakage_normalised"])
        self.hits["leakage_ngram"] = {
            ev: self.ngram_first_train[ev]
            for ev, grams in self.ngram_hit.items()
            if ev not in done and len(grams) / self.ngram_total[ev] >= self.min_share
        }
        self.ngram_any = len(set(self.ngram_hit) - done)

    def leaked_eval_lines(self) -> set[int]:
        out: set[int] = set()
        for d in self.hits.values():
            out.update(d)
        return out
