"""Human evaluation end to end through the CLI on the ticket-routing sample project: eval by a loopback
OpenAI-compatible server (candidates and judge), a blinded rating sheet exported, filled by several raters,
imported (means with intervals, paired differences, Krippendorff's alpha, judge-human agreement), gated and
shown in the report; Krippendorff's alpha checked against the published example of Krippendorff (2011)."""

from __future__ import annotations

import csv
import json
import threading
from http.server import ThreadingHTTPServer

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from eval_fixtures import copy_project
from scipy.stats import spearmanr
from test_eval_http import EVAL_FILE, FakeOpenAI, _handler

from advisor.cli.main import main
from advisor.project import load_project
from advisor.store import Store
from evaluators.ratings import RATINGS_KIND, SHEET_KIND, alpha

N = 24  # eval items
ZS, FS = "endpoint:fake:zero-shot", "endpoint:fake:few-shot"  # zero-shot right on half the items, few-shot on all

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12 units
NAN = float("nan")
K2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
         [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]]


def _set(root, **keys):
    cfg = yaml.safe_load((root / "project.yaml").read_text(encoding="utf-8"))
    for k, v in keys.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


@pytest.fixture
def evaluated(tmp_path):
    """(project, server state, URL): the ticket project evaluated (24 items) by the fake server, with the server
    as judge."""
    root = copy_project(tmp_path / "ticket", None, max_items=N)
    truth = {}
    for line in (root / EVAL_FILE).read_text().splitlines()[:N]:
        msgs = json.loads(line)["messages"]
        truth[msgs[1]["content"]] = msgs[2]["content"]
    state = FakeOpenAI(truth, set(sorted(truth)[::2]))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    r = invoke("eval", str(root), "--endpoint", url, "--endpoint-model", "fake", "--judge-endpoint", url,
               "--judge-model", "judge", "--retriever", "bm25", "--canary", "none", "--no-progress", "--json")
    assert r.exit_code == 0, r.stderr
    assert [x["candidate"] for x in json.loads(r.stdout)["runs"]] == [ZS, FS]
    yield root, state, url
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def sheet_key(root, sheet_id):
    with Store.for_project(load_project(root), read_only=True) as store:
        return store.latest_run(SHEET_KIND, name=sheet_id)["result"]["key"]


def fill(rows, rater, rate):
    """A copy of the sheet's rows filled by one rater: ``rate(row) -> {criterion: value}``."""
    out = []
    for row in rows:
        row = dict(row)
        row.update({k: "" if v is None else str(v) for k, v in rate(row).items()})
        row["rater"] = rater
        out.append(row)
    return out


