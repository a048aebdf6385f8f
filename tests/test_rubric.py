"""advisor/rubric.py is the one reader of the shipped rubric tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import advisor.rubric as rubric
from advisor.assess.estimate import estimate, parse_hardware
from advisor.assess.estimate import hardware as hardware_module

REPO = Path(__file__).resolve().parents[1]
TABLES = sorted(p.stem for p in (REPO / "rubrics").glob("*.yaml"))


@pytest.mark.parametrize("name", TABLES)
def test_every_shipped_table_loads_through_the_loader(name):
    table = rubric.load_rubric(name)
    assert isinstance(table, dict) and table
    assert rubric.load_rubric(name) is table  # parsed once per process


def test_no_other_module_reads_a_rubric_table():
    reader = re.compile(r"""files\(\s*["']rubrics["']\s*\)|rubrics/[a-z_]+\.yaml["']\s*\)\.read""")
    offenders = [str(p.relative_to(REPO)) for top in ("advisor", "evaluators", "trainers")
                 for p in sorted((REPO / top).rglob("*.py"))
                 if p != REPO / "advisor" / "rubric.py" and reader.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


@pytest.fixture()
def extra_gpu(monkeypatch):
    """The shipped hardware table with one more GPU, served by the rubric loader only."""
    shipped = rubric._shipped

    def patched(name: str) -> dict:
        table = shipped(name)
        if name != "hardware":
            return table
        z = {"name": "Z100", "aliases": ["z100"], "memory_gb": 200, "bf16_dense_tflops": 5000, "bf16": True,
             "source": "a test GPU"}
        return {**table, "gpus": [*table["gpus"], z]}

    monkeypatch.setattr(rubric, "_shipped", patched)
    hardware_module._gpu_index.cache_clear()
    yield
    monkeypatch.undo()
    hardware_module._gpu_index.cache_clear()


def test_the_estimate_reads_its_hardware_table_through_the_loader(extra_gpu, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    hw = parse_hardware("2x Z100")
    assert (hw.gpu, hw.count, hw.memory_gb, hw.bf16_tflops) == ("Z100", 2, 200.0, 5000.0)
    est = estimate(methods=["full"], base_model="Qwen/Qwen2.5-0.5B", model_dir=None, train_tokens_per_epoch=10**6,
                   epochs=1, hardware="1x Z100", budget_usd=None, on_prem=True)
    row = est["methods"][0]
    mfu = rubric.value(rubric.load_rubric("hardware"), "compute", "mfu")
    expected = 6 * 494032768 * 10**6 / (5000e12 * mfu) / 3600
    assert row["gpu_hours"] == pytest.approx(expected, rel=1e-5)
    assert row["fits"] is True


def test_after_the_patch_the_test_gpu_is_unknown_again():
    hardware_module._gpu_index.cache_clear()
    with pytest.raises(ValueError, match="unknown GPU 'Z100'"):
        parse_hardware("Z100")
