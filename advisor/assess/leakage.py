"""Leakage of eval records into train: which eval records, of which kind, and how bad.

Every eval record counts (a text that occurs three times in the eval file is three leaked
records), and the distinct texts are counted beside. Kinds, checked in this order per train record:

* ``leakage_exact``: the same input and output;
* ``leakage_normalised``: the same input after normalising (with the same or another output);
* ``leakage_output``: the same (long) output under another input;
* ``leakage_ngram``: most word n-grams of the eval input, or of its output, occur in train on the
  same side of one train record (lm-evaluation-harness 13-gram decontamination, per train record so
  that phrases spread over many records do not add up), counting only the content that varies:
  n-grams shared by many eval records or many train records are boilerplate (a JSON or SQL skeleton,
  a question asked once per entity, a system-prompt sentence) and left out;
* ``leakage_template``: the overlap is made of such boilerplate only: a warning, not leakage.

Beside the kinds, eval records whose group (``doc_id``, ``conversation_id``, ... see
``rubrics/data_checks.yaml``) also occurs in train are counted: the remedy is then a split by group.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from advisor.assess.dedup import window_hashes
from advisor.data.textnorm import words

_OUT_SALT = np.uint64(0x5BD1E9955BD1E995)  # output n-grams are hashed apart from input n-grams
KINDS = ("leakage_exact", "leakage_normalised", "leakage_output", "leakage_ngram")


def record_groups(extra: dict | None, fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(field, value) of the group fields of a record's extra keys (and of its ``metadata``)."""
    if not extra or not fields:
        return ()
    meta = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
    out = []
    for f in fields:
        v = extra.get(f, meta.get(f))
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
            out.append((f, str(v)))
    return tuple(out)


