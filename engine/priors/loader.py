"""`load_prior`: "toy", a local diffusers folder or a hub id → a cached Prior; `release_priors` frees them."""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import device_info
from ..errors import ModelMissingError, RequestError
from .base import Prior, prepare_unet
from .controlnet import ControlNetStack, parse_controlnet_spec, scales_for
from .embedding_cache import EmbeddingCache, folder_fingerprint
from .hub import TOY_PRIOR_DIR, cached_snapshot, load_component, read_model_index
from .pixel import PixelPrior
from .stable_diffusion import StableDiffusionPrior
from .text import PromptEncoder

logger = logging.getLogger(__name__)

TOY_PIPELINE_CLASS = "CSDToyPipeline"
_PRIORS: dict[tuple, Prior] = {}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None → float16 on CUDA, float32 on CPU; strings like "float16"/"fp16"/"bf16" are accepted.

    Args:
        dtype: requested dtype.
        device: the device the weights go to.
    """
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "float32": torch.float32,
        "fp32": torch.float32,
        "float": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in names:
        raise RequestError("dtype", f"must be one of {', '.join(names)}, got {dtype!r}")
    return names[dtype]


def _component_class(index: Mapping[str, Any], key: str, module: Any, model: str) -> Any:
    entry = index.get(key)
    if not entry or entry[1] is None:
        raise ModelMissingError(f"model {model!r}: model_index.json has no {key!r} component")
    cls = getattr(module, entry[1], None)
    if cls is None:
        raise ModelMissingError(f"model {model!r}: {key} class {entry[1]!r} is not in {module.__name__}")
    return cls


def _resolve_source(model: str) -> tuple[str, bool]:
    if model == "toy":
        if not (TOY_PRIOR_DIR / "model_index.json").is_file():
            raise ModelMissingError(
                f"the bundled toy prior weights are missing ({TOY_PRIOR_DIR}); train them with "
                f"`python -m engine.toy.train` (about an hour on two CPU cores)"
            )
        return str(TOY_PRIOR_DIR), True
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    if model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1:
        raise ModelMissingError(f"model {model!r}: no such folder")
    snapshot = cached_snapshot(model)  # a downloaded hub id loads as the folder it is
    return (snapshot, True) if snapshot else (model, False)


def _build(
    model: str,
    device: torch.device,
    dtype: torch.dtype,
    controlnets: Sequence[str],
    controlnet_scales: Any,
    cache_dir: str | Path | None,
    tiny_vae: str | None = None,
) -> Prior:
    import diffusers
    import transformers
    from transformers import AutoTokenizer

    source, is_local = _resolve_source(model)
    index = read_model_index(source, is_local)
    variant = "fp16" if dtype == torch.float16 else None  # falls back to the full weights when absent
    family = (
        "toy"
        if index.get("_class_name") == TOY_PIPELINE_CLASS or model == "toy"
        else ("sd" if index.get("vae") and index["vae"][1] else "if")
    )
    unet = load_component(
        _component_class(index, "unet", diffusers, model), source, "unet", dtype=dtype, variant=variant
    )
    scheduler = load_component(_component_class(index, "scheduler", diffusers, model), source, "scheduler")
    tokenizer = load_component(AutoTokenizer, source, "tokenizer")
    encoder_class = _component_class(index, "text_encoder", transformers, model).__name__
    if is_local:
        key = f"{source}|{folder_fingerprint(Path(source) / 'text_encoder', Path(source) / 'tokenizer')}"
    else:
        key = source
    cache = EmbeddingCache(f"{key}|{dtype}", cache_dir)
    text = PromptEncoder(source, encoder_class, tokenizer, cache, device, dtype)
    if family != "sd":
        if tiny_vae:
            raise RequestError("tiny_vae", f"model {model!r} is a pixel prior; a tiny VAE needs Stable "
                               "Diffusion")
        if controlnets:
            raise RequestError(
                "controlnets", f"model {model!r} is a pixel prior; ControlNets need Stable Diffusion 1.5"
            )
        return PixelPrior(
            name=model, family=family, unet=unet, scheduler=scheduler, text=text, device=device, dtype=dtype
        )
    vae = load_component(
        _component_class(index, "vae", diffusers, model), source, "vae", dtype=dtype, variant=variant
    )
    stack = None
    if controlnets:
        specs = [parse_controlnet_spec(c) for c in controlnets]
        names = [n for n, _ in specs]
        if len(set(names)) != len(names):
            raise RequestError("controlnets", f"lists a ControlNet twice: {names}")
        nets = {}
        for name, cn_id in specs:
            net = load_component(diffusers.ControlNetModel, cn_id, None, dtype=dtype, variant=variant)
            nets[name] = prepare_unet(net, device, dtype)
        stack = ControlNetStack(
            nets,
            scales_for(names, controlnet_scales),
            unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1),
        )
    encoder = load_component(diffusers.AutoencoderTiny, tiny_vae, None, dtype=dtype) if tiny_vae else None
    return StableDiffusionPrior(
        name=model, unet=unet, vae=vae, scheduler=scheduler, text=text, device=device, dtype=dtype, controlnet=stack,
        encoder=encoder,
    )


def load_prior(
    model: str = "toy",
    device: str | torch.device = "cpu",
    controlnets: Sequence[str] = (),
    controlnet_scales: Sequence[float] | Mapping[str, float] | None = None,
    dtype: str | torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    tiny_vae: str | None = None,
) -> Prior:
    """Load (or reuse) a diffusion prior.

    Args:
        model: "toy" (engine/assets/toy_prior), a local diffusers folder (model_index.json with a `vae` →
            Stable Diffusion, else a pixel prior) or a hub id (from the HF cache; HF_HUB_OFFLINE=1 never downloads).
        device: "cpu", "cuda", "cuda:N" or "auto".
        controlnets: condition names ("depth", "normal", "canny"), optionally "name=model id or folder";
            Stable Diffusion 1.5 only.
        controlnet_scales: one scale per ControlNet (default 1.0 each).
        dtype: weight dtype; default float16 on CUDA, float32 on CPU.
        cache_dir: text-embedding cache folder (default `$CSD_CACHE_DIR/embeddings` or ~/.cache/csd-blender/embeddings).
        tiny_vae: hub id or folder of a diffusers AutoencoderTiny (madebyollin/taesd for SD 1.x/2.x) that
            encodes renders instead of the VAE: faster, lower fidelity (Stable Diffusion only; previews keep
            the VAE).

    Raises:
        ModelMissingError: the weights are not available (the message says how to provide them).
    """
    if not isinstance(model, str) or not model.strip():
        raise RequestError("model", f"must be 'toy', a hub id or a local folder, got {model!r}")
    dev = torch.device(device_info.resolve_device(str(device)))  # CUDA asked for without CUDA: RequestError
    dt = resolve_dtype(dtype, dev)
    controlnets = tuple(controlnets)
    scales = tuple(
        sorted(scales_for([parse_controlnet_spec(c)[0] for c in controlnets], controlnet_scales).items())
    )
    key = (model, str(dev), dt, controlnets, scales, str(cache_dir), tiny_vae)
    prior = _PRIORS.get(key)
    if prior is None:
        logger.info("loading prior %r on %s (%s), controlnets=%s", model, dev, dt, controlnets)
        prior = _build(model, dev, dt, controlnets, controlnet_scales, cache_dir, tiny_vae)
        _PRIORS[key] = prior
    return prior


def available_priors() -> list[str]:
    """Priors usable without a download: "toy" when its weights exist, then hub ids in the HF cache that have a
    model_index.json (diffusers pipelines), sorted."""
    from .hub import hub_cache_dir

    names = ["toy"] if (TOY_PRIOR_DIR / "model_index.json").is_file() else []
    cache = Path(hub_cache_dir())
    found = set()
    if cache.is_dir():
        for snap in cache.glob("models--*/snapshots/*/model_index.json"):
            found.add(snap.parents[2].name[len("models--") :].replace("--", "/"))
    return names + sorted(found)


def loaded_priors() -> list[Prior]:
    """The priors currently held in the cache."""
    return list(_PRIORS.values())


def release_priors() -> int:
    """Drop every cached prior, collect garbage and empty the CUDA cache; returns how many were dropped."""
    n = len(_PRIORS)
    _PRIORS.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return n
