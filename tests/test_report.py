"""The report renders self-contained, escaped and readable: checked in a real headless browser."""

import json
import shutil
from html import unescape
from pathlib import Path

import pytest
from conftest import SAMPLES
from report_browser import open_in_browser

from advisor.assess.assessment import assess
from advisor.project import load_project
from advisor.report.render import render_report, write_report

EVIL = ['<script>alert("x")</script>', "</script><script>alert(1)</script>", '<img src=x onerror="alert(2)">',
        '<a href="javascript:alert(3)">click</a>', "{{ 7*7 }}"]


def synthetic(n_items=40):
    a = assess(load_project(SAMPLES / "banking77-intents"), use_embeddings=False)
    a["project"]["task"] = "Route messages " + EVIL[0]
    a["recommendation"]["reasons"].append("reason with " + EVIL[2])
    runs = [
        {"candidate": "base:zero-shot", "items": n_items, "metrics": {"accuracy": {"value": 0.1, "ci": [0.04, 0.2]}}},
        {"candidate": "base:few-shot", "items": n_items, "metrics": {"accuracy": {"value": 0.3, "ci": [0.2, 0.45]}}},
        {"candidate": "tuned:lora", "items": n_items, "metrics": {"accuracy": {"value": 0.8, "ci": [0.66, 0.9]}}},
    ]
    comparisons = [{"a": "base:zero-shot", "b": "tuned:lora", "metrics": {"accuracy": {
        "delta": 0.7, "ci": [0.55, 0.82], "p_value": 1e-8, "test": "mcnemar_exact", "wins": 29, "losses": 1, "ties": 10}}}]
    worse = {"a": "base:zero-shot", "b": "tuned:lora", "total": n_items,
             "items": [{"input": EVIL[i % len(EVIL)] + f" item {i}", "reference": EVIL[(i + 1) % len(EVIL)],
                        "a_output": "card_arrival", "b_output": EVIL[(i + 2) % len(EVIL)] + "x" * 3000,
                        "name": f"ticket-{i}" if i % 2 else f"eval.jsonl:{i + 1}"}
                       for i in range(n_items)]}
    ex = {kind: {"total": n, "items": [{"line": 3 + i, "input": EVIL[i % len(EVIL)] + " message " + "y" * 200,
                                         "reference": "card_arrival", "a_output": EVIL[(i + 1) % len(EVIL)],
                                         "b_output": "card_arrival" if kind != "lost" else "exchange_rate",
                                         "a_score": 0.0 if kind == "won" else 1.0, "b_score": 0.0 if kind == "lost" else 1.0}
                                        for i in range(min(3, n))]}
          for kind, n in (("won", 29), ("lost", 1), ("tied", 10))}
    decision = {"outcome": "ship", "headline": "tuned:lora beats base:few-shot by +0.500 accuracy [+0.310, +0.640], "
                "McNemar p < 0.001, 40 items", "facts": ["the gate passes", "1 item got worse",
                                                         "training took 72 s, estimated cost $0.00"],
                "reasons": [], "candidate": "tuned:lora", "baseline": "base:few-shot", "metric": "accuracy",
                "higher_is_better": True, "examples": ex}
    return {
        "project": a["project"] | {"name": "banking77-intents"},
        "decision": decision,
        "assessment": a,
        "eval": {"runs": runs, "comparisons": comparisons, "worse": worse,
                 "canary": {"base:zero-shot": {"value": 0.5, "ci": [0.3, 0.7]}, "tuned:lora": {"value": 0.45, "ci": [0.25, 0.65]}}},
        "train": {"run_id": "train-1", "method": "lora", "artifact": "/x/" + EVIL[1], "train_tokens": 340000,
                  "tokens_per_second": 4700.0, "final_loss": 0.21, "peak_memory_mb": 900.0, "wall_seconds": 72.0,
                  "loss_history": [{"step": s, "loss": 3.0 / (1 + s / 20)} for s in range(0, 200, 5)],
                  "config": {"learning_rate": 1e-3, "max_steps": 200, "batch_size": 16, "lora_r": 16,
                             "lora_target_modules": ["q_proj", "v_proj"], "seed": 42, "note": EVIL[2]}},
        "gate": {"status": "pass", "gates": [{"gate": "accuracy >= 0.6", "status": "pass", "message": "0.8 meets >= 0.6"}]},
        "repro": {"config": json.dumps({"lr": 1e-3, "note": EVIL[0]}), "command": "advise run sample"},
        "pipeline": {"notes": ["note " + EVIL[3]]},
        "plan": {"outcome": "ship", "ab_test": {
            "metric": "accuracy", "control": "base:few-shot", "treatment": "tuned:lora", "control_value": 0.3,
            "treatment_value": 0.8, "alpha": 0.05, "power": 0.8, "kind": "proportions",
            "statistic": "Cohen's h of the two rates", "rows": [
                {"label": "the measured effect", "delta": 0.5, "from": 0.3, "to": 0.8, "effect_size": 1.0734,
                 "per_arm": 14, "total": 28},
                {"label": "50% of it (a smaller effect)", "delta": 0.25, "from": 0.3, "to": 0.55,
                 "effect_size": 0.5, "per_arm": 63, "total": 126}]},
            "rows": [{"signal": "input length (words) against the training inputs " + EVIL[0],
                      "statistic": "PSI over the training inputs' deciles (10 bins), on windows of at least 1,234 requests",
                      "baseline": "train p50 9, p90 15 words; eval set PSI 0.031", "alert": "PSI > 0.1",
                      "retrain": "PSI > 0.25"},
                     {"signal": "format errors", "statistic": "share of answers that are not one of the training labels",
                      "baseline": "2.0% of 40 eval answers", "alert": "> 4.0% (baseline + 2%)",
                      "retrain": "> 6.0% for a week"}],
            "edges": [6.0, 7.0, 8.0, 9.0], "sources": {"psi": "Siddiqi 2006 " + EVIL[2]}},
        "provenance": {"framework": "NIST AI 100-1 (AI RMF 1.0)", "project_licences": ["LICENSE: " + EVIL[1]],
                       "data": [{"role": role, "path": f"data/{role}.jsonl", "sha256": "ab" * 32, "examples": 308,
                                 "licences": ["README.md: License: CC BY 4.0 " + EVIL[3]], "changed_since_training": False}
                                for role in ("train", "eval")],
                       "base_model": {"id": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "c" * 40, "licence": "apache-2.0",
                                      "card": "the model card's YAML front matter", "architecture": "Qwen2ForCausalLM"},
                       "forgetting": {"what": "a general-capability canary set", "measured": [
                           {"candidate": "tuned:lora", "value": 0.45, "ci": [0.25, 0.65]}]},
                       "not_measured": ["robustness to adversarial inputs"], "limits": ["limit " + EVIL[4]]},
    }


