"""Tests for the advisor.assess.estimate package: every expected number is computed by hand in the test."""

from __future__ import annotations

import json
import statistics
import struct
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import eval_fixtures
import pytest
import yaml

from advisor.assess.estimate import estimate, model_parameters, parse_hardware

tiny_model_dir = eval_fixtures.tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _empty_hf_cache(tmp_path_factory, monkeypatch):
    """Keep a real Hugging Face cache on this machine from changing where a parameter count comes from."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


def _yaml(name: str) -> dict:
    return yaml.safe_load(files("rubrics").joinpath(name).read_text(encoding="utf-8"))


def _a100_80_prices() -> tuple[float, float]:
    """(median, cheapest) of the A100-80GB rental prices, read from the table independently."""
    usd = [float(p["usd"]) for p in _yaml("prices.yaml")["gpu_hour"]["A100-80GB"]]
    return statistics.median(usd), min(usd)


def _run(**overrides):
    kwargs = dict(methods=["full"], base_model="acme/tiny-0.5B", model_dir=None, train_tokens_per_epoch=1_000_000,
                  epochs=1, hardware="1x A100-80GB", budget_usd=None, on_prem=False)
    kwargs.update(overrides)
    return estimate(**kwargs)


def _method(result: dict, name: str) -> dict:
    (entry,) = [e for e in result["methods"] if e["method"] == name]
    return entry


# --------------------------------------------------------------------------------------------- hardware


@pytest.mark.parametrize(
    ("text", "count", "gpu", "memory", "tflops"),
    [
        ("1x A100-80GB", 1, "A100-80GB", 80, 312),
        ("2x H100", 2, "H100-SXM", 80, 989),
        ("8xA10G", 8, "A10G", 24, 70),
        ("RTX 4090", 1, "RTX-4090", 24, 165.2),
        ("4 x NVIDIA A100 80GB", 4, "A100-80GB", 80, 312),
        ("A100 x 2", 2, "A100-40GB", 40, 312),
        ("1x H100-PCIe", 1, "H100-PCIe", 80, 756),
        ("1x h200", 1, "H200", 141, 989),
        ("2x RTX-3090", 2, "RTX-3090", 24, 71),
        ("1x T4", 1, "T4", 16, 65),
        ("1x L4", 1, "L4", 24, 121),
        ("1x A100 80GB PCIe", 1, "A100-80GB", 80, 312),
        ("2x H100 80GB PCIe", 2, "H100-PCIe", 80, 756),
        ("1x NVIDIA H100 SXM5 80GB", 1, "H100-SXM", 80, 989),
    ],
)
def test_parse_hardware_variants(text, count, gpu, memory, tflops):
    hw = parse_hardware(text)
    assert (hw.kind, hw.count, hw.gpu, hw.memory_gb, hw.bf16_tflops) == ("gpu", count, gpu, memory, tflops)
    assert hw.source


@pytest.mark.parametrize("text", ["none", "None", "cpu", "CPU"])
def test_parse_hardware_no_gpu(text):
    hw = parse_hardware(text)
    assert (hw.kind, hw.count, hw.gpu, hw.memory_gb) == ("cpu", 0, None, None)


@pytest.mark.parametrize("text", [None, "", "   "])
def test_parse_hardware_not_stated(text):
    hw = parse_hardware(text)
    assert (hw.kind, hw.count, hw.gpu) == ("unknown", 0, None)


def test_parse_hardware_unknown_gpu_lists_known_names_on_one_line():
    with pytest.raises(ValueError) as err:
        parse_hardware("2x Z9000")
    message = str(err.value)
    assert "Z9000" in message and "\n" not in message
    for known in ("T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100-SXM", "H100-PCIe", "H200", "RTX-4090",
                  "RTX-3090"):
        assert known in message


def test_parse_hardware_memory_size_must_match():
    with pytest.raises(ValueError, match="unknown GPU"):
        parse_hardware("1x A100 96GB")  # not silently read as the 40 GB part


def test_parse_hardware_zero_count_is_an_error():
    with pytest.raises(ValueError, match="at least 1"):
        parse_hardware("0x A100-80GB")


def test_t4_has_no_bf16():
    assert parse_hardware("1x T4").bf16_supported is False
    assert parse_hardware("1x A100-80GB").bf16_supported is True


# --------------------------------------------------------------------------------------------- model size


def _write_config(directory: Path, **cfg) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return directory


TINY = dict(model_type="llama", hidden_size=128, intermediate_size=512, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=3000, tie_word_embeddings=True,
            torch_dtype="bfloat16")
# Hand computation for TINY (head_dim 128/4 = 32, two KV heads -> 64 KV features):
#   embeddings 3000*128 = 384,000
#   per layer: q 128*128 = 16,384; k 128*64 = 8,192; v 8,192; o 16,384; MLP 3*128*512 = 196,608;
#              two RMSNorms 2*128 = 256  -> 246,016; four layers -> 984,064
#   final norm 128; LM head tied -> 0
TINY_PARAMS = 384_000 + 4 * 246_016 + 128
assert TINY_PARAMS == 1_368_192


def test_param_count_from_local_config(tmp_path):
    model = _write_config(tmp_path / "tiny", **TINY)
    n, source = model_parameters(None, model)
    assert n == 1_368_192
    assert source == f"config.json at {model / 'config.json'}"


def test_param_count_untied_with_qkv_bias(tmp_path):
    # Qwen2 adds biases to q, k, v (128 + 64 + 64 = 256 per layer) and here does not tie the LM head.
    model = _write_config(tmp_path / "q", **{**TINY, "model_type": "qwen2", "tie_word_embeddings": False})
    n, _ = model_parameters("some/name-7b", model)  # the local directory wins over the name
    assert n == 1_368_192 + 4 * 256 + 3000 * 128


def test_param_count_base_model_as_local_directory(tmp_path):
    model = _write_config(tmp_path / "m", **TINY)
    assert model_parameters(str(model)) == (1_368_192, f"config.json at {model / 'config.json'}")


def test_real_configs_match_the_table(tmp_path):
    """Published configs through the formula give the checkpoints' published parameter counts."""
    qwen = _write_config(tmp_path / "qwen", model_type="qwen2", hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         vocab_size=151936, tie_word_embeddings=True)
    gemma = _write_config(tmp_path / "gemma", model_type="gemma2", hidden_size=2304, intermediate_size=9216,
                          num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                          vocab_size=256000)
    mixtral = _write_config(tmp_path / "mixtral", model_type="mixtral", hidden_size=4096,
                            intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                            num_key_value_heads=8, vocab_size=32000, num_local_experts=8, num_experts_per_tok=2)
    gpt2 = _write_config(tmp_path / "gpt2", model_type="gpt2", n_embd=768, n_layer=12, n_head=12,
                         n_positions=1024, vocab_size=50257)
    assert model_parameters(None, qwen)[0] == 494_032_768 == model_parameters("Qwen/Qwen2.5-0.5B-Instruct")[0]
    assert model_parameters(None, gemma)[0] == 2_614_341_888 == model_parameters("google/gemma-2-2b-it")[0]
    assert model_parameters(None, mixtral)[0] == 46_702_792_704
    # GPT-2: 50257*768 + 1024*768 + 12*(12*768^2 + 13*768) + 2*768
    assert model_parameters(None, gpt2)[0] == 124_439_808 == model_parameters("gpt2")[0]


