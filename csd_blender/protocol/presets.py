"""Quality presets per prior family and the toy prior's vocabulary: one table for the engine and the add-on.

Standard library only. The engine resolves a job's `None` steps / batch size / texture size from `QUALITY`
(engine.tasks.quality re-exports it); the add-on shows the same resolved values next to its "Auto" fields.
Families: "toy" (the bundled 32×32 prior, CPU minutes), "if" (DeepFloyd IF stage I, 64×64 pixels) and "sd"
(Stable Diffusion latent priors at 512×512). The real-model figures follow the official CSD runs (10 000 steps
at batch 1-4) scaled down for texturing a fixed mesh, where only the colour field is optimised.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

TOY_PIPELINE_CLASS = "CSDToyPipeline"     # model_index.json "_class_name" of toy-layout priors

# The words the bundled toy prior was trained on ("a {colour} {pattern} {shape}"); a test checks them against
# engine/assets/toy_prior/tokenizer. Other words are refused by the engine with bad_prompt.
TOY_COLOURS = ("black", "blue", "green", "orange", "purple", "red", "white", "yellow")
TOY_PATTERNS = ("checkered", "dotted", "plain", "striped")
TOY_SHAPES = ("capsule", "cone", "cube", "cylinder", "sphere", "torus")
TOY_VOCABULARY = ("a", *TOY_COLOURS, *TOY_PATTERNS, *TOY_SHAPES)


@dataclass(frozen=True)
class Quality:
    """Resolved defaults of one preset.

    Attributes:
        steps: optimisation steps.
        batch_size: views per step.
        texture_size: baked texture edge in texels.
        max_resolution: finest hash-grid resolution of the texture field.
        log2_hashmap_size: hash-table size of the texture field.
    """

    steps: int
    batch_size: int
    texture_size: int
    max_resolution: int
    log2_hashmap_size: int


QUALITY: dict[str, dict[str, Quality]] = {
    "toy": {
        "fast": Quality(150, 4, 256, 128, 14),
        "balanced": Quality(300, 4, 512, 256, 15),
        "best": Quality(600, 8, 1024, 256, 16),
    },
    "if": {
        "fast": Quality(1500, 4, 1024, 1024, 18),
        "balanced": Quality(3000, 4, 1024, 2048, 19),
        "best": Quality(6000, 8, 2048, 2048, 19),
    },
    "sd": {
        "fast": Quality(800, 1, 1024, 2048, 19),
        "balanced": Quality(2000, 2, 1024, 2048, 19),
        "best": Quality(5000, 4, 2048, 4096, 19),
    },
}


def quality_for(family: str, preset: str) -> Quality:
    """The preset's defaults for a prior family ("toy", "if", "sd"; unknown families use "sd").

    Args:
        family: the prior's family attribute.
        preset: "fast", "balanced" or "best".
    """
    return QUALITY.get(family, QUALITY["sd"])[preset]


def guess_family(model: str) -> str:
    """The prior family a model name will load as, without loading it ("toy", "if" or "sd").

    A local folder is judged by its model_index.json as the engine's loader does (toy pipeline class → "toy",
    a VAE → "sd", else "if"); a hub id by its name (DeepFloyd IF ids → "if", others "sd").

    Args:
        model: "toy", a hub id or a local diffusers folder.
    """
    model = model.strip()
    if model == "toy":
        return "toy"
    index_path = os.path.join(model, "model_index.json")
    if os.path.isfile(index_path):
        try:
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
        except (OSError, ValueError):
            return "sd"
        if index.get("_class_name") == TOY_PIPELINE_CLASS:
            return "toy"
        return "sd" if index.get("vae") and index["vae"][1] else "if"
    lower = model.lower()
    return "if" if "deepfloyd" in lower or "/if-" in lower else "sd"


def unknown_toy_words(prompt: str) -> list[str]:
    """Words of `prompt` the toy prior does not know (lower-cased, in order, without repeats).

    Args:
        prompt: a prompt for the toy model.
    """
    out: list[str] = []
    for word in prompt.lower().replace(",", " ").split():
        if word not in TOY_VOCABULARY and word not in out:
            out.append(word)
    return out