def test_report_escapes_everything_and_has_a_strict_csp():
    html = render_report(synthetic())
    assert "Content-Security-Policy" in html and "default-src 'none'" in unescape(html)
    assert "<code>ticket-1</code>" in html and "<code>eval.jsonl:1</code>" in html  # items by their id or file:line
    assert "<script" not in html.lower()
    assert "onerror=" not in html.replace("onerror=&#34;", "")  # only as escaped text
    assert "&lt;img src=x onerror=" in html
    assert 'href="javascript:' not in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert "{{ 7*7 }}" in html or "{{ 7*7 }}".replace("{", "&#123;") in html
    # the shipped stylesheet goes in as it is: escaped, its child selectors and quoted fonts would not apply
    css = (Path(__file__).parents[1] / "advisor" / "report" / "templates" / "report.css").read_text()
    assert f"<style>{css}</style>" in html and ".scroll > table" in css


def test_report_under_1mb_for_1000_items(tmp_path):
    out = write_report(synthetic(1000), tmp_path / "report.html")
    assert out.stat().st_size < 1_000_000


def test_report_in_headless_chromium(tmp_path):
    from PIL import Image

    page = open_in_browser(write_report(synthetic(), tmp_path / "report.html"), tmp_path / "shot.png")
    shutil.copy(tmp_path / "shot.png", "/tmp/advise-report-shot.png") if Path("/tmp").is_dir() else None
    assert page["dialogs"] == [] and page["page_errors"] == []
    assert [c for c in page["console"] if c[0] in ("error", "warning")] == []
    assert page["requests"] == [(tmp_path / "report.html").resolve().as_uri()]
    assert page["scripts"] == 0 and page["images"] == 0 and page["js_links"] == 0
    assert page["svgs"] >= 3  # results, loss curve, token histogram, labels
    text = page["text"]
    assert '<script>alert("x")</script>' in text and '<img src=x onerror="alert(2)">' in text
    # banking77's leakage (11 of 308) is within the metric's CI: a warning, not a blocker
    assert "LORA" in text and "Warnings" in text and "11 of 308 eval records" in text and "built-in method" not in text
    assert text.index("SHIP") < text.index("Verdict") and "Examples side by side" in text
    assert "Hyperparameters" in text and "learning rate" in text
    # the plan after the decision, provenance before the reproducibility section
    html = (tmp_path / "report.html").read_text()
    ids = [html.index(f'<section id="{x}"') for x in ("plan", "verdict", "cost", "provenance", "repro")]
    assert html.index('id="decision"') < ids[0] and ids == sorted(ids)
    assert "63" in text and "ab" * 32 in text and "Qwen2ForCausalLM" in text and "apache-2.0" in text
    img = Image.open(tmp_path / "shot.png").convert("RGB")
    assert img.width == 1280 and img.height > 2000
    # the decision box is drawn first: its green border colour (#1a7f37) is on the top of the screenshot
    top = img.crop((0, 0, img.width, 400))
    colours = top.getcolors(maxcolors=1 << 24)
    assert any(abs(r - 0x1A) < 8 and abs(g - 0x7F) < 8 and abs(b - 0x37) < 8 for _, (r, g, b) in colours)


