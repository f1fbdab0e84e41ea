"""A batch file's lines as jobs: each line is one CLI command's options as JSON, checked as the server checks them.

`{"task": "texture", "mesh": "ball.obj", "prompt": "a red sphere", "steps": 20, "seed": 3}` is
`python -m engine texture --mesh ball.obj --prompt "a red sphere" --steps 20 --seed 3 --out DIR/<job id>`:
the keys are the command's option names (`texture_size` or `texture-size`), parsed by the command's own argparse
parser, then validated by the protocol's parameter checks and the server's (`engine.serve.admission.check_params`).
The job id is a hash of the resolved options and of the input files' bytes, so an unchanged job keeps its id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csd_blender.protocol.codec import unique_keys
from csd_blender.protocol.errors import ProtocolError

from ..commands import edit, generate, texture
from ..commands.common import JobCommand

# options a batch line may not set: the batch decides where results go, and workers draw no bars
BATCH_OWNED = ("out", "quiet", "help")
# options naming input files: their bytes are part of the job id
INPUT_FILES = ("mesh", "texture", "cameras", "mask")
ID_CHARS = 16
logger = logging.getLogger(__name__)


class BatchFileError(ValueError):
    """A line of the batch file cannot become a job (the message names the line)."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.detail = message


class _RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting (its subparsers inherit this)."""

    def error(self, message: str):
        raise ValueError(message)


def task_commands() -> dict[str, JobCommand]:
    """The job commands a batch line may name: texture, edit, generate."""
    return {command.name: command for command in (texture.COMMAND, edit.COMMAND, generate.COMMAND)}


def command_parser() -> argparse.ArgumentParser:
    """A parser with the texture, edit and generate subcommands exactly as `python -m engine` registers them."""
    parser = _RaisingParser(prog="python -m engine", add_help=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in task_commands().values():
        command.add_parser(sub)
    return parser


@dataclass
class BatchJob:
    """One job of a batch.

    Args:
        line: its line number in the batch file (1-based).
        task: "texture", "edit" or "generate".
        argv: the command line after `python -m engine` without `--out` (what the job runs).
        job_id: `<task>-<hash>` of the resolved options and the input files' bytes.
        options: the resolved options (JSON-able; every default filled in).
    """

    line: int
    task: str
    argv: list[str]
    job_id: str
    options: dict = field(default_factory=dict)

    def namespace(self, out: str | Path) -> argparse.Namespace:
        """The parsed command line of this job writing to `out` (quiet: no progress bar)."""
        return command_parser().parse_args([*self.argv, "--out", str(out), "--quiet"])


def _argv(line: int, task: str, subparser: argparse.ArgumentParser, fields: dict, base: Path) -> list[str]:
    """`fields` (option name -> JSON value) as the task's command line; unknown names and wrong kinds fail.

    Relative input file paths are taken relative to `base` (the batch file's folder) and made absolute, so a
    worker with another working directory reads the same files.
    """
    actions = {a.dest: a for a in subparser._actions if a.dest not in BATCH_OWNED}
    argv = [task]
    for key, value in fields.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None:
            raise BatchFileError(line, f"{key}: unknown option of `{task}` (known: {', '.join(sorted(actions))})")
        flag = action.option_strings[-1] if action.option_strings else None
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise BatchFileError(line, f"{key}: must be true or false, got {value!r}")
            argv += [flag] if value else []
        elif isinstance(action, argparse._AppendAction):
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, str):
                    raise BatchFileError(line, f"{key}: must be a string or a list of strings, got {item!r}")
                argv += [flag, item]
        elif value is None:
            continue  # the command's default
        elif isinstance(value, (dict, list, bool)):
            raise BatchFileError(line, f"{key}: must be a single value, got {value!r}")
        elif dest in INPUT_FILES:
            argv += [flag, str((base / str(value)).resolve())]
        else:
            argv += [flag, str(value)]
    return argv


def _file_digest(path: Any) -> str:
    """SHA-256 of a file's bytes, or "unreadable" (the job then fails at run time with the loader's error)."""
    try:
        return hashlib.sha256(Path(str(path)).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def parse_line(line_no: int, text: str, parser: argparse.ArgumentParser | None = None,
               base: str | Path = ".") -> BatchJob:
    """One batch line as a validated BatchJob.

    Args:
        line_no: the line's number (1-based), named in every error.
        text: the JSON object of the line.
        parser: `command_parser()` (passed in to build it once per batch).
        base: folder that relative input paths start from (the batch file's).

    Raises:
        BatchFileError: bad JSON, no or an unknown task, an unknown option, a value the command or the
            server's parameter checks refuse (the protocol's code and field in the message).
    """
    from ..registry import TASKS
    from ..serve.admission import check_params
    from ..tasks import load_registries

    parser = parser or command_parser()
    try:
        fields = json.loads(text, object_pairs_hook=unique_keys)  # a key given twice: refused, as on the wire
    except ValueError as exc:
        raise BatchFileError(line_no, f"not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise BatchFileError(line_no, f"must be a JSON object, got {type(fields).__name__}")
    fields = dict(fields)
    task = fields.pop("task", None)
    commands = task_commands()
    if not isinstance(task, str) or task not in commands:
        raise BatchFileError(line_no, f"task: must be one of {', '.join(commands)}, got {task!r:.80}")
    owned = sorted(set(fields) & set(BATCH_OWNED))
    if owned:
        raise BatchFileError(line_no, f"{owned[0]}: set by the batch (results go to --out DIR/<job id>)")
    subparser = parser._subparsers._group_actions[0].choices[task]
    argv = _argv(line_no, task, subparser, fields, Path(base))
    try:
        args = parser.parse_args([*argv, "--out", "-", "--quiet"])
    except ValueError as exc:
        raise BatchFileError(line_no, str(exc)) from None
    load_registries()
    try:
        params = commands[task].params(args).validate()
        check_params(TASKS.get(task), params.to_dict())  # the server's checks: text, guidance overrides
    except ProtocolError as exc:
        raise BatchFileError(line_no, str(exc)) from None
    options = {k: v for k, v in sorted(vars(args).items()) if k not in BATCH_OWNED and k not in ("func", "command")}
    digests = {k: _file_digest(options[k]) for k in INPUT_FILES if options.get(k)}
    content = json.dumps({"task": task, "options": options, "files": digests}, sort_keys=True, default=str)
    job_id = f"{task}-{hashlib.sha256(content.encode('utf-8')).hexdigest()[:ID_CHARS]}"
    return BatchJob(line_no, task, argv, job_id, options)


def read_jobs(path: str | Path, skip_invalid: bool = False) -> tuple[list[BatchJob], list[BatchFileError]]:
    """Every job of a JSONL batch file, checked before any runs; blank lines and `#` comments are skipped.

    A line repeating an earlier job (same id) runs once: it would write the same folder; it is logged and returned
    among the errors (the CLI prints it, the summary records it). Relative input paths are relative to the batch
    file's folder.

    Args:
        path: the batch file.
        skip_invalid: collect bad lines instead of raising at the first.

    Returns:
        (jobs in file order, the bad lines' errors (only with `skip_invalid`) and the repeated lines).

    Raises:
        BatchFileError: the first bad line (unless `skip_invalid`).
        OSError: the file cannot be read.
    """
    parser = command_parser()
    jobs: list[BatchJob] = []
    errors: list[BatchFileError] = []
    seen: dict[str, int] = {}  # job id -> the line that first gave it
    duplicates: list[BatchFileError] = []
    for line_no, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            job = parse_line(line_no, text, parser, Path(path).resolve().parent)
        except BatchFileError as exc:
            if not skip_invalid:
                raise
            errors.append(exc)
            continue
        if job.job_id in seen:  # it would write the same folder: run once, and say so
            logger.warning("%s: line %d is the same job as line %d (%s); it runs once", path, line_no,
                           seen[job.job_id], job.job_id)
            duplicates.append(BatchFileError(line_no, f"the same job as line {seen[job.job_id]} ({job.job_id}); "
                                                      "it runs once"))
            continue
        seen[job.job_id] = line_no
        jobs.append(job)
    errors.extend(duplicates)
    return jobs, errors