class LeakageIndex:
    """Index of eval records; train records are checked against it as they stream past.

    Train records are checked for n-grams in batches (numpy); :meth:`finish` checks the last batch
    and decides the n-gram and template kinds.
    """

    BATCH = 4096
    PAIR_CAP = 1000  # n-grams in more train records than this are boilerplate: no longer booked per record

    def __init__(self, n: int = 13, template_share: float = 0.05, min_items_for_template: int = 20,
                 min_share: float = 0.5, group_fields: tuple[str, ...] = ()):
        self.n = n
        self.template_share = template_share
        self.min_items = min_items_for_template
        self.min_share = min_share
        self.group_fields = tuple(group_fields)
        self.exact: dict[int, list[int]] = defaultdict(list)
        self.norm_input: dict[int, list[int]] = defaultdict(list)
        self.norm_output: dict[int, list[int]] = defaultdict(list)
        self.groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.text_id: dict[int, int] = {}  # eval line -> hash of its normalised (input, output)
        self.eval_in: dict[int, set[int]] = {}
        self.eval_out: dict[int, set[int]] = {}
        self._eval_tokens: dict[int, tuple[list[str], list[str]]] = {}
        self.ngrams: dict[int, list[int]] = defaultdict(list)  # n-gram -> eval lines
        self.items = 0
        self.templates = 0
        self.template_grams: set[int] = set()
        self.hits: dict[str, dict[int, int]] = {k: {} for k in KINDS} | {"leakage_template": {}}
        self.ngram_hit: dict[int, set[int]] = defaultdict(set)
        self.pair_grams: dict[tuple[int, int], set[int]] = defaultdict(set)  # (eval line, train line) -> n-grams
        # (input words, output words) of the train records that share such n-grams with eval records
        self._train_out: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
        self.ngram_first_train: dict[int, int] = {}
        self.template_hit: set[int] = set()
        self.train_count: Counter = Counter()  # n-gram -> train records holding it (eval n-grams only)
        self.train_n = 0
        self.group_shared: dict[int, tuple[str, str, int]] = {}
        self.ngram_share: dict[int, tuple[str, float]] = {}
        self.boilerplate = 0
        self.ngram_any = 0
        self._frozen = False
        self._keys = np.empty(0, dtype=np.uint64)
        self._pending_lines: list[int] = []
        self._pending_in: list[list[str]] = []
        self._pending_out: list[list[str]] = []
        self._out_words: dict[str, list[str]] = {}

    # -- eval side ---------------------------------------------------------------------------------
    def add_eval(self, line: int, raw_key: str, output: str, norm_key: str, key_id=None, nkey_id=None,
                 norm_out: str | None = None, groups: tuple = ()) -> None:
        """``key_id``/``nkey_id``: the identity of the input for exact / normalised matches (context and
        key, see Record.context); default the key itself. N-grams use the key and output only."""
        self.items += 1
        nk = norm_key if nkey_id is None else nkey_id
        self.exact[hash((raw_key if key_id is None else key_id, output))].append(line)
        self.norm_input[hash(nk)].append(line)
        self.text_id[line] = hash((nk, output if norm_out is None else norm_out))
        tin, tout = words(raw_key), words(output)
        if norm_out is not None and len(tout) >= self.n:  # long outputs only: labels repeat by design
            self.norm_output[hash(norm_out)].append(line)
        for g in groups:
            self.groups[g].append(line)
        gin = set(window_hashes([tin], self.n)[0].tolist())
        gout = set((window_hashes([tout], self.n)[0] ^ _OUT_SALT).tolist())
        self.eval_in[line], self.eval_out[line] = gin, gout
        self._eval_tokens[line] = (tin, tout)
        for g in gin | gout:
            self.ngrams[g].append(line)

    def freeze(self) -> None:
        """Close the eval index (done by the first :meth:`check_train` otherwise)."""
        if not self._frozen:
            if self.items >= self.min_items:
                limit = max(2, self.template_share * self.items)
                self.template_grams = {g for g, v in self.ngrams.items() if len(v) >= limit}
                self.templates = len(self.template_grams)
            self._keys = np.sort(np.fromiter(self.ngrams, dtype=np.uint64, count=len(self.ngrams)))
            self._frozen = True

    # -- train side --------------------------------------------------------------------------------
    def check_train(self, line: int, raw_key: str, output: str, norm_key: str, key_id=None, nkey_id=None,
                    norm_out: str | None = None, groups: tuple = ()) -> None:
        if not self._frozen:
            self.freeze()
        self.train_n += 1
        for g in groups:
            for ev in self.groups.get(g, ()):
                if ev not in self.group_shared:
                    self.group_shared[ev] = (g[0], g[1], line)
        for code, table, h in (
            ("leakage_exact", self.exact, hash((raw_key if key_id is None else key_id, output))),
            ("leakage_normalised", self.norm_input, hash(norm_key if nkey_id is None else nkey_id)),
            ("leakage_output", self.norm_output, hash(norm_out) if norm_out is not None and self.norm_output else None),
        ):
            evs = table.get(h) if h is not None else None
            if evs:
                hits = self.hits[code]
                for ev in evs:
                    hits.setdefault(ev, line)
                return
        if self.ngrams:
            out_words = self._out_words.get(output)
            if out_words is None:  # the words of outputs that repeat (labels) are cached
                out_words = words(output)
                if len(output) <= 200 and len(self._out_words) < 50_000:
                    self._out_words[output] = out_words
            in_words = words(raw_key)
            if len(in_words) >= self.n or len(out_words) >= self.n:
                self._pending_lines.append(line)
                self._pending_in.append(in_words)
                self._pending_out.append(out_words)
                if len(self._pending_lines) >= self.BATCH:
                    self._check_pending()

    def _check_pending(self) -> None:
        lines = self._pending_lines
        if not lines:
            return
        ins, outs = self._pending_in, self._pending_out
        gi, oi = window_hashes(self._pending_in, self.n)
        go, oo = window_hashes(outs, self.n)
        self._pending_lines, self._pending_in, self._pending_out = [], [], []
        grams = np.concatenate([gi, go ^ _OUT_SALT])
        owner = np.concatenate([oi, oo])
        keys = self._keys
        at = np.minimum(np.searchsorted(keys, grams), len(keys) - 1)
        found = np.flatnonzero(keys[at] == grams)
        if not len(found):
            return
        pairs = np.unique(np.stack([grams[found], owner[found].astype(np.uint64)], axis=1), axis=0)
        ug, counts = np.unique(pairs[:, 0], return_counts=True)
        self.train_count.update(dict(zip(ug.tolist(), counts.tolist(), strict=True)))
        tmpl, first, count, cap = self.template_grams, self.ngram_first_train, self.train_count, self.PAIR_CAP
        for g, o in pairs.tolist():
            if g in tmpl:
                self.template_hit.add(g)
                continue
            tr = lines[o]
            booked = count[g] <= cap
            if booked and tr not in self._train_out:
                self._train_out[tr] = (frozenset(ins[o]), frozenset(outs[o]))
            for ev in self.ngrams[g]:
                self.ngram_hit[ev].add(g)
                if booked:
                    self.pair_grams[(ev, tr)].add(g)
                if first.get(ev, tr + 1) > tr:
                    first[ev] = tr

    def train_state(self) -> tuple:
        """What checking train records found, for :meth:`merge_train` in another process."""
        self._check_pending()
        return (self.hits, dict(self.ngram_hit), self.ngram_first_train, self.template_hit, self.train_count,
                self.train_n, self.group_shared, dict(self.pair_grams), self._train_out)

    def merge_train(self, state: tuple) -> None:
        """Add what a copy of this index found on other train records (earliest train line wins)."""
        hits, hit, first, tmpl, count, n, groups, pair, tr_out = state
        self._train_out.update(tr_out)
        for k, gs in pair.items():
            self.pair_grams[k] |= gs
        pairs = [(self.hits[k], hits[k]) for k in self.hits] + [(self.ngram_first_train, first)]
        for mine, theirs in pairs:
            for ev, line in theirs.items():
                if ev not in mine or line < mine[ev]:
                    mine[ev] = line
        for ev, grams in hit.items():
            self.ngram_hit[ev] |= grams
        self.template_hit |= tmpl
        self.train_count.update(count)
        self.train_n += n
        for ev, g in groups.items():
            if ev not in self.group_shared or g[2] < self.group_shared[ev][2]:
                self.group_shared[ev] = g

    # -- verdict -----------------------------------------------------------------------------------
    def finish(self) -> None:
        """Decide the n-gram and template kinds (after every train record was checked)."""
        self.freeze()
        self._check_pending()
        boiler = set(self.template_grams)
        if self.train_n >= self.min_items:
            limit = max(2, self.template_share * self.train_n)
            boiler |= {g for g, c in self.train_count.items() if c >= limit}
        self.boilerplate = len(boiler)
        self._boiler = boiler
        done = set().union(*(self.hits[k] for k in KINDS[:3]))
        by_eval: dict[int, list[tuple[int, set[int]]]] = defaultdict(list)
        for (ev, tr), gs in self.pair_grams.items():
            by_eval[ev].append((tr, gs))
        any_hit = 0
        for ev in self.eval_in:
            if ev in done:
                continue
            grams = self.eval_in[ev] | self.eval_out[ev]
            hit = self.ngram_hit.get(ev, set()) | (grams & self.template_hit)
            if not hit:
                continue
            any_hit += 1
            best_c, best_all, tr_c = ("input", 0.0), ("input", 0.0), None
            for side, gs in (("input", self.eval_in[ev]), ("output", self.eval_out[ev])):
                if not gs:
                    continue
                a = len(hit & gs) / len(gs)
                if a > best_all[1]:
                    best_all = (side, a)
                content = gs - boiler
                if not content:
                    continue
                slots = self._slot_words(ev) if side == "output" else None
                for tr, pg in by_eval.get(ev, ()):  # content overlap with one train record
                    c = len(pg & content) / len(content)
                    if slots and c >= self.min_share and tr in self._train_out:
                        # the same sentence filled with other values of another input is a template: the
                        # values this output takes from its own input (and the train input lacks) must be
                        # in the train output too
                        t_in, t_out = self._train_out[tr]
                        own = slots - t_in
                        if own:
                            c = min(c, len(own & t_out) / len(own))
                    if c > best_c[1] or (c == best_c[1] and tr_c is not None and tr < tr_c):
                        best_c, tr_c = (side, c), tr
            if best_c[1] >= self.min_share:
                self.hits["leakage_ngram"][ev] = tr_c
                self.ngram_share[ev] = best_c
            elif best_all[1] >= self.min_share:
                self.hits["leakage_template"][ev] = self.ngram_first_train.get(ev)
                self.ngram_share[ev] = best_all
        self.ngram_any = any_hit

    SLOT_MIN_WORDS = 3

    def _slot_words(self, ev: int) -> set[str] | None:
        """The words an eval output takes from its input (names, values), when there are a few."""
        tin, tout = self._eval_tokens[ev]
        slots = set(tout) & set(tin)
        return slots if len(slots) >= self.SLOT_MIN_WORDS else None

    def leaked_eval_lines(self) -> set[int]:
        """Eval lines of every kind of leakage (template overlap is not leakage)."""
        out: set[int] = set()
        for k in KINDS:
            out.update(self.hits[k])
        return out

    def distinct_texts(self, lines: set[int]) -> int:
        return len({self.text_id[ev] for ev in lines})

    def common_template(self) -> str | None:
        """The words of the boilerplate n-gram most shared between eval and train, or None."""
        boiler = getattr(self, "_boiler", set())
        if not boiler:
            return None
        seen = {g: self.train_count.get(g, 0) for g in boiler if self.train_count.get(g, 0)}
        if not seen:
            return None
        g = max(seen, key=lambda k: (seen[k], k))
        ev = self.ngrams[g][0]
        tin, tout = self._eval_tokens[ev]
        for toks, salt in ((tin, None), (tout, _OUT_SALT)):
            hs = window_hashes([toks], self.n)[0]
            if salt is not None:
                hs = hs ^ salt
            at = np.flatnonzero(hs == np.uint64(g))
            if len(at):
                return " ".join(toks[int(at[0]) : int(at[0]) + self.n])
        return None
