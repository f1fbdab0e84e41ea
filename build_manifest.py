"""The extension's blender_manifest.toml: load it, list its problems (required fields, versions, platforms,
permissions, wheels), validate it and write it back as TOML. Standard library only; used by build.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import tomllib

MANIFEST_PATH = Path(__file__).resolve().parent / "blender_manifest.toml"
KNOWN_PLATFORMS = ("windows-x64", "windows-arm64", "macos-x64", "macos-arm64", "linux-x64")
REQUIRED_FIELDS = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                   "blender_version_min", "license")
KNOWN_PERMISSIONS = ("files", "network", "clipboard", "camera", "microphone")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    """Parse the manifest TOML.

    Args:
        path: blender_manifest.toml.
    """
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"manifest not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path}: invalid TOML: {exc}") from None


def _short_sentence_problem(text: object, what: str) -> str | None:
    """The problem with a Blender 'short single sentence' (<= 64 chars, no end punctuation), or None."""
    if not isinstance(text, str) or not text.strip():
        return f"{what}: must be a non-empty string"
    if len(text) > 64:
        return f"{what}: is {len(text)} characters, the limit is 64"
    if not text[-1].isalnum() and text[-1] not in ")]\"'":
        return f"{what}: must not end with punctuation ({text[-1]!r})"
    return None


def _is_empty(value: object) -> bool:
    return value is None or value == "" or value == [] or value == {}


def manifest_problems(data: dict) -> list[str]:
    """Every rule of Blender's extension manifest that `data` breaks (empty list when valid).

    Args:
        data: the parsed manifest.
    """
    problems: list[str] = []
    for key in REQUIRED_FIELDS:
        if key not in data:
            problems.append(f"{key}: required field is missing")

    def walk(prefix: str, value: object) -> None:
        if _is_empty(value):
            problems.append(f"{prefix}: must not be empty (Blender rejects empty values)")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)

    for key, value in data.items():
        walk(key, value)

    if data.get("schema_version") not in (None, "1.0.0"):
        problems.append(f"schema_version: must be \"1.0.0\", got {data['schema_version']!r}")
    ext_id = data.get("id")
    if ext_id is not None and not (isinstance(ext_id, str) and ext_id.isidentifier()
                                   and not ext_id.startswith("_")):
        problems.append(f"id: must be a Python identifier, got {ext_id!r}")
    version = data.get("version")
    if version is not None and not (isinstance(version, str) and SEMVER.match(version)):
        problems.append(f"version: must follow semantic versioning (e.g. 0.1.0), got {version!r}")
    name = data.get("name")
    if isinstance(name, str) and "blender" in name.lower():
        problems.append(f"name: must not contain \"Blender\" (extensions platform terms 2.1), got {name!r}")
    if "tagline" in data:
        problem = _short_sentence_problem(data["tagline"], "tagline")
        if problem:
            problems.append(problem)
    if data.get("type") not in (None, "add-on", "theme"):
        problems.append(f"type: must be \"add-on\" or \"theme\", got {data['type']!r}")
    bmin = data.get("blender_version_min")
    if bmin is not None:
        match = isinstance(bmin, str) and re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", bmin)
        if not match:
            problems.append(f"blender_version_min: must be X.Y.Z, got {bmin!r}")
        elif tuple(int(g) for g in match.groups()) < (4, 2, 0):
            problems.append(f"blender_version_min: extensions need at least 4.2.0, got {bmin!r}")
    licenses = data.get("license")
    if licenses is not None:
        if not isinstance(licenses, list):
            problems.append("license: must be a list such as [\"SPDX:GPL-3.0-or-later\"]")
        else:
            for lic in licenses:
                if not (isinstance(lic, str) and lic.startswith("SPDX:") and len(lic) > 5):
                    problems.append("license: entries must be SPDX identifiers like "
                                    f"\"SPDX:GPL-3.0-or-later\", "
                                    f"got {lic!r}")
    for plat in data.get("platforms", []) or []:
        if plat not in KNOWN_PLATFORMS:
            problems.append(f"platforms: unknown platform {plat!r} (known: {', '.join(KNOWN_PLATFORMS)})")
    for wheel in data.get("wheels", []) or []:
        if not (isinstance(wheel, str) and wheel.startswith("./wheels/") and wheel.endswith(".whl")
                and "\\" not in wheel):
            problems.append(f"wheels: entries must be \"./wheels/<file>.whl\" with forward slashes, "
                            f"got {wheel!r}")
    permissions = data.get("permissions", {})
    if not isinstance(permissions, dict):
        problems.append("permissions: must be a table of permission = \"reason\"")
    else:
        for perm, reason in permissions.items():
            if perm not in KNOWN_PERMISSIONS:
                problems.append(f"permissions.{perm}: unknown permission "
                                f"(known: {', '.join(KNOWN_PERMISSIONS)})")
            problem = _short_sentence_problem(reason, f"permissions.{perm}")
            if problem:
                problems.append(problem)
    build = data.get("build", {})
    if isinstance(build, dict) and "generated" in build:
        problems.append("build.generated: is reserved for Blender's own builder")
    return problems


def validate_manifest(data: dict) -> None:
    """Raise BuildError listing every problem of the manifest.

    Args:
        data: the parsed manifest.
    """
    problems = manifest_problems(data)
    if problems:
        raise BuildError("blender_manifest.toml is invalid:\n  - " + "\n  - ".join(problems))


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "".join(f"  {_toml_value(v)},\n" for v in value) + "]"
    raise BuildError(f"cannot write {type(value).__name__} to TOML")


def render_manifest(data: dict) -> str:
    """Serialise a manifest dict (scalars, lists and nested tables) back to TOML.

    Args:
        data: the manifest.
    """
    lines: list[str] = []

    def emit(table: dict, prefix: str) -> None:
        for key, value in table.items():
            if not isinstance(value, dict):
                lines.append(f"{key} = {_toml_value(value)}")
        for key, value in table.items():
            if isinstance(value, dict):
                name = f"{prefix}.{key}" if prefix else key
                lines.append("")
                lines.append(f"[{name}]")
                emit(value, name)

    emit(data, "")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- wheels
