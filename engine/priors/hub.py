"""Loading diffusers/transformers components from a local folder or the Hugging Face cache (the models folder), with
clear errors. Loading never downloads: `python -m engine models download` (engine/priors/download.py) does."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from csd_blender.protocol.models import ALIASES, MODELS_PANEL

from ..errors import ModelMissingError

TOY_PRIOR_DIR = Path(__file__).resolve().parent.parent / "assets" / "toy_prior"


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set now (read at call time; huggingface_hub reads it only at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.upper() in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder (`huggingface_hub.constants.HF_HUB_CACHE`, honouring HF_HUB_CACHE/HF_HOME)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def cached_snapshot(source: str) -> str | None:
    """The models folder's snapshot of a hub id, as a local folder (None when `source` is a folder or not there).

    Loading a snapshot as a folder reads only the files that are there: optional files a library probes for
    (a tokenizer's config.json, …) are simply absent, as in any local folder, instead of a cache miss that
    offline mode turns into an error.
    """
    if Path(source).expanduser().is_dir() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        return None
    from ..models.store import is_present, models_cache, snapshot_folder

    cache = models_cache()
    for repo_id in (source, ALIASES.get(source)):   # an older id of the same weights loads the downloaded ones
        if repo_id and is_present(cache, repo_id):
            return str(snapshot_folder(cache, repo_id))
    return None


def load_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "these files are not available" (as opposed to a bug)."""
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    return (OSError, EntryNotFoundError, HFValidationError)


def missing_model(model_id: str, what: str, exc: BaseException | None = None) -> ModelMissingError:
    """A ModelMissingError naming the id, the HF cache folder and how to provide the files.

    Args:
        model_id: hub id or folder.
        what: the component that failed ("model_index.json", "unet", ...).
        exc: the original error (goes into `detail`).
    """
    offline = " (HF_HUB_OFFLINE is set, so nothing is downloaded)" if hub_offline() else ""
    msg = (
        f"model {model_id!r}: cannot load {what}{offline}. It is neither a local diffusers folder nor in the "
        f"models folder {hub_cache_dir()}; jobs never download. Download it in {MODELS_PANEL} or with "
        f"`python -m engine models download {model_id}` (into that folder, or copy a models folder from a machine "
        f"that has it), or pass the path of a local folder that holds the model"
    )
    return ModelMissingError(msg, detail=f"{type(exc).__name__}: {exc}" if exc is not None else "")


def read_model_index(source: str, is_local: bool) -> dict[str, Any]:
    """The model's model_index.json as a dict.

    Args:
        source: local folder or hub id.
        is_local: whether `source` is a folder.
    """
    if is_local:
        path = Path(source) / "model_index.json"
        if not path.is_file():
            raise missing_model(source, "model_index.json (the folder is not in diffusers layout)")
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(
                hf_hub_download(
                    source, "model_index.json", local_files_only=True, cache_dir=hub_cache_dir()
                )
            )
        except load_errors() as exc:
            raise missing_model(source, "model_index.json", exc) from exc
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_component(
    cls: Any,
    source: str,
    subfolder: str | None,
    *,
    dtype: Any = None,
    variant: str | None = None,
    dtype_kw: str = "torch_dtype",
) -> Any:
    """`cls.from_pretrained(source, subfolder=...)` with offline handling; a missing file → ModelMissingError.

    Tries the fp16 `variant` first when given and falls back to the default weights. Model weights are read from
    safetensors files only (`use_safetensors=True`): pickled `.bin` weights are refused.

    Args:
        cls: a diffusers/transformers class with `from_pretrained`.
        source: local folder or hub id.
        subfolder: the component folder ("unet", "vae", ...), or None.
        dtype: weight dtype, or None to keep the class default.
        variant: weight file variant to try first ("fp16").
        dtype_kw: the keyword the class uses for the dtype (`torch_dtype` for diffusers, `dtype` for transformers 5).
    """
    source = cached_snapshot(source) or source
    is_local = Path(source).is_dir()
    kwargs: dict[str, Any] = {"local_files_only": True}  # jobs never download: `python -m engine models download`
    if not is_local:
        kwargs["cache_dir"] = hub_cache_dir()
    if subfolder:
        kwargs["subfolder"] = subfolder
    if dtype is not None:
        kwargs[dtype_kw] = dtype
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        kwargs["use_safetensors"] = True  # never unpickle weight files (.bin)
    if variant and is_local:
        folder = Path(source) / (subfolder or "")
        if not any(f".{variant}." in f.name for f in folder.glob("*")):
            variant = None  # a local folder without variant files: skip the failed try
    first_exc: BaseException | None = None
    for var in [variant, None] if variant else [None]:
        try:
            return (
                cls.from_pretrained(source, variant=var, **kwargs)
                if var
                else cls.from_pretrained(source, **kwargs)
            )
        except load_errors() as exc:
            first_exc = first_exc or exc
            if var is None:
                raise missing_model(source, subfolder or cls.__name__, exc) from exc
    raise missing_model(
        source, subfolder or cls.__name__, first_exc
    )  # pragma: no cover - loop always returns/raises
