"""User-facing errors: one line, naming the file (and line), exit status 2.

Anything the user can get wrong (a missing project.yaml, a YAML syntax error, a key of the wrong
type, a path outside the project) raises :class:`AdviseError`. The CLI turns it into a single line on
stderr and exit status 2; it never shows a traceback for bad input.
"""

from __future__ import annotations

from pathlib import Path


class AdviseError(Exception):
    """An error the user can fix. ``str()`` is the one-line message shown by the CLI."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None):
        self.message = " ".join(str(message).split())  # always one line
        self.file = str(file) if file is not None else None
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        return f"{where}{self.message}"


class BlockedError(AdviseError):
    """The assessment found blockers and the command would spend compute on them: exit 1."""

    exit_code = 1
