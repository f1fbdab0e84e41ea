"""Helpers of the batch tests: a small ball mesh and JSONL lines of very short toy texture jobs."""

from __future__ import annotations

import json
from pathlib import Path

# a texture job of about half a second on one CPU thread once the toy prior is loaded
SHORT = {"task": "texture", "prompt": "a red sphere", "steps": 3, "texture_size": 64, "quality": "fast",
         "batch_size": 1, "device": "cpu"}
PROMPTS = ("a red sphere", "a blue sphere", "a green sphere", "a yellow sphere", "a red striped sphere",
           "a blue striped sphere")


def ball(folder: Path) -> Path:
    """An icosphere (80 faces) as ball.obj in `folder`."""
    import trimesh

    path = folder / "ball.obj"
    if not path.exists():
        trimesh.creation.icosphere(subdivisions=1).export(path)
    return path


def write_batch(folder: Path, jobs: list[dict], name: str = "jobs.jsonl") -> Path:
    """Write `jobs` (each merged over SHORT, mesh ball.obj) as a JSONL file in `folder`."""
    ball(folder)
    path = folder / name
    path.write_text("".join(json.dumps({**SHORT, "mesh": "ball.obj", **job}) + "\n" for job in jobs),
                    encoding="utf-8")
    return path


def texture_hashes(out: Path) -> dict[str, str]:
    """job id -> the texture hash its job.json records, for every finished job under `out`."""
    return {p.parent.name: json.loads(p.read_text())["stats"]["texture_sha256"] for p in out.glob("*/job.json")}