def test_report_fits_a_phone_screen(tmp_path):
    from PIL import Image

    page = open_in_browser(write_report(synthetic(), tmp_path / "report.html"), tmp_path / "phone.png", width=390)
    shutil.copy(tmp_path / "phone.png", "/tmp/advise-report-phone.png") if Path("/tmp").is_dir() else None
    assert page["scroll_width"] <= 400  # no page-wide horizontal scrolling; wide tables scroll in place
    assert page["console"] == [] and page["page_errors"] == [] and page["dialogs"] == []
    assert page["requests"] == [(tmp_path / "report.html").resolve().as_uri()]
    assert Image.open(tmp_path / "phone.png").width == 390


def test_report_prints(tmp_path):
    """Printed (print media): no navigation, nothing cut off in scroll boxes, the decision on page one."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from report_browser import CHROMIUM_ARGS, chromium_path

    html = write_report(synthetic(), tmp_path / "report.html")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 718, "height": 1000})  # A4's printable width at 96 dpi
            page.goto(html.resolve().as_uri())
            page.emulate_media(media="print")
            assert page.locator("nav.toc").is_hidden()
            assert page.evaluate("getComputedStyle(document.querySelector('.scroll')).overflowX") == "visible"
            # no table runs past the page's right edge (printed, a scroll box cannot scroll: it would be cut)
            cut = page.evaluate("""() => [...document.querySelectorAll('table')].filter(
                t => t.getBoundingClientRect().right > document.documentElement.clientWidth + 1).map(
                t => (t.closest('section') || {}).id + ': ' + t.innerText.slice(0, 60))""")
            assert cut == []
            assert page.locator("#plan table").count() == 2 and page.locator("#provenance table").count() == 1
            pdf = page.pdf(format="A4")
        finally:
            browser.close()
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
