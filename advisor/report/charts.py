"""Charts for the report, drawn with matplotlib and inlined as SVG (no image files, no network).

matplotlib is imported only here, and only when a report is rendered. Every text of a chart is data
(labels, candidate and metric names) and is drawn as text: mathtext (``$...$``) and TeX are off, so a
label such as ``$\\foo$`` is shown as it is instead of failing the report.
"""

from __future__ import annotations

import io
import re

_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"text.parse_math": False, "text.usetex": False,  # data is text, never math
                         "svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "advise"})
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    _plt().close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: it is inlined in HTML
    svg = re.sub(r'\swidth="[\d.]+pt"\s+height="[\d.]+pt"', ' class="chart"', svg, count=1)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)  # RDF boilerplate with namespace URLs
    svg = re.sub(r'\sxmlns:(dc|cc|rdf)="[^"]*"', "", svg)
    return svg


def bar_with_ci(title: str, labels: list[str], values: list[float], cis: list[list[float] | None],
                ylabel: str = "") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(labels) + 1.5), 2.8))
    lo = [v - (c[0] if c else v) for v, c in zip(values, cis, strict=True)]
    hi = [(c[1] if c else v) - v for v, c in zip(values, cis, strict=True)]
    ax.bar(range(len(labels)), values, yerr=[lo, hi], capsize=4,
           color=[_COLORS[i % len(_COLORS)] for i in range(len(labels))])
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return _svg(fig)


def line(title: str, xs: list[float], ys: list[float], xlabel: str, ylabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.plot(xs, ys, color=_COLORS[0], linewidth=1.5)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _svg(fig)


def histogram(title: str, counts: list[int], edges: list[float], xlabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 2.4))
    widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=_COLORS[0], edgecolor="white")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    return _svg(fig)


def horizontal_counts(title: str, counts: dict[str, int], limit: int = 30) -> str:
    plt = _plt()
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    fig, ax = plt.subplots(figsize=(5, 0.18 * len(items) + 0.8))
    ax.barh(range(len(items)), [c for _, c in items], color=_COLORS[0])
    ax.set_yticks(range(len(items)), [k[:40] for k, _ in items], fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title + (f" (top {limit} of {len(counts)})" if len(counts) > limit else ""))
    return _svg(fig)
