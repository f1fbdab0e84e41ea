"""The GPU check's report: rows, scaling rows, the CUDA tests' summary and what was skipped or failed, written as
gpu_check.json and a markdown table (gpu_check.md) after every row; and the run's environment."""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from gpu_check_plan import CheckPlan


@dataclass
class Report:
    """Everything the check found; written out again after every row so a killed run still leaves a table.

    Attributes:
        out: output folder.
        env: device, versions and settings.
        rows: one dict per timed case (see `ROW_COLUMNS`).
        scaling: bench/texture.py `scaling_rows` output.
        tests: the CUDA tests' command, return code and summary line.
        skipped: sections or rows the budget did not hold, with the reason.
        section_s: wall seconds per section.
        errors: section → traceback tail of a section that raised.
    """

    out: Path
    env: dict
    rows: list[dict] = field(default_factory=list)
    scaling: list[dict] = field(default_factory=list)
    tests: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    section_s: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        """Append a row and rewrite the files.

        Args:
            row: keys of `ROW_COLUMNS` (missing ones print as "–").
        """
        self.rows.append(row)
        self.write()

    def skip(self, what: str) -> None:
        """Record a skipped section or row and rewrite the files.

        Args:
            what: what was skipped and why.
        """
        self.skipped.append(what)
        print(f"gpu_check: skipped {what}", flush=True)
        self.write()

    def write(self, wall_s: float | None = None) -> None:
        """Write gpu_check.json and gpu_check.md to `out`.

        Args:
            wall_s: the check's total wall seconds, once known.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        data = {
            "env": self.env,
            "dry_run": self.env["dry_run"],
            "rows": self.rows,
            "scaling": self.scaling,
            "tests": self.tests,
            "skipped": self.skipped,
            "section_s": self.section_s,
            "errors": self.errors,
            "wall_s": wall_s,
        }
        (self.out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
        (self.out / "gpu_check.md").write_text(self.markdown(wall_s))

    def markdown(self, wall_s: float | None = None) -> str:
        """The report as markdown: header, main table, scaling table, tests and skipped lines."""
        e = self.env
        lines = [
            f"## GPU check — {e['device_name']}{' (DRY RUN: tiny configs on the CPU)' if e['dry_run'] else ''}",
            "",
            f"{e['date']}; torch {e['torch']} (CUDA {e['cuda']}, cuDNN {e['cudnn']}), diffusers {e['diffusers']}, "
            f"Python {e['python']}; weights {e['dtype']}, channels-last and SDPA on CUDA; random weights and "
            "random text embeddings (timings and memory only)."
            + (f" Wall {wall_s:.0f} s." if wall_s is not None else ""),
            "",
        ]
        lines += [table(ROW_COLUMNS, self.rows), ""]
        if self.scaling:
            lines += [
                "Scaling (bench/texture.py `scaling_rows`):",
                "",
                table(SCALING_COLUMNS, self.scaling),
                "",
            ]
        if self.tests:
            t = self.tests
            lines += [
                f"CUDA tests (`{t.get('command', '')}`): {t.get('summary', '')} (exit {t.get('returncode')})",
                "",
            ]
        if self.skipped:
            lines += ["Skipped: " + "; ".join(self.skipped), ""]
        if self.errors:
            lines += ["Failed sections (tracebacks in gpu_check.json): " + ", ".join(self.errors), ""]
        if self.section_s:
            lines += ["Section seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.section_s.items()), ""]
        return "\n".join(lines)


ROW_COLUMNS = (
    ("case", "case", "{}"),
    ("batch", "B", "{}"),
    ("compile", "compile", "{}"),
    ("ms_step", "ms/step", "{:.1f}"),
    ("fwd_ms", "UNet(+CN) fwd ms", "{:.1f}"),
    ("ratio", "step ÷ fwd", "{:.2f}"),
    ("unet_batch", "UNet batch", "{}"),
    ("render_ms", "render ms", "{:.1f}"),
    ("encode_ms", "VAE encode ms", "{:.1f}"),
    ("guidance_ms", "guidance ms", "{:.1f}"),
    ("backward_ms", "backward ms", "{:.1f}"),
    ("optimiser_ms", "optimiser ms", "{:.1f}"),
    ("peak_gib", "peak GiB", "{:.2f}"),
    ("note", "note", "{}"),
)
SCALING_COLUMNS = (
    ("axis", "axis", "{}"),
    ("value", "value", "{}"),
    ("batch", "B", "{}"),
    ("ms_step", "ms/step", "{:.1f}"),
    ("render_ms", "render ms", "{:.1f}"),
    ("bake_s", "bake s", "{:.2f}"),
    ("peak_gib", "peak GiB", "{:.2f}"),
)


def _jsonable(value):
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def table(columns, rows: list[dict]) -> str:
    """A markdown table of `rows` with `columns` = ((key, heading, format), ...); absent/NaN cells print "–".

    Args:
        columns: the column spec.
        rows: the row dicts.
    """

    def cell(row: dict, key: str, fmt: str) -> str:
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return fmt.format(v)

    out = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join(out)


def environment(plan: CheckPlan) -> dict:
    """Device, library versions and settings of this run."""
    import diffusers

    cuda = plan.device.type == "cuda"
    return {
        "dry_run": plan.dry_run,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device_name": torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "dtype": str(plan.dtype),
        "plan": {k: str(v) for k, v in asdict(plan).items()},
    }
