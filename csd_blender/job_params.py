"""Scene.csd <-> TextureParams: the one place that turns the sidebar settings into job parameters (no bpy)."""
from __future__ import annotations

import json
import random
from typing import Any

from .protocol.errors import ProtocolError
from .protocol.params import TextureParams, split_controlnet_spec

# Custom property names on results (image, material, object).
PARAMS_KEY = "csd_params"             # the request as sent (JSON), seed included: re-running it reproduces
RESOLVED_KEY = "csd_resolved_params"  # the engine's resolved parameters (presets expanded), JSON


def controlnet_spec(settings: Any) -> str:
    """The chosen ControlNet as a protocol entry: "depth", or "depth=<hub id or folder>" when a source is set.

    Args:
        settings: Scene.csd with `controlnet` != "NONE".
    """
    kind = settings.controlnet
    source = getattr(settings, f"controlnet_{kind}_source", "").strip()
    return f"{kind}={source}" if source else kind


def texture_params(settings: Any, *, default_model: str = "toy", seed: int | None = None,
                   prompt: str | None = None) -> TextureParams:
    """The job parameters for the current settings, validated.

    Args:
        settings: Scene.csd (or any object with the same attributes).
        default_model: used when settings.model is empty (the add-on preferences' default).
        seed: the seed to use; None takes settings.seed, or a fresh random one when settings.use_random_seed.
        prompt: replaces settings.prompt when not empty (an object's own prompt in batch texturing).

    Raises:
        ProtocolError: a setting out of range; the message names the field ("prompt: must not be empty").
    """
    if seed is None:
        seed = random.randrange(0, 2**31 - 1) if settings.use_random_seed else int(settings.seed)
    controlnets = [] if settings.controlnet == "NONE" else [controlnet_spec(settings)]
    params = TextureParams(
        prompt=(prompt or "").strip() or settings.prompt.strip(),
        negative_prompt=settings.negative_prompt.strip(),
        model=(settings.model.strip() or default_model or "toy"),
        controlnets=controlnets,
        controlnet_scales=[float(settings.controlnet_scale)] if controlnets else [],
        quality=settings.quality,
        steps=int(settings.steps) or None,
        texture_size=int(settings.texture_size) or None,
        seed=int(seed),
        progress_every=int(settings.progress_every),
    )
    return params.validate()


def settings_from_params(settings: Any, params: TextureParams | dict) -> None:
    """Copy stored job parameters back into the settings so the next job reproduces the result.

    Args:
        settings: Scene.csd.
        params: a TextureParams or its dict (as stored under PARAMS_KEY).
    """
    p = params if isinstance(params, TextureParams) else TextureParams.from_dict(params)
    settings.prompt = p.prompt
    settings.negative_prompt = p.negative_prompt
    settings.model = p.model
    settings.quality = p.quality
    settings.steps = p.steps or 0
    settings.texture_size = p.texture_size or 0
    settings.seed = int(p.seed)
    settings.use_random_seed = False
    settings.progress_every = int(p.progress_every)
    settings.controlnet = "NONE"
    if p.controlnets:
        kind, source = split_controlnet_spec(p.controlnets[0])
        settings.controlnet = kind
        setattr(settings, f"controlnet_{kind}_source", source)
    if p.controlnet_scales:
        settings.controlnet_scale = float(p.controlnet_scales[0])


def dumps_params(params: TextureParams) -> str:
    """The JSON stored on results under PARAMS_KEY."""
    return json.dumps({"task": params.TASK, **params.to_dict()}, sort_keys=True)


def loads_params(text: str) -> TextureParams:
    """Parse what dumps_params wrote.

    Raises:
        ProtocolError: the stored text is not valid job parameters.
    """
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ProtocolError("bad_request", f"{PARAMS_KEY}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", f"{PARAMS_KEY}: expected a JSON object")
    data.pop("task", None)
    return TextureParams.from_dict(data)
