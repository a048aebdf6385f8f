"""Duplicates within a file, and leakage of eval records into train.

* exact: the same input and output, byte for byte;
* normalised: the same after :func:`advisor.textnorm.normalise`;
* near: MinHash over character shingles with LSH banding, confirmed on the signature's Jaccard
  estimate (thresholds in ``rubrics/data_checks.yaml``). Signatures are computed with numpy in
  chunks, so a million records take seconds and bounded memory;
* leakage: exact, normalised-input and 13-gram overlap (lm-evaluation-harness decontamination),
  ignoring 13-grams that are shared templates of the eval set.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from advisor.textnorm import ngram_hashes, words

_MASK32 = np.uint64(0xFFFFFFFF)


class NearDuplicates:
    """Streaming MinHash-LSH near-duplicate finder: :meth:`add` texts, then :meth:`pairs`."""

    def __init__(self, *, shingle: int = 5, perms: int = 32, bands: int = 8, threshold: float = 0.8,
                 max_chars: int = 400, chunk: int = 20000, seed: int = 1):
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
        self.n = 0

    def add(self, line: int, normalised_text: str) -> None:
        self._pending.append(normalised_text[: self.max_chars].encode("utf-8", "replace") or b" ")
        self._lines.append(line)
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        docs = [d if len(d) >= self.k else d.ljust(self.k) for d in self._pending]
        self._pending = []
        lens = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        buf = np.frombuffer(b"".join(docs), dtype=np.uint8).astype(np.uint64)
        # rolling polynomial hash of every k-byte window (wrapping uint64 arithmetic)
        h = np.zeros(len(buf) - self.k + 1, dtype=np.uint64)
        for j in range(self.k):
            h = h * np.uint64(257) + buf[j : len(buf) - self.k + 1 + j]
        starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        # a window is valid when it lies inside one document
        n_valid = lens - self.k + 1
        keep = np.repeat(starts, n_valid) + (np.arange(n_valid.sum()) - np.repeat(np.cumsum(n_valid) - n_valid, n_valid))
        h = h[keep]
        seg = np.concatenate(([0], np.cumsum(n_valid)[:-1]))
        sig = np.empty((len(docs), self.perms), dtype=np.uint32)
        with np.errstate(over="ignore"):
            for p in range(self.perms):
                v = ((h * self.a[p] + self.b[p]) >> np.uint64(32)) & _MASK32
                sig[:, p] = np.minimum.reduceat(v, seg)
        self._sigs.append(sig)
        self.n += len(docs)

    def pairs(self) -> list[tuple[int, int, float]]:
        """(earlier line, later line, estimated Jaccard) for each later record's best earlier match."""
        self._flush()
        if not self._sigs:
            return []
        sig = np.concatenate(self._sigs)
        lines = np.asarray(self._lines)
        rows = self.perms // self.bands
        best: dict[int, tuple[int, float]] = {}
        for b in range(self.bands):
            band = np.ascontiguousarray(sig[:, b * rows : (b + 1) * rows]).view(np.dtype((np.void, 4 * rows))).ravel()
            _, inverse, counts = np.unique(band, return_inverse=True, return_counts=True)
            multi = np.flatnonzero(counts[inverse] > 1)
            if not len(multi):
                continue
            groups: dict[int, list[int]] = defaultdict(list)
            for i in multi:
                groups[int(inverse[i])].append(int(i))
            for members in groups.values():
                if len(members) > 200:  # a huge bucket is one repeated template; compare to its first
                    members = members[:1] + members[1:]
                first = members[0]
                for later in members[1:]:
                    if later in best and best[later][1] >= 1.0:
                        continue
                    j = float(np.mean(sig[first] == sig[later]))
                    if j >= self.threshold and (later not in best or j > best[later][1]):
                        best[later] = (first, j)
        return sorted((int(lines[f]), int(lines[i]), j) for i, (f, j) in best.items())


class LeakageIndex:
    """Index of eval records; train records are checked against it as they stream past.

    An eval item counts as n-gram leakage when at least ``min_share`` of its (non-template) n-grams
    occur in train. ``ngram_any`` keeps lm-evaluation-harness's stricter count (any shared n-gram).
    """

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

    def add_eval(self, line: int, raw_key: str, output: str, norm_key: str) -> None:
        self.items += 1
        self.exact.setdefault(hash((raw_key, output)), line)
        self.norm_input.setdefault(hash(norm_key), line)
        for g in ngram_hashes(words(raw_key + " " + output), self.n):
            self.ngrams[g].append(line)

    def _freeze(self) -> None:
        if self.items >= self.min_items:
            limit = max(2, self.template_share * self.items)
            self.templates = sum(1 for v in self.ngrams.values() if len(v) >= limit)
            self.ngrams = {g: v for g, v in self.ngrams.items() if len(v) < limit}
        for v in self.ngrams.values():
            for ev in v:
                self.ngram_total[ev] = self.ngram_total.get(ev, 0) + 1
        self._frozen = True

    def check_train(self, line: int, raw_key: str, output: str, norm_key: str) -> None:
        if not self._frozen:
            self._freeze()
        e = self.exact.get(hash((raw_key, output)))
        if e is not None:
            self.hits["leakage_exact"].setdefault(e, line)
            return
        e = self.norm_input.get(hash(norm_key))
        if e is not None:
            self.hits["leakage_normalised"].setdefault(e, line)
            return
        if self.ngrams:
            for g in ngram_hashes(words(raw_key + " " + output), self.n):
                for ev in self.ngrams.get(g, ()):
                    self.ngram_hit[ev].add(g)
                    self.ngram_first_train.setdefault(ev, line)

    def finish(self) -> None:
        """Decide the n-gram leaks (after every train record was checked)."""
        if not self._frozen:
            self._freeze()
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
