"""Tiny randomly initialised diffusers-layout models (SD, IF-style, toy-style, ControlNet) for tests and benchmarks.

Configs follow the small configs diffusers' own pipeline tests use (tests/pipelines/stable_diffusion,
tests/pipelines/deepfloyd_if, tests/pipelines/controlnet), shrunk further for two CPU cores. Nothing is downloaded:
the tokenizers are word-level `tokenizers` models wrapped in PreTrainedTokenizerFast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TINY_WORDS = (
    "a",
    "an",
    "photo",
    "of",
    "red",
    "green",
    "blue",
    "grey",
    "striped",
    "plain",
    "sphere",
    "cube",
    "dog",
    "cat",
    "ugly",
    "noisy",
    ",",          # view-dependent prompts: "a red sphere, front view"
    "front",
    "side",
    "back",
    "overhead",
    "view",
)


def word_tokenizer(words: tuple[str, ...] = TINY_WORDS, max_length: int = 8, eos: bool = False):
    """A lower-casing word-level PreTrainedTokenizerFast over `words` ([PAD]=0, [UNK]=1, optional [EOS]=2).

    Args:
        words: the vocabulary.
        max_length: model_max_length (prompts are padded/truncated to it).
        eos: add an [EOS] token after each prompt (T5-style).
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[EOS]"]
    vocab = {w: i for i, w in enumerate([*special, *words])}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    kwargs = {}
    if eos:
        tok.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", 2)])
        kwargs["eos_token"] = "[EOS]"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=max_length, pad_token="[PAD]", unk_token="[UNK]", **kwargs
    )


Component = tuple[Callable[[], Any] | None, tuple[str | None, str | None]]


def save_pipeline_folder(folder: Path, class_name: str, seed: int, components: dict[str, Component]) -> Path:
    """Build and save each component in order (seeded), then write `model_index.json`: the diffusers layout.

    Args:
        folder: destination (created).
        class_name: the pipeline class `model_index.json` names.
        seed: torch seed, set before the first component is built.
        components: name -> (a function building an object with `save_pretrained`, or None for an empty slot;
            (library, class) for the index).
    """
    import diffusers

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (build, _) in components.items():
        if build is not None:
            build().save_pretrained(folder / name)
    index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__}
    index.update({name: list(entry) for name, (_, entry) in components.items()})
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder


def tiny_clip_text_encoder(vocab_size: int, hidden: int = 32, max_positions: int = 8):
    """A 2-layer CLIPTextModel (hidden `hidden`)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=max_positions,
            pad_token_id=0,
            bos_token_id=0,
            eos_token_id=2,
        )
    )


def tiny_sd_unet(cross_dim: int = 32, sample_size: int = 8):
    """A 4-channel latent UNet2DConditionModel with one cross-attention block per resolution side."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def tiny_vae():
    """A 2-level AutoencoderKL (downsampling factor 2, 4 latent channels)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=16,
    )


def sd_ddim_scheduler(prediction_type: str = "epsilon"):
    """Stable Diffusion 1.x / 2.x's DDIM scheduler settings (scaled-linear betas 0.00085 → 0.012).

    Args:
        prediction_type: "epsilon" (SD 1.5, 2.1-base) or "v_prediction" (SD 2.1 768).
    """
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, prediction_type=prediction_type)


def save_tiny_sd(folder: Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """A tiny Stable-Diffusion-layout folder (unet, vae, CLIP text encoder, tokenizer, DDIM scheduler).

    Args:
        folder: destination (created).
        prediction_type: "epsilon" or "v_prediction" (written into the scheduler config).
        seed: torch seed for the random weights.
    """
    tok = word_tokenizer()
    return save_pipeline_folder(folder, "StableDiffusionPipeline", seed, {
        "unet": (tiny_sd_unet, ("diffusers", "UNet2DConditionModel")),
        "vae": (tiny_vae, ("diffusers", "AutoencoderKL")),
        "text_encoder": (lambda: tiny_clip_text_encoder(len(tok)), ("transformers", "CLIPTextModel")),
        "tokenizer": (lambda: tok, ("transformers", "CLIPTokenizer")),
        "scheduler": (lambda: sd_ddim_scheduler(prediction_type), ("diffusers", "DDIMScheduler")),
    })


def save_tiny_taesd(folder: Path, seed: int = 2) -> Path:
    """A tiny AutoencoderTiny (TAESD layout) matching the tiny SD VAE: downsampling 2, 4 latent channels.

    Args:
        folder: destination (created; the model files sit at its top, as in madebyollin/taesd).
        seed: torch seed for the random weights.
    """
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    folder = Path(folder)
    AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                    num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4,
                    upsampling_scaling_factor=2).save_pretrained(folder)
    return folder


def save_tiny_controlnet(sd_folder: Path, out: Path, seed: int = 1) -> Path:
    """A ControlNetModel made from the tiny SD UNet (`ControlNetModel.from_unet`), with random zero-conv weights.

    The conditioning embedding downsamples by 2, matching the tiny VAE. Zero convolutions are re-initialised
    randomly so the residuals are not all zero (as after training).

    Args:
        sd_folder: a folder from `save_tiny_sd`.
        out: destination folder.
        seed: torch seed.
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(Path(sd_folder) / "unet")
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if (
                "zero_conv" in name
                or "controlnet_down_blocks" in name
                or "controlnet_mid_block" in name
                or "conv_out" in name
            ):
                p.normal_(0, 0.05)
    net.save_pretrained(out)
    return Path(out)


