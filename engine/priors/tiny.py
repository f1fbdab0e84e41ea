"""Tiny randomly initialised diffusers-layout models (SD, IF-style, toy-style, ControlNet) for tests and benchmarks.

Configs follow the small configs diffusers' own pipeline tests use (tests/pipelines/stable_diffusion,
tests/pipelines/deepfloyd_if, tests/pipelines/controlnet), shrunk further for two CPU cores. Nothing is downloaded:
the tokenizers are word-level `tokenizers` models wrapped in PreTrainedTokenizerFast.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def _write_index(folder: Path, class_name: str, components: dict[str, tuple[str, str]]) -> None:
    import diffusers

    index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__}
    index.update({k: list(v) for k, v in components.items()})
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


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

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = word_tokenizer()
    tiny_sd_unet().save_pretrained(folder / "unet")
    tiny_vae().save_pretrained(folder / "vae")
    tiny_clip_text_encoder(len(tok)).save_pretrained(folder / "text_encoder")
    tok.save_pretrained(folder / "tokenizer")
    sd_ddim_scheduler(prediction_type).save_pretrained(folder / "scheduler")
    _write_index(
        folder,
        "StableDiffusionPipeline",
        {
            "unet": ("diffusers", "UNet2DConditionModel"),
            "vae": ("diffusers", "AutoencoderKL"),
            "text_encoder": ("transformers", "CLIPTextModel"),
            "tokenizer": ("transformers", "CLIPTokenizer"),
            "scheduler": ("diffusers", "DDIMScheduler"),
        },
    )
    return folder


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

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = word_tokenizer(max_length=8, eos=True)
    T5EncoderModel(
        T5Config(
            vocab_size=len(tok),
            d_model=32,
            d_ff=64,
            d_kv=8,
            num_heads=4,
            num_layers=2,
            pad_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=0,
        )
    ).save_pretrained(folder / "text_encoder")
    tok.save_pretrained(folder / "tokenizer")
    UNet2DConditionModel(
        sample_size=16,
        in_channels=3,
        out_channels=6,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
        encoder_hid_dim=32,
        encoder_hid_dim_type="text_proj",
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        resnet_time_scale_shift="scale_shift",
        only_cross_attention=False,
    ).save_pretrained(folder / "unet")
    DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range").save_pretrained(
        folder / "scheduler"
    )
    _write_index(
        folder,
        "IFPipeline",
        {
            "unet": ("diffusers", "UNet2DConditionModel"),
            "text_encoder": ("transformers", "T5EncoderModel"),
            "tokenizer": ("transformers", "T5Tokenizer"),
            "scheduler": ("diffusers", "DDPMScheduler"),
            "vae": (None, None),
            "safety_checker": (None, None),
            "feature_extractor": (None, None),
            "watermarker": (None, None),
        },
    )
    return folder


def save_tiny_toy(folder: Path, seed: int = 0) -> Path:
    """A toy-prior-layout folder (CSDToyPipeline: 32×32 pixel UNet, CLIP text encoder, word-level tokenizer).

    Args:
        folder: destination (created).
        seed: torch seed.
    """
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = word_tokenizer()
    tiny_clip_text_encoder(len(tok)).save_pretrained(folder / "text_encoder")
    tok.save_pretrained(folder / "tokenizer")
    UNet2DConditionModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    ).save_pretrained(folder / "unet")
    DDPMScheduler(beta_schedule="squaredcos_cap_v2").save_pretrained(folder / "scheduler")
    _write_index(
        folder,
        "CSDToyPipeline",
        {
            "unet": ("diffusers", "UNet2DConditionModel"),
            "text_encoder": ("transformers", "CLIPTextModel"),
            "tokenizer": ("transformers", "PreTrainedTokenizerFast"),
            "scheduler": ("diffusers", "DDPMScheduler"),
        },
    )
    return folder
