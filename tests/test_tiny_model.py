"""The locally built tiny model: builds fast, saves safetensors, reloads, chats and generates."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from trainers.tiny_model import (  # noqa: E402
    ASSISTANT_TOKEN,
    END_TOKEN,
    SPECIAL_TOKENS,
    build_tiny_model,
    load_default_corpus,
)

MESSAGES = [
    {"role": "system", "content": "Classify the message."},
    {"role": "user", "content": "Where is my new card?"},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    seen = []
    summary = build_tiny_model(
        out,
        pretrain_steps=30,
        batch_size=8,
        seq_len=64,
        num_threads=1,  # robust when other processes share the two cores (see build_tiny_model)
        progress=lambda step, total, loss: seen.append((step, total, loss)),
    )
    return out, summary, seen


def test_default_corpus_is_shipped_prose():
    docs = load_default_corpus()
    assert len(docs) > 100
    assert 100_000 < sum(len(d) for d in docs) < 500_000


def test_summary_and_loss_falls(built):
    out, summary, seen = built
    assert summary["vocab_size"] == 3000
    assert 1_000_000 < summary["parameters"] < 2_000_000
    assert summary["pretrain_steps"] == 30
    assert summary["pretrain_loss_last"] < summary["pretrain_loss_first"] - 0.5
    assert seen and seen[-1][:2] == (30, 30)
    assert json.loads((out / "tiny_model_build.json").read_text())["parameters"] == summary["parameters"]


def test_saved_as_safetensors(built):
    out, _, _ = built
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    assert (out / "tokenizer.json").is_file()
    assert (out / "chat_template.jinja").is_file()


def test_reload_chat_template_and_generate(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, _ = built
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.tie_word_embeddings
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    for token in SPECIAL_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.eos_token == END_TOKEN and tokenizer.pad_token_id is not None

    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.convert_tokens_to_ids(ASSISTANT_TOKEN)
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert not text.endswith(ASSISTANT_TOKEN) and "Where is my new card?" in text

    prompts = [
        tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False),
        tokenizer.apply_chat_template(MESSAGES[1:], add_generation_prompt=True, tokenize=False),
    ]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    assert enc["attention_mask"][1, 0] == 0  # the shorter prompt is padded on the left
    with torch.inference_mode():
        gen = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert gen.shape[0] == 2 and 0 < gen.shape[1] - enc["input_ids"].shape[1] <= 4


def test_assistant_mask_covers_reply_and_end_token(built):
    from transformers import AutoTokenizer

    out, _, _ = built
    tokenizer = AutoTokenizer.from_pretrained(out)
    conversation = MESSAGES + [{"role": "assistant", "content": "card_arrival"}]
    enc = tokenizer.apply_chat_template(conversation, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == "card_arrival" + END_TOKEN
    # prefix-preserving: the prompt with a generation prompt is a prefix of the whole conversation
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    assert enc["input_ids"][: len(prompt)] == prompt


def test_unknown_role_is_rejected(built):
    from transformers import AutoTokenizer

    out, _, _ = built
    tokenizer = AutoTokenizer.from_pretrained(out)
    with pytest.raises(Exception, match="Unsupported role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
