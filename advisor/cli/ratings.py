"""``advise eval --export-ratings FILE`` and ``--import-ratings FILE``: blinded human rating sheets of the
stored eval answers, and the filled sheets read back (evaluators.ratings). Neither runs a model.

:func:`ratings_options` adds the options to ``advise eval`` and runs them instead of the eval when given.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from advisor.cli.views import plain
from advisor.errors import AdviseError
from advisor.lock import writing
from advisor.project import load_project
from advisor.store import Store
from evaluators import ratings as human


def _fmt(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _signed(v) -> str:
    return "-" if v is None else f"{v:+.2f}"


def _ci(ci, signed: bool = False) -> str:
    if not ci:
        return ""
    f = (lambda x: f"{x:+.2f}") if signed else (lambda x: f"{x:.2f}")
    return f"[{f(ci[0])}, {f(ci[1])}]"


def _p(p) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def print_ratings(res: dict, console=None) -> None:
    """The imported ratings as terminal tables: mean [95% CI] per criterion and candidate, paired
    differences, inter-rater agreement and judge-human agreement."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    crits = list(res["criteria"])
    t = Table(title=plain(f"human ratings, sheet {res['sheet']}: {res['items']} items, {len(res['raters'])} "
                          f"rater(s), {res['ratings']} rated rows, scale {res['scale']}"))
    t.add_column("candidate", no_wrap=True)
    for c in crits:
        t.add_column(f"{c} [95% CI]", justify="right", no_wrap=True)
    for cand in res["candidates"]:
        cells = []
        for c in crits:
            m = res["by_criterion"][c]["candidates"][cand]
            cells.append(f"{_fmt(m['value'])} {_ci(m['ci'])}".strip())
        t.add_row(plain(cand), *cells)
    console.print(t)
    d = Table(title="paired differences on the items both were rated on (b - a)")
    for col in ("criterion", "a -> b", "delta [95% CI]", "p", "W/L/T"):
        d.add_column(col, justify="left" if col in ("criterion", "a -> b") else "right")
    for c in crits:
        for comp in res["by_criterion"][c]["comparisons"]:
            d.add_row(c, plain(f"{comp['a']} -> {comp['b']}"),
                      f"{_signed(comp['delta'])} {_ci(comp['ci'], True)}".strip(), _p(comp["p_value"]),
                      f"{comp['wins']}/{comp['losses']}/{comp['ties']}")
    if d.row_count:
        console.print(d)
    for c in crits:
        b = res["by_criterion"][c]
        ag = b["agreement"]
        line = (f"{c}: Krippendorff's alpha ({ag['level']}) "
                + (f"{ag['alpha']:.3f}" if ag["alpha"] is not None else "undefined")
                + (f" ({ag['reading']})" if ag.get("reading") else "")
                + f" over {ag['units']} rows rated by two or more of {ag['raters']} raters")
        j = b.get("judge")
        if j and j.get("rho") is not None:
            line += (f"; judge vs mean rating: Spearman {_fmt(j['rho'], 3)} {_ci(j['ci'])}, p {_p(j['p_value'])}, "
                     f"n {j['n']}")
        elif j:
            line += f"; judge vs mean rating: undefined (no variation in one of them over {j['n']} rows)"
        console.print(plain(line))
    for w in res.get("warnings", []):
        console.print(plain(f"[warning] {w}"), style="yellow")


def ratings_options(fn):
    """Add ``--export-ratings``, ``--import-ratings``, ``--rating-items`` and ``--rating-seed`` to a command
    taking ``project_dir``; when one of the first two is given it runs instead of the command."""

    @functools.wraps(fn)
    def wrapper(*args, export_ratings, import_ratings, rating_items, rating_seed, **kw):
        if not (export_ratings or import_ratings):
            if rating_items is not None or rating_seed is not None:
                raise AdviseError("--rating-items and --rating-seed go with --export-ratings FILE")
            return fn(*args, **kw)
        if export_ratings and import_ratings:
            raise AdviseError("--export-ratings and --import-ratings are two steps: give one of them")
        run_ratings(kw["project_dir"], export=export_ratings, imports=import_ratings, n_items=rating_items,
                    seed=rating_seed, candidates=kw.get("candidates"), as_json=kw.get("as_json", False),
                    max_items=kw.get("max_items"))
        return None

    opts = [
        click.option("--export-ratings", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     metavar="FILE", help="Write a blinded human rating sheet (.csv or .jsonl) of the stored eval "
                     "answers instead of evaluating (--candidate narrows the candidates, --max-items names the "
                     "eval; docs/human-ratings.md)."),
        click.option("--import-ratings", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
                     metavar="FILE", help="Read filled rating sheets (repeat for several raters' files), store the "
                     "ratings and report means, differences and agreement."),
        click.option("--rating-items", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Eval items on the rating sheet (default: ratings.items of project.yaml, else 20)."),
        click.option("--rating-seed", type=int, default=None, metavar="SEED",
                     help="Seed of the items sampled onto the sheet (default: ratings.seed, else 0)."),
    ]
    for o in reversed(opts):
        wrapper = o(wrapper)
    return wrapper


def run_ratings(project_dir: Path, *, export: Path | None, imports, n_items: int | None, seed: int | None,
                candidates=None, as_json: bool = False, max_items: int | None = None) -> None:
    project = load_project(project_dir)
    if export is not None:
        cmd = f"advise eval --export-ratings {export}"
        with writing(project, "advise eval --export-ratings"), Store.for_project(project) as store:
            doc = human.export_sheet(project, store, export, n_items=n_items, seed=seed,
                                     candidates=list(candidates or []) or None, max_items=max_items, command=cmd)
        if as_json:
            click.echo(json.dumps(doc, indent=2, default=str))
            return
        click.echo(plain(f"wrote {doc['rows']} rows ({doc['items']} items x {len(doc['candidates'])} candidates, "
                         f"in an order drawn per item) to {export}; sheet {doc['sheet']}, its key is in the run store"))
        click.echo(plain(f"each rater fills a copy: their name in 'rater' and, on the {doc['scale']} scale,"))
        for k, v in doc["criteria"].items():
            click.echo(plain(f"  {k}" + (f": {v}" if v else "")))
        click.echo(plain(f"then: advise eval {project_dir} --import-ratings FILE --import-ratings FILE2 ..."))
        return
    with writing(project, "advise eval --import-ratings"), Store.for_project(project) as store:
        res = human.import_sheets(project, store, list(imports),
                                  command="advise eval --import-ratings " + " ".join(str(p) for p in imports))
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
    else:
        print_ratings(res)
