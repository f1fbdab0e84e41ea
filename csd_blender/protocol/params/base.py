"""What every job's parameters share: limits, prompt and range checks, and `Params` (typed from/to JSON)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, get_type_hints

from ..errors import ErrorCode, ProtocolError

MAX_PROMPT_CHARS = 1000
MAX_FACES = 1_000_000
MAX_VERTICES = 3_000_000
TEXTURE_SIZE_RANGE = (64, 4096)
MAX_STEPS = 100_000
MAX_CAMERAS = 256
QUALITY_PRESETS = ("fast", "balanced", "best")
CONTROLNET_KINDS = ("depth", "normal", "canny")
MAX_MODEL_CHARS = 512           # hub id or folder path of a model or ControlNet
BACKGROUNDS = ("random", "white", "black", "gray")
PROMPT_PUNCTUATION = ".,;:!?\"'"   # the characters a text encoder's normaliser turns into spaces


def fail(field_name: str, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> ProtocolError:
    return ProtocolError(code, f"{field_name}: {message}", field=field_name)


def check_prompt(field_name: str, value: Any, *, allow_empty: bool) -> None:
    """Raise BAD_PROMPT unless `value` is a str of sane length (non-empty unless allowed)."""
    if not isinstance(value, str):
        raise fail(field_name, f"must be a string, got {type(value).__name__}", ErrorCode.BAD_PROMPT)
    if not allow_empty and not value.strip():
        raise fail(field_name, "must not be empty", ErrorCode.BAD_PROMPT)
    if len(value) > MAX_PROMPT_CHARS:
        raise fail(field_name, f"is {len(value)} characters; the limit is {MAX_PROMPT_CHARS}", ErrorCode.BAD_PROMPT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(field_name, "is not valid UTF-8 (it contains a lone surrogate)", ErrorCode.BAD_PROMPT) from None
    if any(ord(c) < 32 and c not in "\t\n" for c in value):
        raise fail(field_name, "contains control characters", ErrorCode.BAD_PROMPT)


def prompt_words(text: str) -> str:
    """A prompt as a text encoder's tokenizer sees it: lower case, punctuation dropped, single spaces."""
    return " ".join("".join(" " if c in PROMPT_PUNCTUATION else c for c in text.lower()).split())


def check_prompts_differ(field_name: str, value: str, other_name: str, other: str, why: str) -> None:
    """Raise BAD_PROMPT naming `field_name` when two prompts say the same once case and punctuation are ignored
    (the pair's guidance difference is then zero: the job would change nothing or run silently wrong)."""
    if value.strip() and prompt_words(value) == prompt_words(other):
        raise fail(field_name, f"says the same as {other_name} (case and punctuation aside): {why}",
                   ErrorCode.BAD_PROMPT)


def split_controlnet_spec(spec: Any) -> tuple[str, str]:
    """A ControlNet entry as (kind, source): "depth" -> ("depth", ""), "depth=/models/cn" -> ("depth", "/models/cn").

    The source is a hub id or a local folder (offline studios keep weights in folders); "" means the engine's
    default ControlNet for that kind.

    Args:
        spec: one entry of `controlnets`.

    Raises:
        ProtocolError: not a string, an unknown kind, an empty or over-long source, control characters.
    """
    if not isinstance(spec, str):
        raise fail("controlnets", f"entries must be strings, got {type(spec).__name__}")
    kind, sep, source = spec.partition("=")
    kind, source = kind.strip(), source.strip()
    if kind not in CONTROLNET_KINDS:
        raise fail("controlnets", f"unknown ControlNet {kind!r}; choose from {', '.join(CONTROLNET_KINDS)}, "
                                   "optionally as kind=hub id or folder (depth=/models/controlnet-depth)")
    if sep and not source:
        raise fail("controlnets", f"{kind}=: give a hub id or a folder after '=' (or just {kind!r})")
    if len(source) > MAX_MODEL_CHARS or any(ord(c) < 32 for c in source):
        raise fail("controlnets", f"{kind}: the source must be a hub id or a folder path of at most "
                                   f"{MAX_MODEL_CHARS} characters without control characters")
    return kind, source


def check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
        raise fail(name, f"must be in [{lo}, {hi}], got {value!r}")


def check_run_options(progress_every: int, preview_size: int, device: str) -> None:
    """The options of how a job runs that texture and generate share: progress cadence, preview size, device."""
    if not (1 <= progress_every <= MAX_STEPS):
        raise fail("progress_every", f"must be in [1, {MAX_STEPS}], got {progress_every}")
    if not (16 <= preview_size <= 1024):
        raise fail("preview_size", f"must be in [16, 1024], got {preview_size}")
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise fail("device", f"must be auto, cpu, cuda or cuda:N, got {device!r}")


def check_interval(name: str, value: Any, lo: float, hi: float) -> None:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise fail(name, f"must be a [min, max] pair, got {value!r}")
    for v in value:
        check_range(name, v, lo, hi)
    if value[0] > value[1]:
        raise fail(name, f"min must not exceed max, got {list(value)}")


class Params:
    """Shared (de)serialisation for the parameter dataclasses."""

    TASK: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: Any):
        """Build from a JSON object: unknown fields and wrong types are errors that name the field."""
        if not isinstance(data, dict):
            raise fail("params", f"must be an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise fail(unknown[0], f"unknown field for task {cls.TASK!r} (known: {', '.join(sorted(names))})")
        hints = get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            kwargs[key] = coerce(key, value, hints[key])
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise fail(missing[0], "is required")
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Check `value` against a simple type hint (int, float, str, bool, Optional, list, tuple, dict)."""
    text = str(hint)
    optional = "None" in text or "Optional" in text
    if value is None:
        if optional:
            return None
        raise fail(name, "must not be null")
    base = text.replace("typing.", "").replace(" | None", "").replace("Optional[", "").rstrip("]") if optional else text
    base = {"<class 'tuple'>": "tuple", "<class 'list'>": "list", "<class 'dict'>": "dict"}.get(base, base)
    if hint is bool or base in ("bool", "<class 'bool'>"):
        if not isinstance(value, bool):
            raise fail(name, f"must be true or false, got {value!r}")
        return value
    if hint is int or base in ("int", "<class 'int'>"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(name, f"must be an integer, got {value!r}")
        return value
    if hint is float or base in ("float", "<class 'float'>"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(name, f"must be a number, got {value!r}")
        return float(value)
    if hint is str or base in ("str", "<class 'str'>"):
        if not isinstance(value, str):
            raise fail(name, f"must be a string, got {type(value).__name__}")
        return value
    if base.startswith(("tuple", "list")):
        if not isinstance(value, (list, tuple)):
            raise fail(name, f"must be a list, got {type(value).__name__}")
        return type(value)(value) if base.startswith("list") else tuple(value)
    if base.startswith("dict"):
        if not isinstance(value, dict):
            raise fail(name, f"must be an object, got {type(value).__name__}")
        return value
    return value