def test_alpha_matches_the_published_example():
    """Krippendorff (2011): nominal 0.743, ordinal 0.815, interval 0.849 on the 4 x 12 reliability data."""
    assert alpha(K2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert alpha(K2011, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert alpha(K2011, "interval") == pytest.approx(0.849, abs=5e-4)
    assert alpha([[1, 2, NAN]], "nominal") is None  # one rater
    assert alpha([[3, 3, 3], [3, 3, NAN]], "ordinal") is None  # one value everywhere


def test_export_is_blinded_and_the_ratings_report_means_differences_agreement_and_the_judge(evaluated, tmp_path):
    root, server, url = evaluated
    sheet = tmp_path / "sheet.csv"
    r = invoke("eval", str(root), "--export-ratings", str(sheet), "--rating-items", "20", "--rating-seed", "3")
    assert r.exit_code == 0, r.stderr
    assert "40 rows (20 items x 2 candidates" in r.stdout
    rows = read_csv(sheet)
    text = sheet.read_text(encoding="utf-8")
    assert list(rows[0]) == ["sheet", "row", "item", "answer", "question", "reference", "response", "relevance",
                             "accuracy", "tone", "completeness", "rater", "comment"]
    assert len(rows) == 40 and len({r["row"] for r in rows}) == 40
    assert "endpoint" not in text and "fake" not in text and "shot" not in text  # no candidate name on the sheet
    assert all(r[c] == "" for r in rows for c in ("relevance", "accuracy", "tone", "completeness", "rater"))
    key = sheet_key(root, rows[0]["sheet"])
    assert set(key) == {r["row"] for r in rows}
    firsts = [key[r["row"]]["candidate"] for r in rows if r["answer"] == "A"]
    assert set(firsts) == {ZS, FS}  # the order is drawn per item, not fixed
    # the same seed samples the same items; --json describes the sheet, never its key
    again = tmp_path / "again.csv"
    r = invoke("eval", str(root), "--export-ratings", str(again), "--rating-items", "20", "--rating-seed", "3", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["candidates"] == [ZS, FS] and doc["rows"] == 40 and "key" not in doc
    assert not any(code in r.stdout for code in sheet_key(root, doc["sheet"]))
    assert sorted({r["question"] for r in read_csv(again)}) == sorted({r["question"] for r in rows})

    # three raters: accuracy from the reference (right 5, wrong 1 or 2), the rest by taste
    def rater(shift):
        def rate(row):
            right = row["response"] == row["reference"]
            acc = 5 if right else 1 + (int(row["item"]) + shift) % 2
            return {"accuracy": acc, "relevance": 4 if right else 3, "tone": 3 + (int(row["item"]) + shift) % 3,
                    "completeness": "" if shift == 2 and row["item"] == "1" else 4}
        return rate

    files = [write_csv(tmp_path / f"r{i}.csv", fill(rows, f"rater{i}", rater(i))) for i in range(3)]
    r = invoke("eval", str(root), *sum((["--import-ratings", str(f)] for f in files), []), "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["raters"] == ["rater0", "rater1", "rater2"] and res["items"] == 20 and res["ratings"] == 120
    acc = res["by_criterion"]["accuracy"]
    zs, fs = acc["candidates"][ZS], acc["candidates"][FS]
    assert fs["value"] == 5.0 and fs["n"] == 20 and fs["ratings"] == 60
    right = {r["row"] for r in rows if r["response"] == r["reference"]}
    zs_rows = [r for r in rows if key[r["row"]]["candidate"] == ZS]
    expected = np.mean([5 if r["row"] in right else np.mean([1 + (int(r["item"]) + s) % 2 for s in range(3)])
                        for r in zs_rows])
    assert zs["value"] == pytest.approx(expected)
    assert zs["ci"][0] < zs["value"] < zs["ci"][1] < 5
    (comp,) = acc["comparisons"]
    assert (comp["a"], comp["b"]) == (ZS, FS) and comp["delta"] == pytest.approx(5 - expected)
    assert comp["ci"][0] > 0 and comp["p_value"] < 0.05 and comp["losses"] == 0
    # agreement: the package's ordinal alpha on the raters x rows table built here from the files
    units = [r["row"] for r in rows]
    table = [[float(x["accuracy"]) for x in read_csv(f)] for f in files]
    assert [r["row"] for r in read_csv(files[0])] == units
    assert acc["agreement"]["alpha"] == pytest.approx(alpha(table, "ordinal"))
    assert acc["agreement"]["level"] == "ordinal" and acc["agreement"]["units"] == 40
    assert res["by_criterion"]["completeness"]["agreement"]["alpha"] is None  # everyone gave 4
    tone = res["by_criterion"]["tone"]["agreement"]  # the raters' tastes differ item by item
    assert tone["alpha"] < 0 and tone["reading"] == "unreliable" and acc["agreement"]["reading"] == "reliable"
    assert any(w.startswith("tone: the raters disagree") for w in res["warnings"])
    assert res["by_criterion"]["completeness"]["candidates"][FS]["ratings"] in (58, 59)
    # the judge scored right answers 9/10 and wrong 2/10: it agrees with the raters' accuracy
    judge = acc["judge"]
    assert judge["n"] == 40 and judge["rho"] > 0.8 and judge["p_value"] < 0.001
    judged = {(r["item"], r["answer"]): 8 / 9 if r["response"] == r["reference"] else 1 / 9 for r in rows}
    mean_acc = {(r["item"], r["answer"]): np.mean([float(x["accuracy"]) for f in files for x in read_csv(f)
                                                   if (x["item"], x["answer"]) == (r["item"], r["answer"])])
                for r in rows}
    rho = spearmanr([judged[k] for k in judged], [mean_acc[k] for k in judged]).statistic
    half = 1.959964 * np.sqrt((1 + rho**2 / 2) / 37)  # Fisher z, Bonett & Wright's variance, n = 40
    assert judge["rho"] == pytest.approx(rho)
    assert judge["ci"] == pytest.approx([np.tanh(np.arctanh(rho) - half), np.tanh(np.arctanh(rho) + half)], abs=1e-5)
    # terminal tables
    r = invoke("eval", str(root), "--import-ratings", str(files[0]))
    assert r.exit_code == 0, r.stderr
    assert "Krippendorff's alpha (ordinal)" in r.stdout and "Spearman" in r.stdout and "accuracy" in r.stdout
    # a re-import of a rater replaces that rater's ratings, it does not add to them
    with Store.for_project(load_project(root), read_only=True) as store:
        assert len(store.find_runs(RATINGS_KIND)) == 4
    r = invoke("eval", str(root), "--import-ratings", str(files[0]), "--json")
    assert json.loads(r.stdout)["ratings"] == 120

    # gates on the ratings, and the report shows them
    _set(root, eval={"gates": {"human.accuracy": ">= 4.0", "human.relevance": {"min": 3.5, "on": "lower_bound"}}})
    r = invoke("gate", str(root), "--candidate", FS, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    g = json.loads(r.stdout)
    assert g["status"] == "pass" and g["gates"][0]["observed"] == 5.0 and "20 rated items" in g["gates"][0]["message"]
    r = invoke("gate", str(root), "--candidate", ZS, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["gates"][0]["status"] == "fail"
    _set(root, eval={"gates": {"human.tone": ">= 3"}})
    g = json.loads(invoke("gate", str(root), "--candidate", FS, "--json").stdout)
    assert g["gates"][0]["status"] == "warn" and "unreliable ratings" in g["warnings"][0]
    _set(root, eval={"gates": {"human.accuracy": {"no_regression": {"baseline": ZS}}}})
    r = invoke("gate", str(root), "--candidate", FS, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["gates"][0]["observed"] == pytest.approx(5 - expected, abs=1e-4)
    _set(root, eval={"gates": {"human.fluency": ">= 3"}})
    r = invoke("gate", str(root), "--candidate", FS)
    assert r.exit_code == 2 and "human.fluency" in r.stderr and "no fluency ratings" in r.stderr
    out = tmp_path / "report.html"
    r = invoke("report", str(root), "--out", str(out))
    assert r.exit_code == 0, r.stderr
    html = out.read_text(encoding="utf-8")
    assert 'id="ratings"' in html and "Krippendorff" in html and f"{fs['value']:.2f}" in html
    assert "rater0, rater1, rater2" in html

    # the zero-shot candidate changes (every answer now right): its ratings are of older answers
    server.good = set(server.truth)
    r = invoke("eval", str(root), "--endpoint", url, "--endpoint-model", "fake", "--judge-endpoint", url,
               "--judge-model", "judge", "--retriever", "bm25", "--canary", "none", "--no-progress", "--no-cache")
    assert r.exit_code == 0, r.stderr
    changed = sum(1 for r in zs_rows if r["row"] not in right)
    r = invoke("eval", str(root), "--import-ratings", str(files[0]), "--json")
    res = json.loads(r.stdout)
    assert res["stale"] == {ZS: changed} and any(w.startswith(f"{ZS}: {changed} of the rated answers")
                                                 for w in res["warnings"])
    _set(root, eval={"gates": {"human.accuracy": ">= 2"}})
    g = json.loads(invoke("gate", str(root), "--candidate", ZS, "--json").stdout)
    assert g["gates"][0]["status"] == "warn" and "export and rate a new sheet" in g["warnings"][0]
    assert json.loads(invoke("gate", str(root), "--candidate", FS, "--json").stdout)["status"] == "pass"


def test_published_example_through_the_sheets(evaluated, tmp_path):
    """The 12 units of Krippendorff (2011) as the 12 rows of a 6-item sheet rated by 4 raters."""
    root, server, url = evaluated
    _set(root, ratings={"criteria": ["accuracy"], "scale": "1-5"})
    sheet = tmp_path / "s.csv"
    assert invoke("eval", str(root), "--export-ratings", str(sheet), "--rating-items", "6").exit_code == 0
    rows = read_csv(sheet)
    assert len(rows) == 12 and list(rows[0])[7:] == ["accuracy", "rater", "comment"]
    files = []
    for k, observer in enumerate(K2011):
        vals = iter(observer)
        files += ["--import-ratings", str(write_csv(tmp_path / f"o{k}.csv", fill(
            rows, "ABCD"[k], lambda _row, v=vals: {"accuracy": "" if np.isnan(x := next(v)) else int(x)})))]
    r = invoke("eval", str(root), *files, "--json")
    assert r.exit_code == 0, r.stderr
    ag = json.loads(r.stdout)["by_criterion"]["accuracy"]["agreement"]
    assert ag["alpha"] == pytest.approx(0.815, abs=5e-4) and ag["units"] == 11 and ag["raters"] == 4


def test_pass_fail_jsonl_sheets_use_nominal_alpha(evaluated, tmp_path):
    root, server, url = evaluated
    _set(root, ratings={"criteria": {"correct": "Is the queue right?"}, "scale": "pass/fail", "show_reference": False})
    sheet = tmp_path / "s.jsonl"
    r = invoke("eval", str(root), "--export-ratings", str(sheet), "--rating-items", "8")
    assert r.exit_code == 0, r.stderr
    assert "  correct: Is the queue right?" in r.stdout and "pass/fail scale" in r.stdout
    rows = [json.loads(line) for line in sheet.read_text().splitlines()]
    assert len(rows) == 16 and "reference" not in rows[0] and rows[0]["correct"] is None
    paths = []
    for k, words in enumerate([("pass", "fail"), ("1", "0"), ("Pass", "FAIL")]):
        path = tmp_path / f"r{k}.jsonl"
        with open(path, "w") as fh:
            for i, row in enumerate(rows):
                ok = row["item"] % 3 != 0 if k == 2 and i % 2 else row["item"] % 2 == 0
                name = "<i>r2</i>" if k == 2 else f"r{k}"  # shown in the report: escaped
                fh.write(json.dumps({**row, "correct": words[0] if ok else words[1], "rater": name}) + "\n")
        paths += ["--import-ratings", str(path)]
    r = invoke("eval", str(root), *paths, "--json")
    assert r.exit_code == 0, r.stderr
    b = json.loads(r.stdout)["by_criterion"]["correct"]
    table = []
    for k in range(3):
        table.append([1.0 if json.loads(line)["correct"] in ("pass", "1", "Pass") else 0.0
                      for line in (tmp_path / f"r{k}.jsonl").read_text().splitlines()])
    assert b["agreement"]["level"] == "nominal" and b["agreement"]["alpha"] == pytest.approx(alpha(table, "nominal"))
    for m in b["candidates"].values():
        assert 0 <= m["ci"][0] <= m["value"] <= m["ci"][1] <= 1
    out = tmp_path / "report.html"
    assert invoke("report", str(root), "--out", str(out)).exit_code == 0
    html = out.read_text(encoding="utf-8")
    assert "&lt;i&gt;r2&lt;/i&gt;" in html and "<i>r2" not in html and "nominal" in html


def test_a_bad_cell_names_file_and_line_and_nothing_is_stored(evaluated, tmp_path):
    root, server, url = evaluated
    sheet = tmp_path / "s.csv"
    assert invoke("eval", str(root), "--export-ratings", str(sheet), "--rating-items", "4").exit_code == 0
    rows = read_csv(sheet)
    good = write_csv(tmp_path / "good.csv", fill(rows, "ann", lambda _r: {"accuracy": 4}))
    filled = fill(rows, "bob", lambda _r: {"accuracy": 3})
    filled[3]["tone"] = "7"
    bad = write_csv(tmp_path / "bad.csv", filled)
    r = invoke("eval", str(root), "--import-ratings", str(good), "--import-ratings", str(bad))
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert f"{bad}:5: tone: '7' is not on the 1-5 scale" in line
    with Store.for_project(load_project(root), read_only=True) as store:
        assert store.find_runs(RATINGS_KIND) == []  # the good sheet is not stored either
    cases = [
        (lambda rs: rs[1].update(rater=""), "rater cell is empty", 3),
        (lambda rs: rs[2].update(row="NOPE42"), "row 'NOPE42' is not a row of sheet", 4),
        (lambda rs: rs[2].update(accuracy="4.5"), "accuracy: '4.5' is not on the 1-5 scale", 4),
        (lambda rs: rs[2].update(row=rs[1]["row"]), "rated row", 4),
        (lambda rs: [r.update(sheet="S0000000") for r in rs], "sheet 'S0000000' is not in this project's run store", 2),
    ]
    for change, message, at in cases:
        rs = fill(rows, "cy", lambda _r: {"accuracy": 2})
        change(rs)
        f = write_csv(tmp_path / "case.csv", rs)
        r = invoke("eval", str(root), "--import-ratings", str(f))
        assert r.exit_code == 2, message
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith(f"advise: {f}:{at}: ") and message in line, line
    _set(root, eval={"gates": {"human.accuracy": ">= 4"}})
    r = invoke("gate", str(root), "--candidate", FS)
    assert r.exit_code == 2 and "no human ratings are stored" in r.stderr
    assert f"project.yaml:{load_project(root).key_line('eval', 'gates')}:" in r.stderr
    # a cell with line breaks (a long answer) spans lines: errors still name the physical line of the row
    rs = fill(rows, "cy", lambda _r: {"accuracy": 2})
    rs[0]["response"] = "first line\nsecond line\nthird line"
    rs[2]["accuracy"] = "x"
    f = write_csv(tmp_path / "multiline.csv", rs)
    lines = f.read_text(encoding="utf-8").splitlines()
    at = next(n for n, text in enumerate(lines, 1) if text.startswith(f"{rs[2]['sheet']},{rs[2]['row']},"))
    assert at == 6
    r = invoke("eval", str(root), "--import-ratings", str(f))
    assert r.exit_code == 2 and f"{f}:{at}: accuracy: 'x' is not on the 1-5 scale" in r.stderr
    r = invoke("eval", str(root), "--import-ratings", str(sheet))  # the sheet as exported: nothing rated
    assert r.exit_code == 2 and "no rating in the sheet" in r.stderr
    r = invoke("eval", str(root), "--import-ratings", str(good), "--import-ratings", str(good))
    assert r.exit_code == 2 and "give each rater's sheet once" in r.stderr
    with Store.for_project(load_project(root), read_only=True) as store:
        assert store.find_runs(RATINGS_KIND) == []
    # a sheet saved with ';' separators (as some spreadsheets do) reads the same
    semi = tmp_path / "semi.csv"
    with open(semi, "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=";")
        w.writeheader()
        w.writerows(fill(rows, "dee", lambda _r: {"accuracy": 5}))
    r = invoke("eval", str(root), "--import-ratings", str(semi), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["raters"] == ["dee"] and json.loads(r.stdout)["ratings"] == 8


def test_formula_text_is_quoted_on_a_csv_sheet():
    from evaluators.ratings_sheet import columns, render_sheet

    cols = columns(["accuracy"], show_reference=True)
    text = render_sheet([{"sheet": "S1", "row": "R1", "item": 1, "answer": "A", "question": "=HYPERLINK(\"x\")",
                          "reference": "+1", "response": "@SUM(A1)"}], cols, "csv")
    (row,) = list(csv.DictReader(text.splitlines()))
    assert (row["question"], row["reference"], row["response"]) == ("'=HYPERLINK(\"x\")", "'+1", "'@SUM(A1)")
    assert row["accuracy"] == "" and row["rater"] == ""


def test_export_refusals(tmp_path, evaluated):
    root, server, url = evaluated
    existing = tmp_path / "mine.csv"
    existing.write_text("my filled sheet\n")
    r = invoke("eval", str(root), "--export-ratings", str(existing))
    assert r.exit_code == 2 and "the file exists" in r.stderr and existing.read_text() == "my filled sheet\n"
    r = invoke("eval", str(root), "--export-ratings", str(tmp_path / "s.xlsx"))
    assert r.exit_code == 2 and ".csv or a .jsonl" in r.stderr
    r = invoke("eval", str(root), "--export-ratings", str(tmp_path / "s.csv"), "--candidate", "tuned:*")
    assert r.exit_code == 2 and "--candidate tuned:*: no stored eval results" in r.stderr
    r = invoke("eval", str(root), "--rating-items", "3")
    assert r.exit_code == 2 and "go with --export-ratings" in r.stderr
    # an eval of part of the set (--max-items) is exported by naming it
    _set(root, eval={"max_items": None})
    r = invoke("eval", str(root), "--export-ratings", str(tmp_path / "part.csv"))
    assert r.exit_code == 2 and f"covers {N} items and this export 100: give the eval's --max-items {N}" in r.stderr
    r = invoke("eval", str(root), "--export-ratings", str(tmp_path / "part.csv"), "--max-items", str(N),
               "--rating-items", "5")
    assert r.exit_code == 0, r.stderr
    assert len(read_csv(tmp_path / "part.csv")) == 10
    fresh = copy_project(tmp_path / "fresh", None)
    r = invoke("eval", str(fresh), "--export-ratings", str(tmp_path / "s.csv"))
    assert r.exit_code == 2 and "run advise eval first" in r.stderr and not (tmp_path / "s.csv").exists()
    _set(fresh, ratings={"scale": "5-1"})
    r = invoke("eval", str(fresh), "--export-ratings", str(tmp_path / "s.csv"))
    assert r.exit_code == 2 and "ratings.scale" in r.stderr and "project.yaml:" in r.stderr
    _set(fresh, ratings={"scale": "1-5", "criteria": 5})
    r = invoke("eval", str(fresh), "--export-ratings", str(tmp_path / "s.csv"))
    assert r.exit_code == 2 and "ratings.criteria has the wrong form: expected a list of criterion names" in r.stderr
