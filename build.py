#!/usr/bin/env python3
"""Build the Blender extension zip: manifest + csd_blender package at the zip root, pyzmq wheels in wheels/.

The zip also carries the engine as a wheel in engine_wheel/ (built here from this checkout), which the add-on's
Set Up Engine installs into a new Python environment, so the engine and the add-on always match. It is not
listed in the manifest's `wheels`: Blender must not install it into its own Python.

Usage:
    python build.py                         # all platforms -> dist/csd_blender-<version>.zip
    python build.py --platform linux-x64    # one platform  -> dist/csd_blender-<version>-linux_x64.zip
    python build.py --check                 # validate blender_manifest.toml only

Standard library + pip. Wheels are fetched with `pip download --only-binary=:all: --no-deps` once per
(Python version, platform) and kept in .wheels-cache/, so repeated builds run offline.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from build_manifest import MANIFEST_PATH, BuildError, load_manifest, render_manifest, validate_manifest

log = logging.getLogger("build")

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = ROOT / "csd_blender"
DEFAULT_CACHE = ROOT / ".wheels-cache"
DEFAULT_OUT = ROOT / "dist"

PYZMQ_VERSION = "27.1.0"
# Blender 4.2-5.0 bundle Python 3.11; Blender 5.1+ bundles Python 3.13.
PYTHON_VERSIONS = ("3.11", "3.13")
# Blender platform name -> pip --platform tag (pip also accepts older compatible tags for these).
PLATFORM_TAGS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_10_15_x86_64",
}
DEFAULT_EXCLUDES = ("__pycache__/", ".*", "*.zip")
# Always excluded from the zip, whatever the manifest says: dev files must never ship.
FORBIDDEN_PARTS = ("__pycache__", "tests", ".pytest_cache", ".git")
FORBIDDEN_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej", ".blend1")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheel(python_version: str, platform: str, cache_dir: Path = DEFAULT_CACHE,
                package: str = "pyzmq", version: str = PYZMQ_VERSION) -> Path:
    """The wheel of `package==version` for one Python version and Blender platform, from the cache or pip.

    Args:
        python_version: "3.11" or "3.13".
        platform: a key of PLATFORM_TAGS, e.g. "linux-x64".
        cache_dir: folder holding downloaded wheels and index.json.
        package, version: the pinned requirement.
    """
    if platform not in PLATFORM_TAGS:
        raise BuildError(f"--platform: unknown platform {platform!r} (known: {', '.join(PLATFORM_TAGS)})")
    cache_dir.mkdir(parents=True, exist_ok=True)
    index_path = cache_dir / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    key = f"{package}=={version}/{python_version}/{platform}"
    entry = index.get(key)
    if entry:
        cached = cache_dir / entry["file"]
        if cached.exists() and _sha256(cached) == entry["sha256"]:
            return cached
        log.warning("cached wheel %s is missing or corrupt; downloading again", entry["file"])
    with tempfile.TemporaryDirectory(prefix="wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--no-deps", "--implementation", "cp",
               "--python-version", python_version, "--platform", PLATFORM_TAGS[platform],
               "--dest", tmp, f"{package}=={version}"]
        log.info("downloading %s %s for Python %s on %s", package, version, python_version, platform)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise BuildError(f"pip download of {package}=={version} for Python {python_version} / {platform} "
                             f"failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        target = cache_dir / wheels[0].name
        shutil.copyfile(wheels[0], target)
    index[key] = {"file": target.name, "sha256": _sha256(target)}
    index_path.write_text(json.dumps(index, indent=1, sort_keys=True))
    return target


def collect_wheels(platforms: list[str], cache_dir: Path = DEFAULT_CACHE) -> list[Path]:
    """The distinct wheels needed for `platforms` x PYTHON_VERSIONS (a universal2 wheel serves both Macs).

    Args:
        platforms: Blender platform names.
        cache_dir: the wheel cache.
    """
    found: dict[str, Path] = {}
    for platform in platforms:
        for py in PYTHON_VERSIONS:
            wheel = fetch_wheel(py, platform, cache_dir)
            found[wheel.name] = wheel
    return [found[name] for name in sorted(found)]


# ---------------------------------------------------------------------------------------------- engine wheel
ENGINE_SOURCES = ("pyproject.toml", "README.md", "engine", "csd_blender")
ENGINE_WHEEL_DIR = "engine_wheel"


def build_engine_wheel(out_dir: Path, source: Path = ROOT) -> Path:
    """Build the engine's wheel (`csd_blender_engine-<version>-py3-none-any.whl`) from a clean copy of `source`.

    The copy keeps the checkout free of build/ and egg-info folders and leaves caches out of the wheel.

    Args:
        out_dir: where the wheel goes.
        source: the repository root (pyproject.toml, engine/, csd_blender/).
    """
    import importlib.util

    out_dir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    with tempfile.TemporaryDirectory(prefix="engine-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ENGINE_SOURCES:
            path = source / name
            if not path.exists():
                raise BuildError(f"engine wheel: {path} is missing")
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=ignore)
            else:
                shutil.copyfile(path, src / name)
        dest = Path(tmp) / "wheel"
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--wheel-dir", str(dest), str(src)]
        if importlib.util.find_spec("setuptools") is not None:
            cmd.insert(4, "--no-build-isolation")      # offline builds with the setuptools already here
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = sorted(dest.glob("csd_blender_engine-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise BuildError(f"engine wheel: pip wheel failed (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        target = out_dir / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return target


# ---------------------------------------------------------------------------------------------- files
def is_excluded(rel_path: str, patterns: tuple[str, ...] | list[str], is_dir: bool = False) -> bool:
    """Whether a path (relative, forward slashes) matches a gitignore-style exclude pattern.

    Args:
        rel_path: path relative to the package root.
        patterns: `[build] paths_exclude_pattern` entries ("dir/", "*.ext", "/anchored/path").
        is_dir: the path is a directory.
    """
    parts = rel_path.split("/")
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        if pat.startswith("/") or "/" in pat:
            anchored = pat.lstrip("/")
            if fnmatch.fnmatchcase(rel_path, anchored) and (is_dir or not dir_only):
                return True
            # a directory pattern also excludes everything inside it
            if any(fnmatch.fnmatchcase("/".join(parts[:i]), anchored) for i in range(1, len(parts))):
                return True
            continue
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if fnmatch.fnmatchcase(part, pat) and (not dir_only or not last or is_dir):
                return True
    return False


def package_files(package_dir: Path, patterns: list[str]) -> list[tuple[Path, str]]:
    """(file, name inside the zip) for every shipped file of the package, sorted.

    Args:
        package_dir: csd_blender/.
        patterns: exclude patterns (the manifest's plus Blender's defaults).
    """
    files = []
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir).as_posix()
        if path.is_dir() or is_excluded(rel, patterns):
            continue
        files.append((path, rel))
    return files


def zip_problems(names: list[str]) -> list[str]:
    """Dev files, caches or tests that must not be in the extension zip (empty list when clean).

    Args:
        names: the zip's member names.
    """
    problems = []
    for name in names:
        parts = name.rstrip("/").split("/")
        if any(p in FORBIDDEN_PARTS for p in parts) or name.endswith(FORBIDDEN_SUFFIXES) \
                or any(p.startswith(".") for p in parts):
            problems.append(name)
    if "blender_manifest.toml" not in names:
        problems.append("blender_manifest.toml missing at the zip root")
    if "__init__.py" not in names:
        problems.append("__init__.py missing at the zip root")
    return problems


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


# ---------------------------------------------------------------------------------------------- build
def build(platforms: list[str] | None = None, out_dir: Path = DEFAULT_OUT, cache_dir: Path = DEFAULT_CACHE,
          manifest_path: Path = MANIFEST_PATH, package_dir: Path = PACKAGE_DIR,
          engine_source: Path = ROOT) -> Path:
    """Validate the manifest, gather wheels, build the engine wheel and write the extension zip; return its path.

    Args:
        platforms: Blender platform names; None builds one zip for all of PLATFORM_TAGS.
        out_dir: where the zip goes.
        cache_dir: the wheel cache.
        manifest_path: the source manifest.
        package_dir: the add-on package (its __init__.py lands at the zip root).
        engine_source: the repository root the engine wheel is built from.
    """
    data = load_manifest(manifest_path)
    validate_manifest(data)
    split = platforms is not None
    platforms = list(platforms) if platforms else list(PLATFORM_TAGS)
    for plat in platforms:
        if plat not in PLATFORM_TAGS:
            raise BuildError(f"--platform: no wheels known for {plat!r} (known: {', '.join(PLATFORM_TAGS)})")
    if not (package_dir / "__init__.py").exists():
        raise BuildError(f"{package_dir}: not a package (no __init__.py)")

    wheels = collect_wheels(platforms, cache_dir)
    data = dict(data)
    data["wheels"] = [f"./wheels/{w.name}" for w in wheels]
    data["platforms"] = platforms
    validate_manifest(data)
    patterns = list(DEFAULT_EXCLUDES) + list(data.get("build", {}).get("paths_exclude_pattern", []))
    files = package_files(package_dir, patterns)
    if any(rel == "blender_manifest.toml" for _, rel in files):
        raise BuildError(f"{package_dir}/blender_manifest.toml: the manifest lives at the repository root")

    suffix = f"-{'-'.join(p.replace('-', '_') for p in platforms)}" if split else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="engine-wheel-out-") as wheel_tmp:
        engine_wheel = build_engine_wheel(Path(wheel_tmp), engine_source)
        engine_wheel_bytes = engine_wheel.read_bytes()
    out = out_dir / f"{data['id']}-{data['version']}{suffix}.zip"
    tmp = out.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w") as zf:
        _write(zf, "blender_manifest.toml", render_manifest(data).encode("utf-8"))
        for path, rel in files:
            _write(zf, rel, path.read_bytes())
        for wheel in wheels:
            _write(zf, f"wheels/{wheel.name}", wheel.read_bytes())
        _write(zf, f"{ENGINE_WHEEL_DIR}/{engine_wheel.name}", engine_wheel_bytes)
        names = zf.namelist()
    problems = zip_problems(names)
    if problems:
        tmp.unlink()
        raise BuildError("the zip would ship files it must not: " + ", ".join(problems))
    tmp.replace(out)
    log.info("wrote %s (%d files, %d wheels, %.1f MB)", out, len(names), len(wheels),
             out.stat().st_size / 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS),
                        help="build for this platform only (repeatable); default: one zip for all")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default dist/)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="wheel cache (default .wheels-cache/)")
    parser.add_argument("--check", action="store_true", help="validate the manifest and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.check:
            validate_manifest(load_manifest(MANIFEST_PATH))
            log.info("blender_manifest.toml is valid")
            return 0
        out = build(args.platform, args.out, args.cache, manifest_path=MANIFEST_PATH)
    except BuildError as exc:
        log.error("build failed: %s", exc)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