def save_tiny_if(folder: Path, seed: int = 0) -> Path:
    """A tiny DeepFloyd-IF-stage-I-layout folder: 3→6-channel pixel UNet with a T5 text projection, T5 encoder.

    Args:
        folder: destination (created).
        seed: torch seed.
    """
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    tok = word_tokenizer(max_length=8, eos=True)
    t5 = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, pad_token_id=0,
                  eos_token_id=2, decoder_start_token_id=0)
    unet = dict(
        sample_size=16, in_channels=3, out_channels=6, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=16, attention_head_dim=4,
        norm_num_groups=8, encoder_hid_dim=32, encoder_hid_dim_type="text_proj", addition_embed_type="text",
        addition_embed_type_num_heads=2, resnet_time_scale_shift="scale_shift", only_cross_attention=False,
    )
    empty = (None, (None, None))
    return save_pipeline_folder(folder, "IFPipeline", seed, {
        "text_encoder": (lambda: T5EncoderModel(t5), ("transformers", "T5EncoderModel")),
        "tokenizer": (lambda: tok, ("transformers", "T5Tokenizer")),
        "unet": (lambda: UNet2DConditionModel(**unet), ("diffusers", "UNet2DConditionModel")),
        "scheduler": (lambda: DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range"),
                      ("diffusers", "DDPMScheduler")),
        "vae": empty, "safety_checker": empty, "feature_extractor": empty, "watermarker": empty,
    })


def toy_unet(width: int = 16, heads: int = 4):
    """A 32×32 pixel UNet in the toy prior's layout; `width` is the first block's channels (the second's twice)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(width, 2 * width),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=heads, norm_num_groups=min(32, width // 2),
    )


def save_tiny_toy(folder: Path, seed: int = 0, width: int = 16) -> Path:
    """A toy-prior-layout folder (CSDToyPipeline: 32×32 pixel UNet, CLIP text encoder, word-level tokenizer).

    Args:
        folder: destination (created).
        seed: torch seed.
        width: the UNet's first block's channels (16: tiny; 128: a 15 M-parameter UNet).
    """
    from diffusers import DDPMScheduler

    tok = word_tokenizer()
    return save_pipeline_folder(folder, "CSDToyPipeline", seed, {
        "text_encoder": (lambda: tiny_clip_text_encoder(len(tok)), ("transformers", "CLIPTextModel")),
        "tokenizer": (lambda: tok, ("transformers", "PreTrainedTokenizerFast")),
        "unet": (lambda: toy_unet(width, heads=4 if width <= 16 else 8), ("diffusers", "UNet2DConditionModel")),
        "scheduler": (lambda: DDPMScheduler(beta_schedule="squaredcos_cap_v2"), ("diffusers", "DDPMScheduler")),
    })
