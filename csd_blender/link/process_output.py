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


_NETWORK = re.compile(r"Temporary failure in name resolution|Name or service not known|nodename nor servname|"
                      r"getaddrinfo failed|Failed to resolve|Could not resolve host|Failed to establish a new "
                      r"connection|Network is unreachable|Connection refused|ConnectTimeoutError|timed out",
                      re.IGNORECASE)
_HOST = re.compile(r"(?:resolve '|host='|Could not resolve host: )([A-Za-z0-9.-]+)")


def network_cause(output: str) -> str:
    """One line naming a network failure behind a pip error ("" when there is none): pip reports "No matching
    distribution found" when it could not reach the index at all, which hides the cause in its retry warnings."""
    lines = [line for line in output.splitlines() if _NETWORK.search(line)]
    if not lines:
        return ""
    hosts = [m.group(1) for line in lines for m in _HOST.finditer(line)]
    where = hosts[-1] if hosts else "the package index"
    if re.search(r"name resolution|not known|nodename|getaddrinfo|resolve", "\n".join(lines), re.IGNORECASE):
        return f"Cannot reach {where}: its host name could not be resolved (no network, or a proxy/firewall)"
    return f"Cannot reach {where}: the connection failed (no network, or a proxy/firewall)"
