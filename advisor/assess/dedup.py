"""Duplicates within a file, and leakage of eval records into train.

* exact: the same input and output, byte for byte;
* normalised: the same after :func:`advisor.data.textnorm.normalise`;
* near: MinHash over character shingles with LSH banding, confirmed on the signature's Jaccard
  estimate (thresholds in ``rubrics/data_checks.yaml``). Signatures are computed with numpy in
  chunks, so a million records take seconds and bounded memory;
* word n-gram window hashes (:func:`window_hashes`), used by :mod:`advisor.assess.leakage`.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future

import numpy as np


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


def window_hashes(word_lists: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
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
