"""The terminal summary of an assessment (rich): verdict first, then reasons, blockers, data
health and the cost table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


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
    con.print(Panel(head, title=f"advise assess: {a['project']['name']}", subtitle=a["project"].get("base_model") or ""))

    con.print("[bold]Why[/]")
    for r in rec["reasons"]:
        con.print(f"  • {r}", highlight=False, markup=False)
    if rec["blockers"]:
        con.print("[bold red]Blockers: fix before spending money[/]")
        for b in rec["blockers"]:
            con.print(Text(f"  ✗ {b}", style="red"))
    if rec["alternatives"]:
        con.print("[bold]Alternatives[/]")
        for alt in rec["alternatives"]:
            con.print(Text(f"  {alt['method']:<9} ", style="bold").append(Text(alt["why_not"], style="")))

    sig = a.get("signals", {})
    if sig:
        con.print(f"[bold]Goal[/]  knowledge score {sig['knowledge_score']:.2f} → {sig['leaning']}")
        for s in sig.get("signals", []):
            con.print(Text(f"  [{s['points_to']}] {s['evidence']}", style="dim" if s["points_to"] == "neutral" else ""))

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
        t.add_row(role, str(d.get("format")), f"{d['examples']:,}", str(d["invalid"]), total_s,
                  f"{_num(per.get('p50'), '{:,.0f}')} / {_num(per.get('max'), '{:,}')}",
                  f"{dup['exact'] + dup['normalised']} (+{dup['near']} near)")
    con.print(t)
    leak = a["data"].get("leakage")
    if leak:
        con.print(f"  leakage eval→train: {leak['eval_items_leaked']} items "
                  f"(exact {leak['exact']}, normalised {leak['normalised']}, {leak.get('ngram_size', 13)}-gram {leak['ngram']})")
    tok = (a["data"]["train"] or {}).get("tokens", {})
    if tok.get("method"):
        con.print(Text(f"  tokens: {tok['method']}", style="dim"))

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
            ft.add_row(Text(f["severity"], style=SEVERITY_STYLE[f["severity"]]), f["code"], str(f["count"]), where,
                       f["message"] + (f" ({ex['detail']})" if ex and ex["detail"] else ""))
        con.print(ft)

    est = a.get("estimate") or {}
    if est.get("methods"):
        ct = Table(title="Cost estimate", expand=False)
        for col in ("method", "train tokens", "GPU-hours", "wall hours", "cost", "memory/GPU", "fits", "hosted"):
            ct.add_column(col, justify="left" if col in ("method", "fits") else "right")
        for e in est["methods"]:
            hosted = e.get("hosted")
            hosted_s = _money(hosted.get("cost_usd")) if isinstance(hosted, dict) else "-"
            fits = e.get("fits")
            ct.add_row(
                e["method"] + (" ←" if e["method"] == rec["method"] else ""),
                _num(e.get("train_tokens"), "{:,.0f}"),
                _num(e.get("gpu_hours"), "{:,.2f}"),
                _num(e.get("wall_hours"), "{:,.2f}"),
                _money(e.get("cost_usd")),
                _num(e.get("memory_gb"), "{:,.1f} GB"),
                "-" if fits is None else ("yes" if fits else "no") + (f" ({e['suggest']})" if e.get("suggest") else ""),
                hosted_s,
            )
        con.print(ct)
        m = est.get("model", {})
        con.print(Text(f"  model: {m.get('id')} ~{_num((m.get('parameters') or 0) / 1e9, '{:.2f}')}B parameters "
                       f"({m.get('source')}); hardware: {(est.get('hardware') or {}).get('description', '-')}",
                       style="dim"))
