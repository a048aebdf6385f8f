"""No library noise on stderr: the commands run as a user runs them (a subprocess, stderr not a terminal,
so nothing is hidden by a tty check) and their stderr holds advise's own lines only: no progress bars
of transformers, datasets or huggingface_hub ("Writing model shards", "Loading weights"), no kernel or
backend notices, no Python warnings. The libraries' boilerplate model cards ("fine-tuned version of
[None]") are not left in the run directory."""

from __future__ import annotations

import re

import train_fixtures as fx
import yaml

train_tiny_model = fx.train_tiny_model
NOISE = [
    re.compile(r"\d+%\|"),                       # a tqdm bar:  45%|████▌     | 9/20
    re.compile(r"\[\d\d:\d\d<"),                 # tqdm's [00:01<00:02, ...]
    re.compile(r"\d+(\.\d+)?(it|s)/(s|it)\]"),
    re.compile(r"Writing model shards|Loading weights|Loading checkpoint shards|Generating \w+ split|Map( \(num_proc=\d+\))?:"),
    re.compile(r"kernel|bitsandbytes|triton|cuda", re.I),
    re.compile(r"\b\w*(Warning|Deprecat\w*):"),  # FutureWarning:, UserWarning:, ...
    re.compile(r"warnings\.warn|Some weights of|You should probably TRAIN|fine-tuned version of"),
    re.compile(r"Traceback"),
]


def noise(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if any(p.search(line) for p in NOISE)]


def run(*args, codes=(0,)):
    res = fx.advise_subprocess(*args, timeout=600)
    assert res.returncode in codes, res.stdout[-2000:] + res.stderr[-2000:]
    assert noise(res.stderr) == [], f"advise {' '.join(map(str, args[:2]))}: library noise on stderr:\n" + "\n".join(
        noise(res.stderr)[:10])
    return res


def test_the_noise_patterns_catch_what_the_libraries_print():
    assert noise("Writing model shards: 100%|██████████| 1/1 [00:00<00:00, 12.3it/s]")
    assert noise("Loading weights:  45%|████▌     | 9/20")
    assert noise("/x/peft/tuners.py:12: UserWarning: something")
    assert noise("The installed version of bitsandbytes was compiled without GPU support.")
    assert not noise("step 3/3  loss 6.5854  39 tok/s  ETA 0m00s")
    assert not noise("advise: training lora (--method) on 396 training examples")


def test_every_command_keeps_stderr_to_its_own_lines(tmp_path, train_tiny_model):
    ticket = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model,
                             {"max_steps": 3, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64})
    cfg = yaml.safe_load((ticket / "project.yaml").read_text())
    cfg["eval"] = {"gates": {"accuracy": ">= 0.0"}, "max_items": 8, "max_new_tokens": 4, "few_shot_k": 0}
    (ticket / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # assess, baseline eval, train (LoRA), tuned eval, report in one process
    out = run("run", ticket, "--method", "lora", "--ignore-blockers")
    assert "report" in out.stdout
    # the 3-step model of a random base answers one string to everything, so its gate fails (constant
    # output): either way the gate's stderr must be its own
    run("gate", ticket, codes=(0, 1))
    runs = sorted((ticket / ".advise" / "runs").iterdir())
    assert runs
    for readme in (ticket / ".advise" / "runs").rglob("README.md"):
        text = readme.read_text()
        assert "fine-tuned version of [None]" not in text and "[More Information Needed]" not in text, readme
    run("export", runs[-1].name, tmp_path / "exported", "--project", ticket)
    card = (tmp_path / "exported" / "README.md").read_text()
    assert "[More Information Needed]" not in card and "advise" in card  # advise's own card, not a template
    # the exported (merged) model evaluated by name and gated: a full model load, no weight-loading bar
    cfg["eval"]["candidates"] = {"exported": str(tmp_path / "exported")}
    (ticket / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run("eval", ticket, "--candidate", "tuned:exported")
    run("gate", ticket, "--candidate", "tuned:exported", codes=(0, 1))
    # the tiny model's build: its pretraining lines and nothing else (no "Writing model shards" bar)
    res = run("models", "tiny", tmp_path / "tiny", "--steps", "2")
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"pretraining step [12]/2  loss \d+\.\d{3}", x) for x in lines), lines
