"""Metrics against hand-computed values on small fixtures (evaluators/metrics/)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluators import metrics as M
from evaluators.metrics import MetricError, get_metric

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------- registry, defaults


def test_registry_and_defaults():
    names = set(M.list_metrics())
    expected = {
        "exact_match", "token_f1", "accuracy", "macro_f1", "macro_precision", "macro_recall", "roc_auc",
        "rouge1", "rouge2", "rouge_l", "bleu", "chrf", "embedding_similarity", "json_valid",
        "json_schema", "json_match", "json_field_f1", "mean_logprob", "perplexity",
    }  # fmt: skip
    assert expected <= names
    for kind in M.TASK_KINDS:
        defaults = M.default_metrics(kind, has_schema=True, has_label_scores=True, has_logprobs=True)
        assert defaults and set(defaults) <= names
        assert M.primary_metric(kind) == defaults[0]
    assert M.default_metrics("classification")[0] == "accuracy"
    assert "roc_auc" not in M.default_metrics("classification")
    assert "roc_auc" in M.default_metrics("classification", has_label_scores=True)
    assert "json_schema" in M.default_metrics("extraction_json", has_schema=True)
    assert "embedding_similarity" not in M.default_metrics("generation", embeddings=False)
    assert "perplexity" in M.default_metrics("qa", has_logprobs=True)
    with pytest.raises(MetricError):
        M.default_metrics("translation")
    with pytest.raises(MetricError, match="unknown metric"):
        get_metric("bleurt")
    assert get_metric("rougeL").name == "rouge_l"
    assert get_metric("EM").name == "exact_match"
    m = get_metric("accuracy")
    assert (m.kind, m.needs_reference, m.higher_is_better) == ("binary", True, True)
    assert get_metric("perplexity").higher_is_better is False
    assert get_metric("macro_f1").per_item is False and get_metric("macro_f1").corpus_level


def test_import_is_light():
    code = (
        "import sys, evaluators, evaluators.metrics as m, evaluators.stats;"
        "m.get_metric('bleu'); m.default_metrics('generation');"
        "heavy = [x for x in ('torch', 'transformers', 'sentence_transformers', 'sklearn', 'sacrebleu')"
        " if x in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ exact match, QA


def test_normalize_answer_squad():
    assert M.normalize_answer("The  Cat, sat!") == "cat sat"
    assert M.normalize_answer("An apple a day") == "apple day"
    assert M.normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match():
    em = get_metric("exact_match")
    assert em.score("The cat!", ["cat"]) == 1.0
    assert em.score("a cat  sat", ["Cat sat."]) == 1.0
    assert em.score("cats", ["cat"]) == 0.0
    assert em.score("Paris", ["London", "paris"]) == 1.0  # any reference
    assert em.score("Paris", []) is None  # no reference: not scored
    assert em.kind == "binary"


def test_token_f1_by_hand():
    # pred tokens (normalised): cat sat on mat (4); gold: cat on mat (3); common 3
    # P = 3/4, R = 1 -> F1 = 2 * 0.75 / 1.75 = 6/7
    f1 = get_metric("token_f1")
    assert f1.score("the cat sat on the mat", ["cat on mat"]) == pytest.approx(6 / 7)
    assert f1.score("dog", ["cat on mat", "dog"]) == 1.0
    assert f1.score("", ["cat"]) == 0.0


# --------------------------------------------------------------------------------- classification


def test_accuracy_normalisation():
    acc = get_metric("accuracy")
    assert M.normalize_label("  Billing. ") == "billing"
    assert acc.score("Billing.", ["billing"]) == 1.0
    assert acc.score("BILLING!\n", ["Billing"]) == 1.0
    assert acc.score("**Billing**", ["billing"]) == 1.0
    assert acc.score("billing dept", ["billing"]) == 0.0
    assert acc.score("card", ["billing", "Card"]) == 1.0


GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "c", "c"]


def test_macro_prf_by_hand():
    # confusion (rows gold, cols pred): a: [2,1,0]; b: [0,1,1]; c: [0,0,1]
    # a: P 2/2, R 2/3, F1 0.8;  b: P 1/2, R 1/2, F1 0.5;  c: P 1/2, R 1/1, F1 2/3
    # macro F1 = (0.8 + 0.5 + 2/3) / 3 = 59/90; macro P = 2/3; macro R = (2/3 + 1/2 + 1) / 3 = 13/18
    assert get_metric("macro_f1").aggregate(PRED, GOLD) == pytest.approx(59 / 90)
    assert get_metric("macro_precision").aggregate(PRED, GOLD) == pytest.approx(2 / 3)
    assert get_metric("macro_recall").aggregate(PRED, GOLD) == pytest.approx(13 / 18)
    assert get_metric("macro_f1").score("a", ["a"]) is None  # no per-item contribution


def test_macro_f1_prediction_outside_the_labels():
    # gold a a b b, pred a zzz b a: a: tp 1, fp 1, fn 1 -> 2/4; b: tp 1, fp 0, fn 1 -> 2/3
    # "zzz" is not a class (counts as a miss only): macro F1 = (1/2 + 2/3) / 2 = 7/12
    assert get_metric("macro_f1").aggregate(["a", "zzz", "b", "a"], ["a", "a", "b", "b"]) == pytest.approx(
        7 / 12
    )


@pytest.mark.parametrize("which", ["f1", "precision", "recall"])
def test_macro_matches_sklearn_on_random_labels(which):
    rng = np.random.default_rng(0)
    labels = ["alpha", "beta", "gamma", "delta", "eps"]
    gold = list(rng.choice(labels[:4], size=300))
    pred = [g if rng.random() < 0.6 else str(rng.choice(labels)) for g in gold]
    pred[:5] = ["something else"] * 5
    mine = get_metric(f"macro_{which}").aggregate(pred, gold)
    assert mine == pytest.approx(M.sklearn_macro(which, pred, gold), abs=1e-12)


def test_macro_bootstrap_statistic_matches_sklearn_on_resamples():
    # the fast confusion-matrix statistic used for bootstrap CIs must equal scikit-learn on any
    # resample, including ones where a gold class is missing
    rng = np.random.default_rng(3)
    gold = list(rng.choice(["x", "y", "z"], size=60))
    pred = [g if rng.random() < 0.7 else str(rng.choice(["x", "y", "z", "other"])) for g in gold]
    stat = get_metric("macro_f1").corpus(pred, gold)
    no_z = np.array([i for i, g in enumerate(gold) if g != "z"])
    for idx in [no_z, rng.integers(0, 60, size=60), rng.integers(0, 60, size=60)]:
        sub_pred, sub_gold = [pred[i] for i in idx], [gold[i] for i in idx]
        assert stat(idx) == pytest.approx(M.sklearn_macro("f1", sub_pred, sub_gold), abs=1e-12)


def test_roc_auc_binary_by_hand():
    # positives score 0.9 and 0.4, negatives 0.8 and 0.1: pairs (pos > neg): (0.9,0.8) (0.9,0.1)
    # (0.4,0.1) yes, (0.4,0.8) no -> AUC = 3/4
    gold = ["pos", "neg", "pos", "neg"]
    items = [{"label_scores": {"pos": s}} for s in (0.9, 0.8, 0.4, 0.1)]
    auc = get_metric("roc_auc")
    assert auc.aggregate(["x"] * 4, gold, items) == pytest.approx(0.75)
    # log-probabilities of both classes give the same ranking
    logp = [{"label_scores": {"pos": math.log(s), "neg": math.log(1 - s)}} for s in (0.9, 0.8, 0.4, 0.1)]
    assert auc.aggregate(["x"] * 4, gold, logp) == pytest.approx(0.75)
    # only the other class's probability: 1 - p(neg)
    other = [{"label_scores": {"neg": 1 - s}} for s in (0.9, 0.8, 0.4, 0.1)]
    assert auc.aggregate(["x"] * 4, gold, other) == pytest.approx(0.75)
    assert auc.aggregate(["x"] * 2, ["pos", "pos"], items[:2]) is None  # one class: undefined
    assert auc.score("x", ["pos"], items[0]) is None


def test_roc_auc_multiclass_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    classes = ["a", "b", "c"]
    gold = list(rng.choice(classes, size=120))
    probs = rng.dirichlet([1, 1, 1], size=120)
    for i, g in enumerate(gold):  # make the scores informative
        probs[i, classes.index(g)] += 0.5
    probs /= probs.sum(axis=1, keepdims=True)
    items = [{"label_scores": dict(zip(classes, p, strict=True))} for p in probs]
    mine = get_metric("roc_auc").aggregate(["x"] * 120, gold, items)
    ref = roc_auc_score(gold, probs, multi_class="ovr", average="macro", labels=classes)
    assert mine == pytest.approx(ref, abs=1e-12)
    res = M.evaluate("roc_auc", ["x"] * 120, gold, items, n_resamples=300)
    assert res.method == "bootstrap" and res.ci[0] < res.value < res.ci[1]


# ------------------------------------------------------------------------------------------ ROUGE


def test_rouge_by_hand():
    ref, pred = "the cat sat on the mat", "the cat on mat"
    # ROUGE-L: LCS("the cat sat on the mat", "the cat on mat") = "the cat on mat" = 4 tokens;
    # P = 4/4, R = 4/6 -> F = 2 * 1 * (2/3) / (1 + 2/3) = 0.8
    assert get_metric("rouge_l").score(pred, [ref]) == pytest.approx(0.8)
    # ROUGE-1: clipped unigram overlap 4; P = 4/4, R = 4/6 -> 0.8
    assert get_metric("rouge1").score(pred, [ref]) == pytest.approx(0.8)
    # ROUGE-2: pred bigrams {the cat, cat on, on mat}, ref {the cat, cat sat, sat on, on the,
    # the mat}; overlap 1 -> P = 1/3, R = 1/5 -> F = 2 (1/15) / (8/15) = 0.25
    assert get_metric("rouge2").score(pred, [ref]) == pytest.approx(0.25)
    # word order: LCS("police killed the gunman", "the gunman killed police") = 2 ("the gunman")
    assert get_metric("rouge_l").score(
        "the gunman killed police", ["police killed the gunman"]
    ) == pytest.approx(0.5)
    assert get_metric("rouge1").score(
        "the gunman killed police", ["police killed the gunman"]
    ) == pytest.approx(1.0)
    # best over references
    assert get_metric("rouge_l").score(pred, ["dog", ref]) == pytest.approx(0.8)


def test_rouge_tokenizer_is_the_default_on_ascii_and_keeps_unicode():
    from rouge_score import tokenizers

    default = tokenizers.DefaultTokenizer(use_stemmer=False)
    ours = M.UnicodeRougeTokenizer()
    for text in ["Hello, World! It's 2024 -- e-mail me_now.", "  A  b\tc\n", "x=1+2; (y)", ""]:
        assert ours.tokenize(text) == default.tokenize(text)
    stem_default, stem_ours = tokenizers.DefaultTokenizer(use_stemmer=True), M.UnicodeRougeTokenizer(True)
    assert stem_ours.tokenize("running cats jumped") == stem_default.tokenize("running cats jumped")
    assert ours.tokenize("Café Ünïcode") == ["café", "ünïcode"]  # the default gives ['caf', 'n', 'code']
    assert ours.tokenize("猫が好き") == ["猫", "が", "好", "き"]
    assert get_metric("rouge1").score("猫が好き", ["猫が好きです"]) > 0.5


# ------------------------------------------------------------------------------------ BLEU, chrF


def test_bleu_identical_is_100():
    bleu = get_metric("bleu")
    assert bleu.score("the quick brown fox jumps", ["the quick brown fox jumps"]) == pytest.approx(100.0)
    assert bleu.aggregate(["the quick brown fox jumps"], [["the quick brown fox jumps"]]) == pytest.approx(
        100.0
    )
    # a 2-token corpus has no 3/4-grams: corpus BLEU (sacrebleu's default, no effective order) is 0,
    # sentence BLEU (effective order, as sacrebleu recommends per sentence) is 100
    assert bleu.aggregate(["hello world"], [["hello world"]]) == 0.0
    assert bleu.score("hello world", ["hello world"]) == pytest.approx(100.0)


def test_bleu_by_hand():
    # hyp "the cat sat on the mat" vs ref "the cat sat on a mat" (both 6 tokens, BP = 1)
    # 1-grams 5/6 ("the" clipped to 1), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3
    # BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25 = 0.537285 -> 53.7285
    expected = 100 * (1 / 12) ** 0.25
    bleu = get_metric("bleu")
    assert bleu.score("the cat sat on the mat", ["the cat sat on a mat"]) == pytest.approx(expected, abs=1e-9)
    assert bleu.aggregate(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(
        expected, abs=1e-9
    )


def test_bleu_chrf_match_sacrebleu_with_variable_references():
    import sacrebleu

    hyps = ["the cat is on the mat", "a dog barked loudly at night", "hello there world", "it rains"]
    refs = [
        ["the cat sits on the mat", "there is a cat on the mat"],
        ["the dog barked loudly in the night"],
        ["hello world", "hi there world", "hello there, world"],
        ["it is raining"],
    ]
    width = max(map(len, refs))
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(width)]
    assert get_metric("bleu").aggregate(hyps, refs) == pytest.approx(
        sacrebleu.corpus_bleu(hyps, streams).score
    )
    assert get_metric("chrf").aggregate(hyps, refs) == pytest.approx(
        sacrebleu.corpus_chrf(hyps, streams).score
    )
    for h, r in zip(hyps, refs, strict=True):
        assert get_metric("bleu").score(h, r) == pytest.approx(sacrebleu.sentence_bleu(h, r).score)
        assert get_metric("chrf").score(h, r) == pytest.approx(sacrebleu.sentence_chrf(h, r).score)
    # corpus BLEU is not the mean of sentence BLEU
    res = M.evaluate("bleu", hyps, refs, n_resamples=200)
    assert res.value == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)
    assert res.value != pytest.approx(np.mean(res.scores))


def test_chrf_by_hand():
    # chrF (char order 6, beta 2, whitespace ignored): hyp "ab", ref "abc"
    # 1-grams: hyp {a,b}, ref {a,b,c}: P = 2/2, R = 2/3;  2-grams: hyp {ab}, ref {ab, bc}: P 1, R 1/2
    # orders 3-6 have no hypothesis n-grams and are left out (sacrebleu's effective order):
    # P = (1 + 1)/2 = 1, R = (2/3 + 1/2)/2 = 7/12 -> F2 = 5 P R / (4 P + R) = (35/12)/(55/12) = 7/11
    assert get_metric("chrf").score("ab", ["abc"]) == pytest.approx(700 / 11)
    assert get_metric("chrf").score("same text", ["same text"]) == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------- JSON


SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
}


def test_json_valid():
    valid = get_metric("json_valid")
    assert valid.needs_reference is False
    assert valid.score('{"a": 1}') == 1.0
    assert valid.score("  [1, 2]\n") == 1.0
    assert valid.score("{a: 1}") == 0.0
    assert valid.score('{"a": NaN}') == 0.0  # not JSON
    assert valid.score('Sure! {"a": 1}') == 0.0
    fenced = '```json\n{"a": 1}\n```'
    assert valid.score(fenced) == 0.0
    assert valid.with_config(extract="fenced").score(fenced) == 1.0
    assert valid.with_config(extract="first").score('Sure! {"a": 1} hope it helps') == 1.0


def test_json_schema_pass_fail():
    in_config = get_metric("json_schema", schema=SCHEMA)
    assert in_config.score('{"name": "Ann", "age": 3}') == 1.0
    assert in_config.score('{"age": 3}') == 0.0  # required "name" missing
    assert in_config.score('{"name": "Ann", "age": "3"}') == 0.0  # wrong type
    assert in_config.score("not json") == 0.0
    in_item = get_metric("json_schema")
    assert in_item.score('{"name": "x"}', None, {"schema": SCHEMA}) == 1.0
    assert in_item.score('{"name": "x"}', None, {"schema": json.dumps({"type": "array"})}) == 0.0
    with pytest.raises(MetricError, match="needs a schema"):
        in_item.score('{"name": "x"}')
    with pytest.raises(MetricError, match="invalid"):
        get_metric("json_schema", schema={"type": 12}).score("{}")


def test_json_match_and_field_f1():
    match = get_metric("json_match")
    assert match.score('{"b": 2, "a": 1.0}', ['{"a": 1, "b": 2}']) == 1.0
    assert match.score('{"a": 1, "b": 3}', ['{"a": 1, "b": 2}']) == 0.0
    assert match.score('{"a": 1}', [{"a": 1}]) == 1.0  # a dict reference works too
    f1 = get_metric("json_field_f1")
    # leaves: pred {a=1, b=3, c=4}, gold {a=1, b=2}: tp 1 -> P 1/3, R 1/2 -> F1 = 0.4
    assert f1.score('{"a": 1, "b": 3, "c": 4}', ['{"a": 1, "b": 2}']) == pytest.approx(0.4)
    # list order does not matter; nested paths do
    assert f1.score('{"tags": ["y", "x"], "p": {"q": 1}}', ['{"p": {"q": 1}, "tags": ["x", "y"]}']) == 1.0
    assert f1.score("oops", ['{"a": 1}']) == 0.0


# ------------------------------------------------------------------------------ log-likelihood


def test_perplexity_and_mean_logprob():
    items = [{"mean_logprob": -1.0, "n_tokens": 3}, {"mean_logprob": -3.0, "n_tokens": 1}]
    # token-weighted: total log-likelihood 3 * (-1) + 1 * (-3) = -6 over 4 tokens -> exp(6/4)
    assert get_metric("perplexity").aggregate(["", ""], None, items) == pytest.approx(math.exp(1.5))
    # without token counts: exp(-mean(-1, -3)) = exp(2)
    plain = [{"mean_logprob": -1.0}, {"mean_logprob": -3.0}]
    assert get_metric("perplexity").aggregate(["", ""], None, plain) == pytest.approx(math.exp(2.0))
    assert get_metric("mean_logprob").aggregate(["", ""], None, plain) == pytest.approx(-2.0)
    assert get_metric("perplexity").score("", None, {"mean_logprob": -2.0}) == pytest.approx(math.exp(2.0))
    res = M.evaluate("perplexity", ["", "", ""], None, [*plain, {}])
    assert res.n == 2 and res.skipped == 1


# ------------------------------------------------------------------------------------ embeddings


class _FakeEncoder:
    """Bag-of-letters vectors: enough to test the cosine / best-reference logic without a model."""

    def encode(self, texts, **kwargs):
        out = np.zeros((len(texts), 26))
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out


def test_embedding_similarity_logic(monkeypatch):
    from evaluators.metrics import embedding

    monkeypatch.setattr(embedding, "_load_embedding_model", lambda path, device: _FakeEncoder())
    emb = get_metric("embedding_similarity")
    assert emb.score("abc", ["cab"]) == pytest.approx(1.0)  # same letters
    # "ab" vs "ac": (1,1,0).(1,0,1) / 2 = 0.5; best over ["zz", "ac"] is 0.5
    assert emb.score("ab", ["zz", "ac"]) == pytest.approx(0.5)
    assert emb.score_all(["ab", "ab"], [["ab"], ["ac"]]) == pytest.approx([1.0, 0.5])


def test_embedding_model_is_found_offline():
    path = Path(M.embedding_model_path())
    assert (path / "modules.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_embedding_similarity_real_model():
    # loads sentence-transformers and the packaged all-MiniLM-L6-v2 once: ~5-6 s here (< 10 s, so
    # it stays in the default run and checks that the offline model really loads)
    emb = get_metric("embedding_similarity", device="cpu")
    scores = emb.score_all(
        ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue rose 4%."],
        [["The cat sat on the mat."]] * 3,
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert scores[1] > scores[2] + 0.2
    assert -1.0 <= scores[2] <= 1.0


# ---------------------------------------------------------------------------- evaluate, compare


def test_evaluate_shapes_and_skips():
    res = M.evaluate("exact_match", ["Paris", "Rome", "x"], ["paris", "Madrid", None])
    d = res.to_dict()
    assert d["value"] == pytest.approx(0.5) and d["n"] == 2 and d["skipped"] == 1
    assert d["method"] == "wilson" and d["ci"][0] < 0.5 < d["ci"][1]
    assert res.scores == [1.0, 0.0, None]
    json.dumps(d)  # JSON-ready
    macro = M.evaluate("macro_f1", PRED, GOLD, n_resamples=300)
    assert macro.value == pytest.approx(59 / 90) and macro.method == "bootstrap"
    assert macro.ci[0] <= macro.value <= macro.ci[1]
    with pytest.raises(MetricError):
        M.evaluate("accuracy", ["a", "b"], ["a"])


def test_compare_metric_per_item_and_corpus():
    gold = ["a"] * 10 + ["b"] * 10
    base = ["a"] * 20
    tuned = ["a"] * 10 + ["b"] * 9 + ["a"]
    acc = M.compare_metric("accuracy", base, tuned, gold)
    assert acc["test"] == "mcnemar_exact"
    assert acc["delta"] == pytest.approx(0.45)
    # 9 discordant pairs all in tuned's favour: p = 2 / 2^9
    assert acc["p_value"] == pytest.approx(2 / 512)
    assert (acc["wins"], acc["losses"], acc["ties"]) == (9, 0, 11)
    f1 = M.compare_metric("macro_f1", base, tuned, gold, n_resamples=400)
    assert f1["test"] == "paired_bootstrap" and f1["delta"] > 0.3 and f1["wins"] is None
    assert f1["p_value"] < 0.01
    same = M.compare_metric("bleu", ["the cat sat on the mat"] * 6, ["the cat sat on the mat"] * 6,
                            ["the cat sat on a mat"] * 6, n_resamples=100)  # fmt: skip
    assert same["delta"] == 0.0 and same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0
    assert (same["wins"], same["losses"], same["ties"]) == (0, 0, 6)
