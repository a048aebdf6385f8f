"""`advise probe`: measure the choice on the team's own data before the full spend (see runner.py)."""

from advisor.probe.options import ProbeOptions
from advisor.probe.runner import run_probe

__all__ = ["ProbeOptions", "run_probe"]
