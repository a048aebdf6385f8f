"""The checks of project.yaml that need the installed plugins and the metric registry: keys under
``train:`` that no training plugin takes, and gates that ``advise gate`` cannot read. ``advise assess``
adds them to the assessment's findings and ``advise run --dry-run`` prints them, so a typo
(``learnin_rate``, ``"=> 0.55"``, ``acuracy``) shows before a training run or a gate refuses it.

They live with the commands because the assessment builds on the core only (tests/test_layers.py),
and the vocabularies they check against belong to ``trainers`` and ``evaluators``.
"""

from __future__ import annotations

from advisor.data.findings import SEVERITY_ORDER, Findings
from advisor.project import Project
from evaluators.gates import gate_problems
from trainers.config import unknown_train_keys


def config_findings(project: Project) -> list[dict]:
    """Findings (the assessment's shape) about project.yaml's ``train:`` keys and ``eval.gates``."""
    found = Findings()
    pfile = str(project.project_file)
    for key, close in unknown_train_keys(project):
        found.add("unknown_train_key", pfile, project.key_line("train", key),
                  f"train.{key}: " + (f"did you mean {close}?" if close else
                                      "no installed plugin takes it (`advise plugins` lists their keys)"))
    for key, message in gate_problems(project.eval.gates):
        found.add("gate_unreadable", pfile, project.key_line("eval", "gates", key), message)
    return found.to_list()


def with_config_findings(assessment: dict, project: Project) -> dict:
    """The assessment with :func:`config_findings` among its findings (severity order kept)."""
    extra = config_findings(project)
    if not extra:
        return assessment
    rows = sorted([*extra, *assessment.get("findings", [])],
                  key=lambda f: (SEVERITY_ORDER.get(f["severity"], 9), -f["count"], f["code"]))
    return {**assessment, "findings": rows}


def config_warnings(project: Project) -> list[str]:
    """One line per config finding, ``FILE:LINE: what``, for a terminal."""
    return [f"{ex['file']}{':' + str(ex['line']) if ex['line'] else ''}: {ex['detail']}"
            for f in config_findings(project) for ex in f["examples"]]
