"""The models folder: which hub models are on this machine, how big they are, which files a download takes, and
the gate that refuses a job whose model is missing (jobs never download).

The models folder is a Hugging Face hub cache (`models--org--name/{blobs,snapshots,refs}`), so weights fetched by
`python -m engine models download`, `huggingface-cli download` or the add-on's Models panel are the same files, and
an offline studio copies the folder. Its place: `--models-dir DIR` / the add-on's Models Folder (HF_HOME
semantics: the cache is DIR/hub), else HF_HUB_CACHE / HF_HOME, else ~/.cache/huggingface/hub.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from csd_blender.protocol.models import ALIASES, DEFAULT_CONTROLNET_IDS, find_entry, missing_message
from csd_blender.protocol.params import split_controlnet_spec

from ..errors import ModelMissingError

PARTIAL = ".csd-partial"          # a blob being downloaded (kept across interruptions: the download resumes)
COMPLETE = "csd-complete.json"     # written into a snapshot once every selected file is there
UNFINISHED = "csd-downloading.json"  # in the model's folder while a download has not finished (or was interrupted)
# the pipeline components the engine loads (priors/loader.py); other folders (safety checker, …) are not fetched
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHT_SUFFIXES = (".bin", ".ckpt", ".msgpack", ".onnx", ".onnx_data", ".pb", ".h5", ".pt", ".pth", ".ot", ".tflite",
                   ".mlmodel", ".gguf")


def models_cache(models_dir: str | os.PathLike | None = None) -> Path:
    """The hub cache folder models live in: `models_dir`/hub when given (HF_HOME semantics), else the environment's
    (HF_HUB_CACHE, else huggingface_hub's, which follows HF_HOME)."""
    if models_dir:
        return Path(models_dir).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def storage_folder(cache: Path, repo_id: str) -> Path:
    """`cache`/models--org--name: everything the hub cache keeps of one model."""
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def snapshot_folder(cache: Path, repo_id: str, revision: str = "main") -> Path | None:
    """The snapshot `revision` points at, or None when there is none."""
    folder = storage_folder(cache, repo_id)
    ref = folder / "refs" / revision
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
    snap = folder / "snapshots" / commit
    return snap if snap.is_dir() else None


def bytes_on_disk(cache: Path, repo_id: str) -> int:
    """Bytes the model's blobs take (partial downloads included)."""
    blobs = storage_folder(cache, repo_id) / "blobs"
    return sum(f.stat().st_size for f in blobs.iterdir() if f.is_file()) if blobs.is_dir() else 0


def is_present(cache: Path, repo_id: str) -> bool:
    """True when the model's snapshot has what a load reads first (model_index.json for a pipeline, config.json for a
    single model), no download of it is unfinished and, when our download wrote its record, every file it lists."""
    snap = snapshot_folder(cache, repo_id)
    if snap is None or not ((snap / "model_index.json").is_file() or (snap / "config.json").is_file()):
        return False
    if (storage_folder(cache, repo_id) / UNFINISHED).is_file():
        return False
    record = snap / COMPLETE
    if record.is_file():
        files = json.loads(record.read_text(encoding="utf-8")).get("files", [])
        return all((snap / name).is_file() for name in files)
    return True


@dataclass
class ModelStatus:
    """One model's state on this machine (what `models list` prints and the Models panel shows)."""

    id: str
    present: bool
    bytes_on_disk: int
    partial: bool
    path: str

    def as_json(self) -> dict:
        entry = find_entry(self.id)
        out = {"event": "model", "id": self.id, "present": self.present, "bytes_on_disk": self.bytes_on_disk,
               "partial": self.partial, "path": self.path}
        if entry is not None:
            out.update(label=entry.label, role=entry.role, estimate_bytes=entry.estimate_bytes, gated=entry.gated,
                       page=entry.page, use=entry.use)
        return out


def model_status(cache: Path, repo_id: str) -> ModelStatus:
    """The state of `repo_id` in `cache`."""
    folder = storage_folder(cache, repo_id)
    blobs = folder / "blobs"
    partial = (folder / UNFINISHED).is_file() or (blobs.is_dir() and any(f.name.endswith(PARTIAL)
                                                                            for f in blobs.iterdir()))
    snap = snapshot_folder(cache, repo_id)
    return ModelStatus(repo_id, is_present(cache, repo_id), bytes_on_disk(cache, repo_id), bool(partial),
                       str(snap or folder))


def remove_model(cache: Path, repo_id: str) -> int:
    """Delete everything the cache holds of `repo_id` (partial downloads too); return the bytes freed."""
    folder = storage_folder(cache, repo_id)
    freed = bytes_on_disk(cache, repo_id)
    if folder.exists():
        shutil.rmtree(folder)
    locks = Path(cache) / ".locks" / folder.name
    if locks.exists():
        shutil.rmtree(locks, ignore_errors=True)
    return freed


def select_files(files: dict[str, int], precision: str = "fp16") -> list[str]:
    """The files of a repo the engine needs, from its listing (name -> size).

    A pipeline (model_index.json at the top) gives model_index.json and its loaded components' folders; a single model
    (ControlNet, tiny autoencoder) its top-level files. Weights are safetensors only (the loader refuses pickles);
    in a folder that has fp16 safetensors, `precision="fp16"` takes those alone (the engine's CUDA path), "full"
    the full-precision ones alone, "both" both.

    Args:
        files: repo file name -> size in bytes.
        precision: "fp16", "full" or "both".
    """
    pipeline = "model_index.json" in files
    chosen = []
    for name in sorted(files):
        folder, _, base = name.rpartition("/")
        if pipeline and name != "model_index.json" and (folder.split("/")[0] not in COMPONENTS):
            continue
        if not pipeline and folder:
            continue
        if base.endswith(WEIGHT_SUFFIXES) or fnmatch.fnmatch(base, "*non_ema*") or base.startswith("."):
            continue
        if base.endswith(".safetensors"):
            fp16 = ".fp16." in base or ".fp16-" in base
            folder_has_fp16 = any(n.rpartition("/")[0] == folder and n.endswith(".safetensors")
                                  and (".fp16." in n or ".fp16-" in n) for n in files)
            if folder_has_fp16 and precision != "both" and fp16 != (precision == "fp16"):
                continue
        chosen.append(name)
    return chosen


def _local_or_toy(source: str) -> bool:
    return source == "toy" or Path(source).expanduser().is_dir() or source.startswith((".", "/", "~"))


def require_downloaded(sources: Iterable[str], cache: Path | None = None) -> None:
    """Refuse a job before it starts when one of its hub models is not in the models folder (jobs never download).

    Args:
        sources: the job's model and ControlNet sources ("toy", folders or hub ids).
        cache: the models folder's hub cache (default: the environment's).

    Raises:
        ModelMissingError: naming the model, the Models panel and `python -m engine models download ID`.
    """
    cache = Path(cache) if cache is not None else models_cache()
    for source in sources:
        if not source or _local_or_toy(source):
            continue
        repo_id = source
        if not is_present(cache, repo_id) and not is_present(cache, ALIASES.get(repo_id, repo_id)):
            raise ModelMissingError(missing_message(repo_id), detail=f"models folder: {cache}")


def job_sources(params) -> list[str]:
    """The hub models a job's params name: its model and its ControlNets (a bare kind means the default id)."""
    sources = [getattr(params, "model", "toy")]
    for spec in getattr(params, "controlnets", ()):
        kind, source = split_controlnet_spec(spec)
        sources.append(source or DEFAULT_CONTROLNET_IDS[kind])
    return sources
