"""What every job command shares: the progress bar, one `error:` line for bad input, printing the outputs, and
`JobCommand`, the record that the CLI and batch lines use to run a job on files."""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobCommand:
    """A job command on files, as the CLI registers it and as a batch line runs it.

    Args:
        name: the command's name (`python -m engine NAME`) and the job's task name.
        add_parser: registers the command on an argparse subparsers object.
        params: args -> the protocol params dataclass (not yet validated).
        run_files: (args, write_dir=None) -> {kind: path}; runs the job and writes its files.
    """

    name: str
    add_parser: Callable[[Any], None]
    params: Callable[[argparse.Namespace], Any]
    run_files: Callable[..., dict]


class ProgressBar:
    """A tqdm bar on stderr for a job's ProgressEvents (one bar per stage that optimises; other stages as lines).

    Args:
        desc: label of the bar (the task name; a staged task's stage name is appended).
        quiet: show nothing.
        bar_stages: stage names that advance the bar; every other stage prints a line when it starts.
    """

    def __init__(self, desc: str, quiet: bool = False, bar_stages: tuple[str, ...] = ("optimising",)):
        self.desc, self.quiet, self.bar_stages = desc, quiet, bar_stages
        self.bar, self.stage = None, None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        if self.quiet:
            return
        if event.stage in self.bar_stages:
            if self.bar is None or self.stage != event.stage:
                self.close()
                label = self.desc if self.bar_stages == ("optimising",) else f"{self.desc} {event.stage}"
                self.bar = tqdm(total=event.total, unit="step", desc=label, dynamic_ncols=True)
            self.bar.update(event.step - self.bar.n)
            if event.step:
                self.bar.set_postfix(loss=f"{event.loss:.4f}")
        elif event.stage != self.stage and event.stage != "done":
            self.close()
            tqdm.write(f"{event.stage} …", file=sys.stderr)
        self.stage = event.stage

    def close(self) -> None:
        """Close the current bar, if any."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_with_bar(run: Callable, job, bar: ProgressBar):
    """`run(job, progress=bar)`, closing the bar however it ends; returns (result, seconds)."""
    t0 = time.time()
    try:
        return run(job, progress=bar), time.time() - t0
    finally:
        bar.close()


def out_dir(args: argparse.Namespace, write_dir: str | Path | None) -> Path:
    """The folder a job writes into (`write_dir` when a batch worker gives one, else `args.out`), created."""
    out = Path(write_dir if write_dir is not None else args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def mesh_record(path: str, up: str, faces: int, **extra) -> dict:
    """The input mesh as job.json records it: absolute path, SHA-256 of its bytes, up axis, face count, extras."""
    return {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "up_axis": up, "faces": faces, **extra}


def reproduce_argv(command: str, options: dict[str, Any]) -> list[str]:
    """The command line that reruns a job: `command` then each option with a value (None, "" and False are left
    out, True is a bare flag, a list repeats the option).

    Args:
        command: the subcommand (`texture`, `edit`, `generate`).
        options: flag -> resolved value, in the order to print them.
    """
    argv = [command]
    for flag, value in options.items():
        if value is None or value is False or value == "":
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def add_mask_options(p: argparse.ArgumentParser) -> None:
    """`--mask` and `--mask-border`: restrict a texture or edit job to a region (csd_blender/protocol/params/region.py)."""
    p.add_argument("--mask", default=None, metavar="FILE",
                   help="only change a region: faces.npy ((F,) 0/1 per triangle, in the order the mesh loads), a text "
                        "file of triangle indices, or a texel mask on the UVs (.npy (H, W) in [0, 1] or a grey .png); "
                        "texels beyond the border come back bit-identical")
    p.add_argument("--mask-border", type=int, default=4, help="texels of soft border around the region (0-64)")


def load_mask(path: str | None, n_faces: int) -> dict:
    """A `--mask` file as the job's region array: {"face_mask": (F,) uint8} or {"texel_mask": (H, W) float32}.

    Args:
        path: .npy (a (F,) 0/1 array or an (H, W) texel mask), .png (grey texel mask, top row first) or a text file
            of triangle indices separated by spaces, commas or newlines (`#` starts a comment); None: no region.
        n_faces: triangles of the loaded mesh (what face indices count).

    Raises:
        RequestError: unreadable file, indices out of range, an array of another shape.
    """
    if not path:
        return {}
    import numpy as np

    from ..errors import RequestError

    file = Path(path)
    try:
        if file.suffix.lower() == ".npy":
            value = np.load(file, allow_pickle=False)
        elif file.suffix.lower() == ".png":
            from ..mesh import load_texture_image

            return {"texel_mask": np.ascontiguousarray(load_texture_image(file)[..., 0], dtype=np.float32)}
        else:
            words = " ".join(line.split("#")[0] for line in file.read_text(encoding="utf-8").splitlines())
            indices = np.asarray([int(w) for w in words.replace(",", " ").split()], dtype=np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= n_faces):
                raise RequestError("mask", f"{path}: face index {int(indices.max())} is out of range for "
                                           f"{n_faces} triangles")
            value = np.zeros(n_faces, np.uint8)
            value[indices] = 1
    except (OSError, ValueError) as exc:
        raise RequestError("mask", f"cannot read mask {path}: {exc}") from exc
    if value.ndim == 1:
        if value.shape[0] != n_faces:
            raise RequestError("mask", f"{path}: {value.shape[0]} entries for {n_faces} triangles")
        return {"face_mask": (value != 0).astype(np.uint8) if value.dtype == bool else value.astype(np.uint8)}
    if value.ndim == 2:
        return {"texel_mask": np.ascontiguousarray(value, dtype=np.float32)}
    raise RequestError("mask", f"{path}: expected (F,) face values or an (H, W) texel mask, got {list(value.shape)}")


def mask_record(path: str | None) -> dict:
    """The mask file as job.json records it (absolute path and SHA-256), or {} without one."""
    if not path:
        return {}
    return {"mask": {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}}
