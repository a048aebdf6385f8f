"""``advise init``: a commented project skeleton. Existing files are never overwritten."""

from __future__ import annotations

import json
import re
from pathlib import Path

from advisor.errors import AdviseError
from advisor.files import check_output_dir, os_cause

PROJECT_YAML = """\
# advise project: see `advise schema` for every key.
name: {name}                      # letters, digits, '-', '_'
task: >                           # what the model must do, in plain words
  Route each customer message to one of our support queues.
  Answer with the queue name only.
base_model: Qwen/Qwen2.5-0.5B-Instruct   # hub id or local model directory (needed by eval/train)
data:
  train: data/train.jsonl         # JSON Lines: chat, alpaca, prompt_completion or preference records
  # eval: data/eval.jsonl         # held-out examples; without it a seeded split is held out
  # docs: docs/                   # reference documents (.md, .txt, .html) the task may need
  format: auto                    # auto | chat | alpaca | prompt_completion | preference
constraints:
  budget_usd: 500                 # what may be spent on training compute
  hardware: 1x A100-80GB          # "<count>x <gpu>", or "none"
  data_must_stay_on_prem: false   # true: no hosted (third-party) training or inference
  facts_change: rarely            # never | rarely | monthly | weekly | daily
  needs_citations: false          # answers must point at their sources
  requirements_change: rarely     # rarely | often
method: auto                      # auto | prompting | rag | lora | full | rlhf
# eval:
#   gates:
#     accuracy: ">= 0.85"
# train:
#   max_steps: 200
#   learning_rate: 2.0e-4
#   batch_size: 16
#   max_length: 512
#   lora_r: 16
#   seed: 42
"""

EXAMPLES = [
    {"messages": [{"role": "system", "content": "Answer with the queue name only."},
                  {"role": "user", "content": "My card still hasn't arrived after two weeks."},
                  {"role": "assistant", "content": "card_arrival"}]},
    {"messages": [{"role": "system", "content": "Answer with the queue name only."},
                  {"role": "user", "content": "I think someone stole my card, please block it."},
                  {"role": "assistant", "content": "lost_or_stolen_card"}]},
]


def scaffold(directory: Path, name: str | None = None) -> list[Path]:
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", directory.resolve().name).strip("-") or "my-project"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise AdviseError(f"--name {name!r}: use letters, digits, '-' and '_' only")
    pfile = directory / "project.yaml"
    check_output_dir(directory, "the project directory")  # a file in the way, a name too long, no permission
    if pfile.exists():
        raise AdviseError("already exists; advise init never overwrites a project", file=pfile)
    try:
        return _write(directory, pfile, name)
    except OSError as e:
        raise AdviseError(f"cannot write the project: {os_cause(e)}", file=getattr(e, "filename", None) or directory) \
            from None


def _write(directory: Path, pfile: Path, name: str) -> list[Path]:
    written = []
    (directory / "data").mkdir(parents=True, exist_ok=True)
    pfile.write_text(PROJECT_YAML.format(name=name), encoding="utf-8")
    written.append(pfile)
    train = directory / "data" / "train.jsonl"
    if not train.exists():
        train.write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES), encoding="utf-8")
        written.append(train)
    gi = directory / ".gitignore"
    if not gi.exists():
        gi.write_text(".advise/\n", encoding="utf-8")
        written.append(gi)
    return written
