"""The few lines of a subprocess's output that say what went wrong (pip's ERROR lines, an exception line), no bpy.

A UI label fits one short line; a failed pip run or a Python traceback prints dozens. `error_lines` picks what a
user needs: pip's `ERROR:` lines, else the exception line of the last traceback (never "Traceback (most recent
call last):"), else the last lines that are not hints, notices or progress.
"""
from __future__ import annotations

import re

# "ValueError: x", "torch.OutOfMemoryError: y", "KeyboardInterrupt", "ModuleNotFoundError: No module named 'a'"
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b(:.*)?$")
_NOISE = re.compile(r"^(\[notice\]|notice:|hint:|note:|Progress \d+ of \d+|WARNING: Retrying|\s*[│╰╭─]+)",
                    re.IGNORECASE)
MAX_CHARS = 300


def _short(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_CHARS else line[:MAX_CHARS - 1] + "…"


def error_lines(output: str, limit: int = 3) -> list[str]:
    """The lines of `output` that name the error, oldest first, at most `limit` (empty only for empty output).

    Args:
        output: a process's stdout and/or stderr.
        limit: most lines to return.
    """
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    if not lines:
        return []
    pip_errors = [line for line in lines if line.startswith("ERROR:")]
    if pip_errors:
        return [_short(line) for line in pip_errors[-limit:]]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        start = max(i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)"))
        exceptions = [line for line in lines[start + 1:] if _EXCEPTION_LINE.match(line.strip())]
        if exceptions:
            return [_short(exceptions[-1])]
    tool_errors = [line for line in lines if line.lstrip().lower().startswith("error:")]
    if tool_errors:
        return [_short(line) for line in tool_errors[-limit:]]
    meaningful = [line for line in lines if not _NOISE.match(line)
                  and not line.startswith(("Traceback (most recent call last)", "  File "))]
    return [_short(line) for line in (meaningful or lines)[-limit:]]
