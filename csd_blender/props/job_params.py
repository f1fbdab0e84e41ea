"""Sidebar settings -> protocol job parameters, for every job, and back for Reuse Settings (no bpy).

The one place that turns Scene.csd, Scene.csd_generate and Scene.csd_edit (or any object with the same
attributes) into validated TextureParams, GenerateParams and EditParams, and the JSON stored on results.
"""
from __future__ import annotations

import json
import random
from typing import Any

from ..protocol.errors import ProtocolError
from ..protocol.params import EditParams, GenerateParams, Params, TextureParams, split_controlnet_spec
from ..scene.results import PARAMS_KEY


def job_seed(settings: Any) -> int:
    """The seed a job runs with: a fresh random one when settings.use_random_seed, else settings.seed."""
    return random.randrange(0, 2**31 - 1) if settings.use_random_seed else int(settings.seed)


def job_model(model: str, default_model: str) -> str:
    """The model a job runs with: `model` when set, else the preferences' default, else the toy prior."""
    return model.strip() or default_model or "toy"


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
        seed = job_seed(settings)
    controlnets = [] if settings.controlnet == "NONE" else [controlnet_spec(settings)]
    params = TextureParams(
        prompt=(prompt or "").strip() or settings.prompt.strip(),
        negative_prompt=settings.negative_prompt.strip(),
        model=job_model(settings.model, default_model),
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


def edit_params(settings, *, default_model: str = "toy", model: str = "", progress_every: int = 10) -> EditParams:
    """The job parameters for the current settings, validated.

    Args:
        settings: Scene.csd_edit (or any object with the same attributes).
        default_model: used when `model` is empty (the add-on preferences' default).
        model: the texture panel's model (Scene.csd.model), shared by every panel.
        progress_every: steps between previews.

    Raises:
        ProtocolError: a setting out of range or identical prompts; the message names the field.
    """
    return EditParams(
        target_prompt=settings.target_prompt.strip(), edit_prompt=settings.edit_prompt.strip(),
        strength=float(settings.strength), preserve=float(settings.preserve), geometry=bool(settings.geometry),
        model=job_model(model, default_model), quality=settings.quality,
        steps=int(settings.steps) or None, seed=job_seed(settings), progress_every=int(progress_every),
    ).validate()


def generate_params(
    settings, *, default_model: str = "toy", model: str = "", progress_every: int = 10
) -> GenerateParams:
    """The job parameters for the current settings, validated.

    Args:
        settings: Scene.csd_generate (or any object with the same attributes).
        default_model: used when `model` is empty (the add-on preferences' default).
        model: the panel's model (Scene.csd.model), shared with the texture panel.
        progress_every: steps between previews.

    Raises:
        ProtocolError: a setting out of range; the message names the field.
    """
    return GenerateParams(
        prompt=settings.prompt.strip(),
        negative_prompt=settings.negative_prompt.strip(),
        model=job_model(model, default_model),
        quality=settings.quality,
        refine=settings.refine,
        steps_coarse=int(settings.steps_coarse) or None,
        steps_refine=int(settings.steps_refine) or None,
        face_budget=int(settings.face_budget),
        size=float(settings.size),
        seed=job_seed(settings),
        progress_every=int(progress_every),
    ).validate()


def dumps_params(params: Params) -> str:
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
