"""Refusal at the door: everything a submitted job will need is checked in the socket loop, before `accepted`.

`check_params` runs the task's own parameter checks and the generic ones (text fields are valid UTF-8,
`guidance`/`guidance_overrides` against the guidance config schema, hub models present in the models folder); `build_job` checks a camera rig against the
mesh and then runs the task's own `make_job`, so a job that is accepted has already passed every check its task
does; the worker only runs it. A new task gets the generic checks for free when its params have the same field
names (`guidance`, `guidance_overrides`, `model`, `steps`) and its arrays the same names (`c2w`, `intrinsics`,
`vertices`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, get_type_hints

import numpy as np

from csd_blender.protocol.codec import is_text
from csd_blender.protocol.params import check_prompt

from ..errors import EngineError, RequestError
from ..models.store import job_sources, require_downloaded

# guidance="auto" resolves to one of these presets once the prior is loaded (engine.guidance.presets.auto_preset)
AUTO_PRESETS = {"toy": ("csd-toy",), "": ("csd-if", "csd-sd-refine")}
MAX_TEXT_CHARS = 1000


def check_text(value: Any, field: str) -> None:
    """Raise BAD_REQUEST naming `field` when a string anywhere in `value` (keys included) is not valid UTF-8.

    Args:
        value: a JSON-like value (params of a submit).
        field: the field name used in the error.
    """
    if isinstance(value, str):
        if not is_text(value):
            raise RequestError(field, "is not valid text (it holds a lone surrogate)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, field)
            check_text(item, f"{field}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_text(item, f"{field}[{i}]")


def _check_value(name: str, value: Any, hint: Any, schedule: bool) -> None:
    """Check one override against its config field's type (`name` is the field reported)."""
    from ..guidance.schedule import Schedule

    if schedule:
        Schedule.parse(value, name)  # a finite number or a [start_step, start, end, end_step] list
        return
    text = str(hint)
    if hint is str or text in ("str", "<class 'str'>"):
        if name.endswith("negative_prompt"):
            check_prompt(name, value, allow_empty=True)
        elif not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
            raise RequestError(name, f"must be a string of at most {MAX_TEXT_CHARS} characters, got {value!r:.60}")
        return
    if hint is int or text in ("int", "<class 'int'>"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(name, f"must be an integer, got {value!r:.60}")
        return
    if "float" in text:
        if value is None and "None" in text:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RequestError(name, f"must be a finite number, got {value!r:.60}")
        return
    raise RequestError(name, f"cannot be overridden (type {text})")


def check_guidance(guidance: str, overrides: Any, model: str = "toy", steps: int | None = None) -> None:
    """Check a job's guidance preset and overrides against the config schema of every preset it may use.

    Every override key must be a field of the preset's config class, every value of that field's type
    (schedules: a finite number or a 3/4-entry list), and the resulting config must build (t_min ≤ t_max, …).

    Args:
        guidance: a preset name, a formula name or "auto" (csd-toy for the toy prior, csd-if or csd-sd-refine).
        overrides: the `guidance_overrides` object.
        model: the job's model (decides what "auto" may become).
        steps: the job's steps (None: the preset's own length), as the task rescales schedules to it.

    Raises:
        EngineError: BAD_REQUEST naming `guidance` or `guidance_overrides.<key>`; BAD_PROMPT for a negative prompt.
    """
    from ..guidance.presets import build_guidance, get_preset

    if not isinstance(overrides, dict):
        raise RequestError("guidance_overrides", f"must be an object, got {type(overrides).__name__}")
    names = AUTO_PRESETS["toy" if model == "toy" else ""] if guidance == "auto" else (guidance,)
    for name in names:
        config = get_preset(name)  # RequestError naming `guidance` for an unknown name
        fields = {f.name: f for f in dataclasses.fields(config)}
        hints = get_type_hints(type(config))
        for key, value in overrides.items():
            where = f"guidance_overrides.{key}"
            if key not in fields:
                raise RequestError(where, f"unknown setting for {config.kind} guidance ({name}); known: "
                                          f"{', '.join(sorted(fields))}")
            _check_value(where, value, hints[key], key in config.schedule_fields)
        try:
            build_guidance(config, total_steps=steps, **overrides)
        except EngineError as exc:
            raise RequestError("guidance_overrides", f"{exc.message} (with guidance {name!r})") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise RequestError("guidance_overrides", f"do not give a valid {name!r} config: "
                                                     f"{type(exc).__name__}") from None


PROMPT_FIELDS = ("prompt", "negative_prompt", "target_prompt", "edit_prompt")
MODEL_FIELDS = ("model", "refine_model")


def check_models_and_words(params: Any) -> None:
    """Refuse, before any loading, a model that is not there and a prompt word its word-level tokenizer lacks
    (the toy prior's), naming the field (`model`, `refine_model`, `prompt`, `target_prompt`, …).

    Raises:
        EngineError: MODEL_MISSING or BAD_PROMPT.
    """
    from ..priors.presence import check_prompt_words, model_folder

    folders = [model_folder(value, name) for name in MODEL_FIELDS if (value := getattr(params, name, ""))]
    for folder in dict.fromkeys(folders):
        for name in PROMPT_FIELDS:
            check_prompt_words(folder, name, getattr(params, name, ""))


def check_params(spec: Any, raw_params: Any, device: str | None = None) -> Any:
    """A submit's params, validated: the task's own `from_dict().validate()`, text, guidance, the models' presence
    and the prompts' words.

    Args:
        spec: the task's TaskSpec.
        raw_params: the submit's params object (JSON).
        device: replaces a `device` param of "auto" (jobs run where the engine's priors live).

    Raises:
        EngineError / ProtocolError: a stable code and the field at fault.
    """
    params = spec.params_cls.from_dict(raw_params).validate()
    for key, value in raw_params.items():  # from_dict accepted it: a dict of known field names
        check_text(value, key)
    if hasattr(params, "guidance_overrides"):
        check_guidance(getattr(params, "guidance", "auto"), params.guidance_overrides,
                       getattr(params, "model", "toy"), getattr(params, "steps", None))
    if hasattr(params, "model"):  # a hub model not in the models folder: refused here, never downloaded by the job
        require_downloaded(job_sources(params))
    check_models_and_words(params)  # folders, the refine model (named as such) and the prompts' words
    if device is not None and getattr(params, "device", None) == "auto":
        params.device = device
    return params


def build_job(spec: Any, params: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The task's job from validated params and arrays: the task's `check_arrays`, then `make_job` (which checks
    the camera rig against the mesh, as it does for the command line).

    Args:
        spec: the task's TaskSpec.
        params: from `check_params`.
        arrays: from `engine.serve.arrays.check_arrays` (name -> numpy).

    Raises:
        EngineError: a stable code and the field at fault.
    """
    task_check = getattr(spec, "check_arrays", None)  # the task's own array checks (TaskSpec.check_arrays)
    if task_check is not None:
        task_check(arrays)
    return spec.make_job(params, arrays)
