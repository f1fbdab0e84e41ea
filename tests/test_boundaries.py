"""Import boundaries and wire safety, by AST scan and by importing the protocol with heavy modules blocked."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADDON_FORBIDDEN = ("torch", "diffusers", "transformers", "nvdiffrast", "tinycudann", "engine")
UNSAFE_MODULES = ("pickle", "cPickle", "_pickle", "marshal", "dill", "cloudpickle", "shelve", "joblib")
UNSAFE_CALLS = ("recv_pyobj", "send_pyobj", "recv_serialized", "send_serialized")


def _sources(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    return files


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Absolute module names imported by a file (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = list(path.relative_to(root).with_suffix("").parts)[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names += [(node.lineno, f"{module}.{alias.name}".lstrip(".")) for alias in node.names]
    return names


def test_engine_imports_only_the_protocol_from_the_addon():
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in _sources("engine")
        for line, name in _imports(p)
        if (name == "csd_blender" or name.startswith("csd_blender."))
        and not (name == "csd_blender.protocol" or name.startswith("csd_blender.protocol."))
    ]
    assert not bad, "\n".join(bad)


def test_addon_never_imports_torch_or_the_engine():
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in _sources("csd_blender")
        for line, name in _imports(p)
        if name.split(".")[0] in ADDON_FORBIDDEN
    ]
    assert not bad, "\n".join(bad)


def test_protocol_uses_the_standard_library_only():
    allowed = set(sys.stdlib_module_names) | {"csd_blender"}
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in sorted((ROOT / "csd_blender" / "protocol").rglob("*.py"))
        for line, name in _imports(p)
        if name and name.split(".")[0] not in allowed and name.split(".")[0] != "__future__"
    ]
    assert not bad, "\n".join(bad)


def test_protocol_imports_with_bpy_zmq_numpy_and_torch_blocked():
    code = textwrap.dedent("""
        import sys
        for name in ("bpy", "zmq", "numpy", "torch"):
            sys.modules[name] = None          # any import of them now raises ImportError
        import csd_blender.protocol as p
        from csd_blender.protocol import codec, params, limits, messages, errors
        from csd_blender.protocol.params import base, edit, generate, texture
        frames, header = codec.encode(p.Submit("texture", {"prompt": "x"},
                                               {"faces": p.Array("int32", (1, 3), bytes(12))}), token="t")
        _, msg = codec.decode(frames)
        assert msg.arrays["faces"].shape == (1, 3)
        assert not any(sys.modules.get(n) for n in ("bpy", "zmq", "numpy", "torch"))
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _unsafe_uses(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for line, name in _imports(path, root):
        if name.split(".")[0] in UNSAFE_MODULES:
            found.append(f"{line}: imports {name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        attr = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        kwargs = {k.arg: k.value for k in node.keywords}
        if attr in UNSAFE_CALLS:
            found.append(f"{node.lineno}: calls {attr}")
        if isinstance(kwargs.get("allow_pickle"), ast.Constant) and kwargs["allow_pickle"].value is True:
            found.append(f"{node.lineno}: allow_pickle=True")
        if (
            attr == "load"
            and isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "torch"
        ):
            safe = kwargs.get("weights_only")
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                found.append(f"{node.lineno}: torch.load without weights_only=True")
        if attr in ("eval", "exec") and isinstance(func, ast.Name):
            found.append(f"{node.lineno}: calls {attr}()")
    return found


@pytest.mark.parametrize("package", ["engine", "csd_blender"])
def test_no_pickle_or_unsafe_deserialisation(package):
    bad = [f"{p.relative_to(ROOT)}:{use}" for p in _sources(package) for use in _unsafe_uses(p)]
    assert not bad, "\n".join(bad)


def test_the_scanners_catch_what_they_look_for(tmp_path):
    sample = tmp_path / "engine" / "sub" / "probe.py"
    sample.parent.mkdir(parents=True)
    sample.write_text(
        "import pickle\nimport torch\ntorch.load('x')\nnp.load('y', allow_pickle=True)\n"
        "sock.recv_pyobj()\ntorch.load('z', weights_only=True)\nfrom ...csd_blender import client\n"
    )
    assert len(_unsafe_uses(sample, tmp_path)) == 4, _unsafe_uses(sample, tmp_path)
    assert (7, "csd_blender.client") in _imports(sample, tmp_path)


def test_protocol_task_and_guidance_names_match_the_engine_registries():
    from csd_blender.protocol.params import GUIDANCE_NAMES, TASK_NAMES
    from engine.tasks import load_registries
    from engine.registry import GUIDANCE, TASKS

    load_registries()  # what `python -m engine serve` registers

    assert sorted(TASK_NAMES) == TASKS.names()
    assert sorted(GUIDANCE_NAMES) == GUIDANCE.names()