def _write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2
        for d in shape:
            size *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def test_param_count_from_safetensors_headers(tmp_path):
    model = tmp_path / "st"
    model.mkdir()
    _write_safetensors(model / "model-00001-of-00002.safetensors", {"a": [10, 20], "b": [7]})
    _write_safetensors(model / "model-00002-of-00002.safetensors", {"c": [3, 4, 5]})
    _write_safetensors(model / "adapter_model.safetensors", {"lora": [1000]})  # a PEFT adapter: ignored
    n, source = model_parameters(None, model)
    assert n == 10 * 20 + 7 + 3 * 4 * 5
    assert source.startswith("safetensors headers at ")


def test_param_count_from_safetensors_index(tmp_path):
    model = _write_config(tmp_path / "idx", model_type="exotic", torch_dtype="bfloat16")
    (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 2_000_000}}))
    n, source = model_parameters(None, model)
    assert n == 1_000_000  # 2,000,000 bytes of bf16 = 2 bytes a parameter
    assert source.startswith("safetensors index at ")


@pytest.mark.parametrize(
    ("name", "params", "source"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", 494_032_768, "table: Qwen/Qwen2.5-0.5B"),
        ("Qwen/Qwen2.5-7B", 7_615_616_512, "table: Qwen/Qwen2.5-7B"),
        ("meta-llama/Llama-3.1-70B-Instruct", 70_553_706_496, "table: meta-llama/Llama-3.1-70B"),
        ("meta-llama/Llama-3.2-1B-Instruct", 1_235_814_400, "table: meta-llama/Llama-3.2-1B"),
        ("mistralai/Mistral-7B-Instruct-v0.3", 7_248_023_552, "table: mistralai/Mistral-7B-v0.3"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", 134_515_008, "table: HuggingFaceTB/SmolLM2-135M"),
        ("microsoft/Phi-3.5-mini-instruct", 3_821_079_552, "table: microsoft/Phi-3-mini-4k-instruct"),
    ],
)
def test_param_count_from_table(name, params, source):
    assert model_parameters(name) == (params, source)


@pytest.mark.parametrize(
    ("name", "params", "source"),
    [
        ("acme/support-bot-7b", 7_000_000_000, "name: '7b'"),
        ("acme/tiny-0.5B", 500_000_000, "name: '0.5B'"),
        ("acme/micro-135M-v2", 135_000_000, "name: '135M'"),
    ],
)
def test_param_count_from_name(name, params, source):
    assert model_parameters(name) == (params, source)


def test_param_count_from_moe_name_is_experts_times_size():
    n, source = model_parameters("acme/Mixish-8x7B")
    assert n == 56_000_000_000
    assert source.startswith("name: '8x7B'")


def test_param_count_unknown():
    assert model_parameters("acme/mystery") == (None, "unknown")
    assert model_parameters(None) == (None, "unknown")


# --------------------------------------------------------------------------------------------- FLOPs, time, cost


def test_full_fine_tuning_flops_hours_and_cost_by_hand():
    r = _run()
    e = _method(r, "full")
    assert e["train_tokens"] == 1_000_000
    assert e["flops"] == pytest.approx(6 * 0.5e9 * 1e6)  # 3e15
    assert r["assumptions"]["mfu"]["value"] == 0.40
    hours = 3e15 / (312e12 * 0.40) / 3600  # = 0.0066773...
    assert e["gpu_hours"] == pytest.approx(hours, rel=1e-4)
    assert e["wall_hours"] == pytest.approx(hours, rel=1e-4)  # one GPU
    assert e["gpu_hours_range"][1] == pytest.approx(3e15 / (312e12 * 0.20) / 3600, rel=1e-4)
    typical, cheapest = _a100_80_prices()
    assert e["cost_usd"] == pytest.approx(hours * typical, rel=1e-3)
    assert e["cost_usd_cheapest"] == pytest.approx(hours * cheapest, rel=1e-3)


def test_epochs_multiply_tokens():
    e = _method(_run(train_tokens_per_epoch=2_000_000, epochs=3), "full")
    assert e["train_tokens"] == 6_000_000
    assert e["flops"] == pytest.approx(6 * 0.5e9 * 6e6)
    frac = _method(_run(train_tokens_per_epoch=1_000, epochs=2.5004), "full")
    assert frac["train_tokens"] == 2_500 and isinstance(frac["train_tokens"], int)
    assert frac["flops"] == pytest.approx(6 * 0.5e9 * 2_500.4)


def test_lora_is_four_nd_and_qlora_adds_dequant_time():
    r = _run(methods=["lora", "qlora"])
    lora, qlora = _method(r, "lora"), _method(r, "qlora")
    assert lora["flops"] == pytest.approx(4 * 0.5e9 * 1e6)  # 2e15: no weight gradients
    assert qlora["flops"] == lora["flops"]
    assert lora["gpu_hours"] == pytest.approx(2e15 / (312e12 * 0.40) / 3600, rel=1e-4)
    assert r["assumptions"]["qlora_time_overhead"]["value"] == 1.39
    assert qlora["gpu_hours"] == pytest.approx(lora["gpu_hours"] * 1.39, rel=1e-4)


def test_rlhf_counts_sft_and_dpo():
    e = _method(_run(methods=["rlhf"]), "rlhf")
    n, d = 0.5e9, 1e6
    sft = 4 * n * d
    dpo = (2 + 2 + 2) * n * (2 * d)  # policy fwd + policy bwd (LoRA) + reference fwd, chosen + rejected tokens
    assert e["phases"]["sft"]["flops"] == pytest.approx(sft)
    assert e["phases"]["dpo"]["flops"] == pytest.approx(dpo)
    assert e["phases"]["dpo"]["pair_tokens"] == 2_000_000
    assert e["flops"] == pytest.approx(sft + dpo)
    assert e["train_tokens"] == 3_000_000
    e2 = _method(_run(methods=["rlhf"], preference_tokens_per_epoch=500_000), "rlhf")
    assert e2["phases"]["dpo"]["flops"] == pytest.approx(6 * n * 5e5)


def test_multi_gpu_wall_time_and_billing():
    e = _method(_run(hardware="2x A100-80GB"), "full")
    hours = 3e15 / (312e12 * 0.40) / 3600
    assert e["gpu_hours"] == pytest.approx(hours, rel=1e-4)
    assert e["wall_hours"] == pytest.approx(hours / (2 * 0.90), rel=1e-4)
    typical, _ = _a100_80_prices()
    assert e["cost_usd"] == pytest.approx(hours / (2 * 0.90) * 2 * typical, rel=1e-3)


def test_moe_flops_follow_active_parameters():
    e = _method(_run(methods=["lora"], base_model="mistralai/Mixtral-8x7B-Instruct-v0.1", hardware="2x H100"),
                "lora")
    assert e["flops"] == pytest.approx(4 * 12_879_925_248 * 1e6)


def test_prompting_and_rag_have_no_training_cost():
    r = _run(methods=["prompting", "rag"], docs_tokens=1_000_000, budget_usd=10)
    for name in ("prompting", "rag"):
        e = _method(r, name)
        assert e["train_tokens"] == 0 and e["flops"] == 0 and e["cost_usd"] == 0
        assert e["within_budget"] is True
        assert e["hosted"] is None
        assert "inference_note" in e
        assert e["memory_gb"] > 1.0  # 0.5e9 x 2 bytes of bf16 weights + CUDA overhead
    rag = _method(r, "rag")
    assert rag["index"]["flops"] == pytest.approx(2 * 22_713_216 * 1e6)


def test_methods_keep_their_order_and_result_is_json():
    order = ["rlhf", "prompting", "qlora", "full", "rag", "lora"]
    r = _run(methods=order, budget_usd=100.0)
    assert [e["method"] for e in r["methods"]] == order
    json.dumps(r, allow_nan=False)
    assert r["assumptions"]["price_table_as_of"] == _yaml("prices.yaml")["as_of"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown method"):
        _run(methods=["lora", "magic"])
    with pytest.raises(ValueError):
        _run(train_tokens_per_epoch=-1)
    with pytest.raises(ValueError, match="unknown GPU"):
        _run(hardware="1x Z9000")


# --------------------------------------------------------------------------------------------- memory and fit


def test_full_memory_by_hand_for_the_tiny_model(tmp_path):
    model = _write_config(tmp_path / "tiny", **TINY)
    r = _run(methods=["full", "lora"], base_model=None, model_dir=model, max_length=64, batch_size=4)
    full, lora = _method(r, "full"), _method(r, "lora")
    tokens = 64 * 4
    acts = tokens * 128 * (2 * 4 + 34)  # checkpointed inputs of 4 layers + one layer's working set
    logits = tokens * 3000 * 12
    expected_full = (16 * 1_368_192 + acts + logits) / 1e9 + 1.0  # + CUDA overhead
    assert full["memory_gb"] == pytest.approx(expected_full, abs=1e-3)
    assert full["micro_batch"] == 4 and full["fits"] is True
    # LoRA r=16 on every linear layer: q 128+128, k 128+64, v 128+64, o 128+128, gate/up/down 3*(128+512)
    adapters = 16 * 4 * (256 + 192 + 192 + 256 + 3 * 640)
    assert lora["memory_breakdown_gb"]["adapters_with_adamw"] == pytest.approx(adapters * 16 / 1e9, rel=1e-3)
    expected_lora = (2 * 1_368_192 + 16 * adapters + acts + logits) / 1e9 + 1.0
    assert lora["memory_gb"] == pytest.approx(expected_lora, abs=1e-3)


def test_70b_lora_does_not_fit_one_a100_but_qlora_does():
    r = _run(methods=["lora", "qlora", "full"], base_model="meta-llama/Llama-3.1-70B-Instruct",
             hardware="1x A100-80GB")
    lora, qlora, full = _method(r, "lora"), _method(r, "qlora"), _method(r, "full")
    assert lora["fits"] is False
    assert lora["memory_gb"] > 2 * 70.55  # the bf16 weights alone
    assert lora["suggest"] == "qlora"
    assert qlora["fits"] is True
    assert 0.55 * 70.55 < qlora["memory_gb"] <= 80
    assert full["fits"] is False and full["memory_gb"] > 16 * 70.55


def test_small_model_lora_has_no_suggestion():
    e = _method(_run(methods=["lora"], base_model="Qwen/Qwen2.5-0.5B-Instruct"), "lora")
    assert e["fits"] is True and "suggest" not in e


def test_micro_batch_shrinks_to_fit_with_gradient_accumulation():
    # 7B LoRA on a 24 GB L4: 15.2 GB of weights leave no room for 16 x 512 tokens of 152k-vocab logits.
    e = _method(_run(methods=["lora"], base_model="Qwen/Qwen2.5-7B-Instruct", hardware="1x L4"), "lora")
    assert e["fits"] is True
    assert e["micro_batch"] < 16
    assert e["micro_batch"] * e["gradient_accumulation"] == 16
    assert e["memory_gb"] <= 24


def test_unknown_hardware_gives_fits_none_and_prices_on_the_reference_gpu():
    e = _method(_run(hardware=None), "full")
    assert e["fits"] is None
    assert "A100-80GB" in e["priced_on"]
    assert e["gpu_hours"] == pytest.approx(3e15 / (312e12 * 0.40) / 3600, rel=1e-4)


def test_no_gpu_reports_not_fitting_and_cpu_time():
    r = _run(methods=["prompting", "lora", "full"], hardware="none")
    full = _method(r, "full")
    assert full["fits"] is False
    assert r["assumptions"]["cpu"]["effective_tflops"] == 0.2
    import os

    cores = min(os.cpu_count(), 16)
    # 0.2 TFLOP/s for 16 cores, scaled to this machine's cores (2 here: ~33 hours)
    assert full["cpu_hours"] == pytest.approx(3e15 / (0.2e12 * cores / 16) / 3600, rel=1e-2)
    assert "no GPU" in full["fits_note"]
    assert _method(r, "lora")["fits"] is False
    assert _method(r, "prompting")["fits"] is None


def test_a_small_model_fits_this_cpu_at_no_cost():
    r = _run(methods=["lora", "full", "qlora"], hardware="none", budget_usd=0, train_tokens_per_epoch=20_000,
             base_model="acme/tiny-0.001B")
    for m in ("lora", "full"):
        e = _method(r, m)
        assert e["cpu_hours"] < 2 and e["fits"] is True and e["cost_usd"] == 0.0 and e["within_budget"] is True
        assert e["fits_note"].startswith("fits this CPU: under a minute (") and "(<= 2 h" in e["fits_note"]
    assert _method(r, "qlora")["fits"] is False  # 4-bit kernels need a GPU


def test_unknown_model_leaves_numbers_empty():
    r = _run(methods=["lora"], base_model="acme/mystery", budget_usd=5)
    e = _method(r, "lora")
    assert r["model"]["parameters"] is None
    assert e["flops"] is None and e["cost_usd"] is None and e["memory_gb"] is None
    assert e["fits"] is None and e["within_budget"] is None


# --------------------------------------------------------------------------------------------- budget and hosted


def test_within_budget():
    hours = 3e15 / (312e12 * 0.40) / 3600
    typical, _ = _a100_80_prices()
    cost = hours * typical  # ~1.5 cents
    assert _method(_run(budget_usd=1.0), "full")["within_budget"] is True
    assert _method(_run(budget_usd=cost / 2), "full")["within_budget"] is False
    assert _method(_run(budget_usd=None), "full")["within_budget"] is None


def test_on_prem_hides_hosted_prices():
    r = _run(methods=["lora", "full", "rlhf"], on_prem=True)
    for e in r["methods"]:
        assert e["hosted"] is None
        assert "data_must_stay_on_prem" in e["hosted_note"]


def test_hosted_prices_per_training_token():
    r = _run(methods=["lora", "full"], train_tokens_per_epoch=2_000_000, epochs=3, on_prem=False,
             base_model="Qwen/Qwen2.5-0.5B-Instruct")
    lora = _method(r, "lora")["hosted"]
    assert lora["offers"], "a 0.5B model has hosted LoRA offers"
    for offer in lora["offers"]:
        assert offer["usd"] == pytest.approx(6 * offer["usd_per_1m_tokens"], rel=1e-6)  # 6M training tokens
        assert offer["source"]
    assert lora["cost_usd"] == min(o["usd"] for o in lora["offers"])
    providers = {o["provider"] for o in lora["offers"]}
    assert {"OpenAI", "Together AI"} <= providers
    # Size brackets: a 70B model is not offered in the "up to 16B" bracket.
    big = _method(_run(methods=["lora"], base_model="meta-llama/Llama-3.1-70B"), "lora")["hosted"]
    assert all("up to 16B" not in o["offering"] for o in big["offers"])


# --------------------------------------------------------------------------------------------- rubric hygiene


def test_every_number_in_the_tables_has_a_source_and_a_date():
    hw, prices, models = _yaml("hardware.yaml"), _yaml("prices.yaml"), _yaml("models.yaml")
    for table in (hw, prices, models):
        assert table.get("as_of")
    names = {g["name"] for g in hw["gpus"]}
    assert {"T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100-SXM", "H100-PCIe", "H200", "RTX-4090",
            "RTX-3090"} <= names
    for g in hw["gpus"]:
        assert g["source"] and g["memory_gb"] > 0 and g["bf16_dense_tflops"] > 0
    for section in ("compute", "memory"):
        for key, node in hw[section].items():
            if isinstance(node, dict):
                assert node.get("source") or all(isinstance(v, dict) and v.get("source") for v in node.values()), key
    for gpu, offers in prices["gpu_hour"].items():
        assert gpu in names
        for o in offers:
            assert o["usd"] > 0 and o["source"] and o["as_of"] and "approximate" in o
    for o in prices["hosted_finetuning"]:
        assert o["usd_per_1m_tokens"] > 0 and o["source"] and o["as_of"] and "approximate" in o
    for m in models["models"]:
        assert m["parameters"] > 0 and m["source"]


def test_module_does_not_import_torch_or_transformers():
    code = ("import sys, advisor.assess.estimate; "
            "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


# --------------------------------------------------------------------------------------------- reads right


def test_no_hosted_price_for_a_model_no_provider_fine_tunes(tiny_model_dir):
    qwen = _method(_run(methods=["lora"], base_model="Qwen/Qwen2.5-0.5B-Instruct"), "lora")
    assert qwen["hosted"]["cost_usd"] and qwen["hosted"]["cheapest"]["same_model"]
    for bm, md, what in (("acme/tiny-0.5B", None, "acme/tiny-0.5B"),
                         (str(tiny_model_dir), tiny_model_dir, "a local model directory")):
        e = _method(_run(methods=["lora", "full"], base_model=bm, model_dir=md), "lora")
        assert e["hosted"]["cost_usd"] is None and e["hosted"]["cheapest"] is None
        assert all(not o["same_model"] for o in e["hosted"]["offers"])
        assert f"no listed provider fine-tunes {what}" in e["hosted_note"]
        assert "tunes its own closed model" in e["hosted_note"]  # the task-level alternative is named


def test_lora_needing_more_memory_than_full_because_of_its_micro_batch_says_so():
    r = _run(methods=["lora", "full"], base_model="Qwen/Qwen2.5-0.5B-Instruct", hardware="1x A10G", batch_size=16)
    lora, full = _method(r, "lora"), _method(r, "full")
    assert lora["memory_gb"] > full["memory_gb"] and lora["micro_batch"] > full["micro_batch"]
    (note,) = [n for n in lora["notes"] if "more memory than full fine-tuning" in n]
    assert f"larger micro-batch ({lora['micro_batch']} vs {full['micro_batch']})" in note
    at_same = float(note.rsplit("about ", 1)[1].split(" GB")[0])
    assert at_same < full["memory_gb"]
    # and not when LoRA needs less
    small = _run(methods=["lora", "full"], base_model="Qwen/Qwen2.5-0.5B-Instruct", hardware="1x A100-40GB")
    assert not any("more memory than full" in n for n in _method(small, "lora")["notes"])


def test_readable_sizes_and_durations():
    from advisor.assess.estimate.compute import duration, parameter_count

    assert parameter_count(1_430_000) == "1.4M parameters"
    assert parameter_count(494_032_768) == "494M parameters"
    assert parameter_count(7.6e9) == "7.6B parameters"
    assert parameter_count(None) == "unknown size"
    assert duration(0.001) == "under a minute" and duration(0.5) == "about 30 minutes"
    assert duration(3.44) == "about 3.4 hours" and duration(24 * 6) == "about 6 days"


def _ticket(tmp_path, base_model, **constraints):
    import shutil

    dst = tmp_path / "ticket"
    shutil.copytree(ROOT / "sample_projects" / "ticket-routing-tiny", dst, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((dst / "project.yaml").read_text())
    cfg["base_model"] = str(base_model)
    cfg["constraints"].update(constraints)
    (dst / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


def _cli(*args):
    from click.testing import CliRunner

    from advisor.cli.main import main

    return CliRunner().invoke(main, [*map(str, args)], env={"COLUMNS": "200"})


def test_on_a_cpu_the_cost_table_shows_the_cpu_time_the_reasons_state(tmp_path, tiny_model_dir):
    root = _ticket(tmp_path, tiny_model_dir)
    r = _cli("assess", root, "--no-embeddings")
    assert r.exit_code == 0, r.output
    out = r.stdout
    table = out[out.index("Cost estimate"):]
    assert "CPU time (here)" in table and "GPU-hours" not in table and "wall" not in table
    said = out.split("training runs on this CPU in ", 1)[1].split(" (<=")[0]
    (lora,) = [line for line in table.splitlines() if "lora" in line]
    assert said in lora  # the same CPU time in the reasons and in the table
    assert "no GPU: training times are CPU time on this machine" in table
    params = json.loads(_cli("assess", root, "--json", "--no-embeddings").stdout)["estimate"]["model"]["parameters"]
    assert params < 10_000_000  # a tiny local model
    assert f"{params / 1e6:.1f}M parameters" in table and "0.00B" not in table


def test_dry_run_prints_formatted_values(tmp_path, tiny_model_dir):
    import re

    root = _ticket(tmp_path, tiny_model_dir)
    r = _cli("run", root, "--dry-run")
    assert r.exit_code == 0, r.output
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
             if line.startswith("  ") and ":" in line}
    assert re.fullmatch(r"[\d,]+ tokens", lines["train_tokens"])
    assert re.fullmatch(r"\$[\d,]+\.\d\d", lines["cost_usd"])
    assert re.fullmatch(r"[\d,]+\.\d GB", lines["memory_gb"])
    assert lines["fits"] in ("yes", "no")
    assert "(under a minute)" in lines["cpu_hours"] or "minutes" in lines["cpu_hours"]
    assert "gpu_hours (if a GPU were rented)" in lines
    assert not re.search(r"\d\.\d{4,}|e-\d", r.stdout.split("fits_note")[0])  # no raw floats


def test_a_missing_base_model_directory_is_a_finding_and_paths_resolve_against_the_project(
        tmp_path, tiny_model_dir, monkeypatch):
    import shutil

    root = _ticket(tmp_path, "./models/tiny")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, elsewhere / "models" / "tiny")  # the same relative path, seen from the cwd
    monkeypatch.chdir(elsewhere)
    out = json.loads(_cli("assess", root, "--json", "--no-embeddings").stdout)
    (f,) = [f for f in out["findings"] if f["code"] == "base_model_missing"]
    ex = f["examples"][0]
    line = 1 + (root / "project.yaml").read_text().splitlines().index("base_model: ./models/tiny")
    assert ex["file"].endswith("project.yaml") and ex["line"] == line
    assert str(root / "models" / "tiny") in ex["detail"] and "tokens estimated from characters" in ex["detail"]
    assert out["estimate"]["model"]["parameters"] is None  # not the cwd's model
    assert "estimate" in out["data"]["train"]["tokens"]["method"]  # character estimate, said so

    # built inside the project: no finding, and the same answer from the project directory and from elsewhere
    shutil.copytree(tiny_model_dir, root / "models" / "tiny")
    shutil.rmtree(elsewhere / "models" / "tiny")
    (elsewhere / "models" / "tiny").mkdir()  # a decoy without config.json
    results = []
    for cwd in (elsewhere, root):
        monkeypatch.chdir(cwd)
        shutil.rmtree(root / ".advise", ignore_errors=True)  # assess again, not from the store
        target = root if cwd == elsewhere else "."
        results.append(json.loads(_cli("assess", target, "--json", "--no-embeddings").stdout))
    a, b = results
    assert "base_model_missing" not in {f["code"] for f in a["findings"]}
    assert a["estimate"]["model"]["parameters"] == b["estimate"]["model"]["parameters"] < 10_000_000
    tok = lambda r: {k: v for k, v in r["data"]["train"]["tokens"].items() if k != "method"}  # noqa: E731
    assert tok(a) == tok(b)  # the path is shown as given; the counts are the same
    assert "tokenizer of the base model" in a["data"]["train"]["tokens"]["method"]
    assert a["recommendation"]["method"] == b["recommendation"]["method"]

    # an empty directory where the model should be (an unfinished build or copy) is no model either
    shutil.rmtree(root / "models" / "tiny")
    (root / "models" / "tiny").mkdir()
    shutil.rmtree(root / ".advise", ignore_errors=True)
    out = json.loads(_cli("assess", root, "--json", "--no-embeddings").stdout)
    (f,) = [f for f in out["findings"] if f["code"] == "base_model_missing"]
    assert "has no config.json" in f["examples"][0]["detail"]


def test_the_cost_table_says_when_lora_needs_more_memory_because_of_its_micro_batch():
    from rich.console import Console

    from advisor.cli.views import print_cost_table

    r = _run(methods=["prompting", "lora", "full"], base_model="Qwen/Qwen2.5-0.5B-Instruct", hardware="1x A10G",
             batch_size=16)
    con = Console(record=True, width=200)
    print_cost_table(r, "lora", con)
    out = con.export_text()
    assert "GPU-hours" in out and "wall time" in out and "CPU time" not in out  # a GPU project
    assert "(batch 16)" in out and "(batch 8)" in out
    assert "lora: lora needs more memory than full fine-tuning" in out and "larger micro-batch (16 vs 8)" in out
    assert "494M parameters" in out
