"""Gate results in the forms CI systems read: JUnit XML, Markdown (GitHub step summary), a terminal table."""

from __future__ import annotations

import time
from xml.etree import ElementTree as ET


def junit_xml(result: dict, suite: str) -> str:
    """One <testcase> per gate; failures carry the numbers; warnings go to <system-out>."""
    cases = result["gates"]
    failures = sum(1 for r in cases if r["status"] == "fail")
    root = ET.Element("testsuites", name="advise gate", tests=str(len(cases)), failures=str(failures),
                      errors="0", time="0")
    ts = ET.SubElement(root, "testsuite", name=f"advise gate: {suite}", tests=str(len(cases)),
                       failures=str(failures), errors="0", skipped="0", time="0",
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), hostname="localhost")
    props = ET.SubElement(ts, "properties")
    for k in ("candidate", "candidate_run", "baseline", "items"):
        ET.SubElement(props, "property", name=k, value=str(result.get(k)))
    if (result.get("multiplicity") or {}).get("tests"):
        ET.SubElement(props, "property", name="paired_tests", value=str(result["multiplicity"]["tests"]))
    for r in cases:
        tc = ET.SubElement(ts, "testcase", classname=f"advise.gate.{suite}", name=r["gate"], time="0")
        if r["status"] == "fail":
            f = ET.SubElement(tc, "failure", message=r["message"], type=f"gate.{r['kind']}")
            f.text = _details(r)
        out = r["message"] + ("\n" + r["warning"] if r.get("warning") else "")
        ET.SubElement(tc, "system-out").text = out
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def junit_error(message: str, suite: str) -> str:
    """The JUnit XML of gates that could not be checked (exit 2): one errored test case saying why,
    so that CI never shows a blank."""
    root = ET.Element("testsuites", name="advise gate", tests="1", failures="0", errors="1", time="0")
    ts = ET.SubElement(root, "testsuite", name=f"advise gate: {suite}", tests="1", failures="0", errors="1",
                       skipped="0", time="0", timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), hostname="localhost")
    tc = ET.SubElement(ts, "testcase", classname=f"advise.gate.{suite}", name="gates could not be checked", time="0")
    ET.SubElement(tc, "error", message=message, type="gate.error").text = message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def markdown_error(message: str, suite: str) -> str:
    """The Markdown summary of gates that could not be checked (exit 2)."""
    return (f"### advise gate: {_md_escape(suite)} — 🛑 ERROR\n\nThe gates could not be checked:\n\n"
            f"> {_md_escape(message)}\n")


def _details(r: dict) -> str:
    keys = ("observed", "threshold", "op", "on", "ci", "p_value", "p_holm", "test", "n", "wins", "losses", "ties",
            "baseline", "margin", "min_detectable_effect", "baselines", "worse_items")
    return "\n".join(f"{k}: {r[k]}" for k in keys if r.get(k) is not None)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def markdown(result: dict, suite: str) -> str:
    icon = {"pass": "✅", "fail": "❌", "warn": "⚠️"}
    lines = [f"### advise gate: {_md_escape(suite)} — {icon[result['status']]} {result['status'].upper()}", "",
             f"Candidate `{result['candidate']}` on {result['items']} items; baseline `{result['baseline']}`.", "",
             "| gate | status | observed | detail |", "|---|---|---|---|"]
    for r in result["gates"]:
        obs = r.get("observed")
        lines.append(f"| {_md_escape(r['gate'])} | {icon[r['status']]} {r['status']} | "
                     f"{'' if obs is None else obs} | {_md_escape(r['message'])} |")
    mult = result.get("multiplicity") or {}
    if mult.get("tests"):
        lines.append(f"\n{mult['tests']} paired comparison(s): {mult['tests'] - mult['family']} on the primary metric "
                     f"`{mult.get('primary_metric')}` (plain test), {mult['family']} Holm-adjusted.")
    for w in result.get("warnings", []):
        lines.append(f"\n> ⚠️ {_md_escape(w)}")
    return "\n".join(lines) + "\n"
