"""The terminal summary of an assessment (rich): verdict first, then reasons, blockers, data
health and the cost table.

Data (labels, keys, file names, model ids, messages quoting them) is printed as text, never parsed
as rich markup (a label ``[/oops]`` is shown as is), and terminal escape sequences in it (ANSI CSI
colours, OSC-8 links, other control characters) are removed first: :func:`plain`.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from advisor.assess.estimate.compute import duration, parameter_count

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}

# ECMA-48: OSC (ESC ] ... BEL or ST), CSI (ESC [ params intermediates final), other ESC sequences, and
# C0/C1 control characters but tab and newline
_ESCAPES = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]"
                      r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value, style: str = "") -> Text:
    """Data as rich Text: no markup is interpreted and terminal escape sequences are removed."""
    return Text(_ESCAPES.sub("", str(value)), style=style)


def _money(v) -> str:
    return "-" if v is None else f"${v:,.2f}" if v < 100 else f"${v:,.0f}"


def _num(v, fmt="{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def print_assessment(a: dict, console: Console | None = None) -> None:
    con = console or Console()
    rec = a["recommendation"]
    head = Text()
    head.append(rec["method"].upper(), style="bold green")
    if rec.get("variant"):
        head.append(f" ({rec['variant']})", style="green")
    if rec["also"]:
        head.append(" + " + " + ".join(m.upper() for m in rec["also"]), style="bold green")
    head.append(f"   confidence {rec['confidence']:.2f}", style="bold")
    con.print(Panel(head, title=plain(f"advise assess: {a['project']['name']}"),
                    subtitle=plain(a["project"].get("base_model") or "")))

    con.print("[bold]Why[/]")
    for r in rec["reasons"]:
        con.print(plain(f"  • {r}"), highlight=False)
    if rec["blockers"]:
        con.print("[bold red]Blockers: fix before spending money[/]")
        for b in rec["blockers"]:
            con.print(plain(f"  ✗ {b}", "red"))
    if rec.get("warnings"):
        con.print("[bold yellow]Warnings: worth a look, not blocking[/]")
        for w in rec["warnings"]:
            con.print(plain(f"  ! {w}", "yellow"))
    if rec["alternatives"]:
        con.print("[bold]Alternatives[/]")
        for alt in rec["alternatives"]:
            con.print(plain(f"  {alt['method']:<9} ", "bold").append(plain(alt["why_not"])))

    sig = a.get("signals", {})
    if sig:
        con.print(Text("Goal", style="bold").append(plain(f"  knowledge score {sig['knowledge_score']:.2f} → "
                                                           f"{sig['leaning']}")))
        for s in sig.get("signals", []):
            con.print(plain(f"  [{s['points_to']}] {s['evidence']}", "dim" if s["points_to"] == "neutral" else ""))

    t = Table(title="Data health", show_lines=False, expand=False)
    t.add_column("file")
    t.add_column("format")
    t.add_column("examples", justify="right")
    t.add_column("invalid", justify="right")
    t.add_column("tokens (total)", justify="right")
    t.add_column("tokens/example p50 / max", justify="right")
    t.add_column("duplicates", justify="right")
    for role in ("train", "eval"):
        d = a["data"].get(role)
        if not d:
            continue
        tok = d.get("tokens", {})
        per = tok.get("per_example", {})
        total = tok.get("total")
        total_s = "-" if total is None else f"{total:,}" + (f" ±{tok['total_margin_95']:,}" if tok.get("total_margin_95") else "")
        dup = d["duplicates"]
        t.add_row(*map(plain, (role, d.get("format"), f"{d['examples']:,}", d["invalid"], total_s,
                               f"{_num(per.get('p50'), '{:,.0f}')} / {_num(per.get('max'), '{:,}')}",
                               f"{dup['exact'] + dup['normalised']} (+{dup['near']} near)")))
    con.print(t)
    leak = a["data"].get("leakage")
    if leak:
        con.print(plain(f"  leakage eval→train: {leak['eval_items_leaked']} items (exact {leak['exact']}, normalised "
                        f"{leak['normalised']}, {leak.get('ngram_size', 13)}-gram {leak['ngram']})"))
    tok = (a["data"]["train"] or {}).get("tokens", {})
    if tok.get("method"):
        con.print(plain(f"  tokens: {tok['method']}", "dim"))

    if a["findings"]:
        ft = Table(title="Findings", expand=False)
        ft.add_column("severity")
        ft.add_column("code")
        ft.add_column("count", justify="right")
        ft.add_column("first at")
        ft.add_column("what")
        for f in a["findings"][:20]:
            ex = f["examples"][0] if f["examples"] else None
            where = (Path(ex["file"]).name + (f":{ex['line']}" if ex["line"] else "")) if ex else ""
            ft.add_row(plain(f["severity"], SEVERITY_STYLE[f["severity"]]), plain(f["code"]), plain(f["count"]),
                       plain(where), plain(f["message"] + (f" ({ex['detail']})" if ex and ex["detail"] else "")))
        con.print(ft)

    est = a.get("estimate") or {}
    if est.get("methods"):
        print_cost_table(est, rec["method"], con)


def print_cost_table(est: dict, recommended: str, con: Console) -> None:
    """The cost table. On a machine without a GPU it shows the CPU time each training row would take
    here (what the reasons state), not hours of the reference GPU; the memory column names the
    micro-batch; a hosted price only where a provider fine-tunes this model."""
    hw = est.get("hardware") or {}
    on_cpu = hw.get("kind") == "cpu"
    rows = est["methods"]
    ct = Table(title="Cost estimate", expand=False)
    time_cols = ("CPU time (here)",) if on_cpu else ("GPU-hours", "wall time")
    mem_col = "memory" if on_cpu else "memory/GPU"
    for col in ("method", "train tokens", *time_cols, "cost", mem_col, "fits", "hosted"):
        ct.add_column(col, justify="left" if col in ("method", "fits") else "right")
    for e in rows:
        hosted = e.get("hosted")
        hosted_s = _money(hosted.get("cost_usd")) if isinstance(hosted, dict) else "-"
        fits = e.get("fits")
        trains = bool(e.get("train_tokens"))
        if on_cpu:
            times = (duration(e.get("cpu_hours")) if trains else "-",)
        else:
            times = (_num(e.get("gpu_hours"), "{:,.2f}") if trains else "-",
                     duration(e.get("wall_hours")) if trains else "-")
        mem = _num(e.get("memory_gb"), "{:,.1f} GB")
        if e.get("micro_batch") and e.get("memory_gb") is not None:
            mem += f" (batch {e['micro_batch']})"
        ct.add_row(*map(plain, (
            e["method"] + (" ←" if e["method"] == recommended else ""),
            _num(e.get("train_tokens"), "{:,.0f}"),
            *times,
            _money(e.get("cost_usd")),
            mem,
            "-" if fits is None else ("yes" if fits else "no") + (f" ({e['suggest']})" if e.get("suggest") else ""),
            hosted_s,
        )))
    con.print(ct)
    notes = []
    if on_cpu:
        rented = [e["method"] for e in rows if e.get("train_tokens") and e.get("cost_usd")]
        notes.append("no GPU: training times are CPU time on this machine"
                     + (f"; the cost of {', '.join(rented)} is what renting {hw.get('priced_on', 'a GPU')} "
                        "would cost, as it does not run here" if rented else ""))
    for e in rows:
        for n in e.get("notes") or []:
            if "micro-batch" in n and "memory" in n:
                notes.append(f"{e['method']}: {n}")
        h = e.get("hosted")
        if isinstance(h, dict) and h.get("cost_usd") is None and e.get("hosted_note"):
            notes.append(f"{e['method']} hosted: {e['hosted_note']}")
    m = est.get("model", {})
    notes.append(f"model: {m.get('id')}, {parameter_count(m.get('parameters'))} ({m.get('source')}); "
                 f"hardware: {hw.get('description', '-')}")
    for n in dict.fromkeys(notes):
        con.print(plain(f"  {n}", "dim"))


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def print_probe(p: dict, console: Console | None = None) -> None:
    """`advise probe`: the measured verdict first, then the arms, the curve and the limits. Data is
    printed as text (Text objects), never as markup."""
    console = console or Console()
    v = p.get("verdict") or {}
    metric = p.get("metric") or "score"
    head = Text()
    if v.get("method"):
        head.append(f"Measured verdict: {v['method']}", style="bold")
        head.append(f" ({v.get('evidence')}, {metric} {v['value']:.3f} {_ci(v.get('ci'))})")
        m = v.get("margin")
        if m and v.get("over"):
            head.append(f"\nover {v['over']} by {m['delta']:+.3f}" + (f" [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]"
                                                                      if m.get("ci") else ""))
        if v.get("status") == "inconclusive":
            head.append(f"\ninconclusive: {v.get('why', '')}", style="yellow")
    else:
        head.append(f"Measured verdict: inconclusive ({v.get('why', 'no arm scored')})", style="yellow")
    rule = p.get("rule_verdict") or {}
    head.append(f"\nRule-based verdict: {rule.get('method')} (confidence {rule.get('confidence')})")
    if v.get("disagreement"):
        head.append(f"\n{v['disagreement']}")
    console.print(Panel(head, title="advise probe", expand=False))
    dev = p.get("dev") or {}
    console.print(plain(f"dev split: {dev.get('dev_items')} items carved from train (seed {dev.get('seed')}"
                       + (f", grouped by {dev['grouped_by']}" if dev.get("grouped_by") else "") + ")"))
    t = Table(title=f"arms ({metric}, 95% CI)")
    for col in ("arm", "kind", "score", "95% CI", "trained on", "seconds", "cost $"):
        t.add_column(col, justify="right" if col not in ("arm", "kind") else "left")
    for a in p.get("arms") or []:
        t.add_row(plain(a["name"]), a["kind"], "-" if a.get("value") is None else f"{a['value']:.3f}",
                  _ci(a.get("ci")), f"{a['train_examples']:,}" if a.get("train_examples") else "",
                  f"{a['seconds']:,.1f}", f"{a.get('cost_usd') or 0:,.2f}")
    console.print(t)
    c = p.get("curve")
    if c:
        line = plain("learning curve: ")
        if c.get("status") == "fitted":
            for k, pr in c["predictions"].items():
                line.append(f"{k} ({pr['n']:,} examples) {pr['value']:.3f} {_ci(pr.get('ci'))}  ")
            line.append(f"\n{c.get('trend', '')}")
        else:
            line.append(f"inconclusive: {c.get('why')}", style="yellow")
        console.print(line)
    if p.get("knowledge"):
        console.print(plain(f"knowledge: {p['knowledge']['reading']}"))
    if p.get("rag"):
        console.print(plain(f"rag: {p['rag']['reading']}"))
    comp = p.get("compute") or {}
    if comp.get("share") is not None:
        console.print(plain(f"compute: {comp['probe_train_steps']:,} training steps, {comp['share']:.0%} of the "
                           f"full run's {comp['full_run_steps']:,}"))
    for lim in p.get("limits") or []:
        console.print(plain(f"limit: {lim}", style="dim"))


def print_gate_table(result: dict, suite: str, console=None) -> None:
    """`advise gate`: one row per gate, then the overall outcome; data printed as text."""
    con = console or Console()
    style = {"pass": "green", "fail": "bold red", "warn": "yellow"}
    t = Table(title=plain(f"advise gate: {suite} — {result['candidate']} ({result['items']} items)"))
    t.add_column("gate")
    t.add_column("status")
    t.add_column("observed", justify="right")
    t.add_column("detail")
    for r in result["gates"]:
        obs = r.get("observed")
        t.add_row(plain(r["gate"]), Text(r["status"].upper(), style=style[r["status"]]),
                  "" if obs is None else plain(obs), plain(r["message"]))
    con.print(t)
    mult = result.get("multiplicity") or {}
    if mult.get("tests"):
        con.print(plain(f"{mult['tests']} paired comparison(s) in these gates: {mult['tests'] - mult['family']} on the "
                        f"primary metric {mult.get('primary_metric')} (plain test), {mult['family']} Holm-adjusted"))
    con.print(Text(f"{result['status'].upper()}: {result['failed']} of {len(result['gates'])} gates failed",
                   style=style[result["status"]]))


def _p3(p) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def print_eval_stats(result: dict, console=None) -> None:
    """`advise eval`'s statistics beyond the main tables, briefly: how many comparisons were made and the
    adjusted p-values of the other metrics, cluster-robust intervals, and the worst slices."""
    con = console or Console()
    primary = result.get("primary_metric")
    mult = result.get("multiplicity") or {}
    if mult.get("tests"):
        how = "declared in eval.primary_metric" if mult.get("declared") else "the headline metric"
        con.print(plain(f"{mult['tests']} paired tests: {primary} ({how}) keeps its plain test in "
                        f"{mult['primary_tests']}; the other {mult['family']} are adjusted together "
                        "(Holm in gates, Benjamini-Hochberg here)"), highlight=False)
        t = Table(title="other metrics significant before adjustment (p < 0.05)")
        for col in ("a -> b", "metric", "delta", "p", "p BH", "p Holm"):
            t.add_column(col, justify="left" if col in ("a -> b", "metric") else "right")
        for comp in result.get("comparisons") or []:
            for m, md in (comp.get("metrics") or {}).items():
                if md.get("adjusted") and md.get("p_value") is not None and md["p_value"] < 0.05:
                    t.add_row(plain(f"{comp['a']} -> {comp['b']}"), plain(m),
                              "-" if md.get("delta") is None else f"{md['delta']:+.3f}", _p3(md["p_value"]),
                              _p3(md.get("p_bh")), _p3(md.get("p_holm")))
        if t.row_count:
            con.print(t)
    cl = result.get("clusters")
    if cl:
        con.print(plain(f"clustered by {cl['field']}, {cl['clusters']} clusters of {cl['items']} items: "
                        f"{primary} with cluster-robust 95% CIs (Miller 2024)"), highlight=False)
        for r in result.get("runs") or []:
            md = (r.get("metrics") or {}).get(primary) or {}
            c = md.get("clustered")
            if c and c.get("ci") and md.get("value") is not None:
                iid = md.get("ci")
                con.print(plain(f"  {r['candidate']}: {md['value']:.3f} {_ci(c['ci'])}"
                                + (f" (independent items: {_ci(iid)})" if iid else "")), highlight=False)
        for comp in result.get("comparisons") or []:
            md = (comp.get("metrics") or {}).get(primary) or {}
            c = md.get("clustered")
            if c and c.get("ci") and c.get("delta", md.get("delta")) is not None and md.get("delta") is not None:
                con.print(plain(f"  {comp['a']} -> {comp['b']}: {md['delta']:+.3f} [{c['ci'][0]:+.3f}, "
                                f"{c['ci'][1]:+.3f}], p {_p3(c.get('p_value'))}"), highlight=False)
    sl = result.get("slices")
    if sl:
        con.print(plain(f"slices ({sl['slices']} by {', '.join(sl['kinds'])}, {sl['metric']}, 95% CIs): worst with "
                        f"at least {sl['min_items']} items"), highlight=False)
        for name, worst in (sl.get("worst") or {}).items():
            if worst:
                con.print(plain(f"  {name}: " + "; ".join(
                    f"{w['kind']} {w['name']} {w['value']:.3f} {_ci(w['ci'])} n={w['n']}" for w in worst)),
                    highlight=False)
        family = sum(len(c["slices"]) for c in sl.get("comparisons") or [])
        for c in sl.get("comparisons") or []:
            hits = [r for r in c["slices"] if r.get("p_bh") is not None and r["p_bh"] < 0.05]
            if hits:
                con.print(plain(f"  {c['b']} vs {c['a']}, slices that differ after Benjamini-Hochberg over {family}: "
                                + "; ".join(f"{r['kind']} {r['name']} {r['delta']:+.3f} (p {_p3(r['p_value'])}, "
                                            f"BH {_p3(r['p_bh'])})" for r in hits[:5])), highlight=False)
    smp = result.get("samples")
    if smp:
        con.print(plain(f"{smp['k']} samples per item at temperature {smp['temperature']:g} ({smp['metric']}; "
                        "pass@k: at least one of k passes, pass^k: all k pass)"), highlight=False)
        for name, e in smp["candidates"].items():
            parts = [f"{lab} {e[key]['value']:.3f} {_ci(e[key]['ci'])}" for key, lab in
                     (("pass_at_1", "pass@1"), ("pass_at_k", f"pass@{smp['k']}"), ("pass_hat_k", f"pass^{smp['k']}"))
                     if e.get(key)]
            var = e.get("variance") or {}
            if var:
                parts.append(f"variance within items {var['within_item']:.4f}, between {var['between_item']:.4f}")
            parts.append(f"{e['flaky']} flaky item(s)" + (": " + ", ".join(
                str(f["id"]) if f.get("id") is not None else f"line {f['line']}" for f in e["flaky_items"][:5])
                if e["flaky"] else ""))
            con.print(plain(f"  {name}: " + "; ".join(parts)), highlight=False)
