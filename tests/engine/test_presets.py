"""The shared preset table and toy vocabulary (csd_blender.protocol.presets) match what the engine uses."""
from __future__ import annotations

import json

import pytest
from paths import TOY_PRIOR

from csd_blender.protocol import presets


def test_engine_resolves_from_the_same_table():
    from engine.tasks import quality

    assert quality.QUALITY is presets.QUALITY and quality.quality_for("toy", "fast").steps == 150


@pytest.mark.skipif(not (TOY_PRIOR / "tokenizer" / "tokenizer.json").exists(), reason="toy prior not trained")
def test_toy_vocabulary_is_the_bundled_tokenizers():
    vocab = json.loads((TOY_PRIOR / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    words = {w for w in vocab if not w.startswith("[")}
    assert words == set(presets.TOY_VOCABULARY)
    assert presets.guess_family(str(TOY_PRIOR)) == "toy"


def test_family_guess_and_unknown_words(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderKL"]}))
    assert presets.guess_family(str(tmp_path)) == "sd"
    (tmp_path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    assert presets.guess_family(str(tmp_path)) == "if"
    assert presets.guess_family("DeepFloyd/IF-I-XL-v1.0") == "if"
    assert presets.guess_family("runwayml/stable-diffusion-v1-5") == "sd"
    assert presets.unknown_toy_words("a shiny Blue, sphere shiny") == ["shiny"]
