"""The recommended models and the `python -m engine models` JSON lines: shared by the engine and the add-on.

Standard library only. The add-on's Models panel runs `python -m engine models list --json` and
`python -m engine models download ID --json` in the engine's environment (Blender's Python has no huggingface_hub)
and reads one JSON object per line:

- list: `{"event": "model", "id", "label", "role", "present", "bytes_on_disk", "estimate_bytes", "gated", ...}`
- download: `{"event": "progress", "id", "file", "done", "total"}` (bytes, all files), then
  `{"event": "done", "id", "path", "bytes_on_disk"}` or `{"event": "error", "id", "code", "message"}`.

Codes of a failed download: "gated" (a licence to accept and a token to give), "not_found", "network", "disk",
"cancelled", "error".
"""
from __future__ import annotations

from dataclasses import dataclass

GB = 1_000_000_000
TOKEN_PAGE = "https://huggingface.co/settings/tokens"
TOKEN_FIELD = "Preferences › Add-ons › CSD for Blender › Models › Hub Token"
MODELS_PANEL = "Preferences › Add-ons › CSD for Blender › Models"


@dataclass(frozen=True)
class ModelEntry:
    """A model the add-on recommends.

    Attributes:
        id: hub id.
        label: what the panel shows.
        role: "prior" (a diffusion model), "controlnet" or "encoder" (the tiny autoencoder).
        estimate_bytes: approximate download size of the files the engine needs (fp16 weights and configs).
        gated: the hub asks for a licence to be accepted (and a token) before it serves the files.
        licence_url: the page to accept the licence on (gated models), else the model's page.
        use: how a job uses it (CLI options).
    """

    id: str
    label: str
    role: str
    estimate_bytes: int
    gated: bool = False
    licence_url: str = ""
    use: str = ""

    @property
    def page(self) -> str:
        return self.licence_url or f"https://huggingface.co/{self.id}"


RECOMMENDED: tuple[ModelEntry, ...] = (
    ModelEntry("stable-diffusion-v1-5/stable-diffusion-v1-5", "Stable Diffusion 1.5", "prior", int(2.2 * GB),
               use="--model ID --controlnet depth"),
    ModelEntry("lllyasviel/control_v11f1p_sd15_depth", "ControlNet depth (SD 1.5)", "controlnet", int(0.73 * GB),
               use="--controlnet depth"),
    ModelEntry("lllyasviel/control_v11p_sd15_normalbae", "ControlNet normal (SD 1.5)", "controlnet",
               int(0.73 * GB), use="--controlnet normal"),
    ModelEntry("lllyasviel/control_v11p_sd15_canny", "ControlNet canny (SD 1.5)", "controlnet", int(0.73 * GB),
               use="--controlnet canny"),
    ModelEntry("stabilityai/stable-diffusion-2-1-base", "Stable Diffusion 2.1 base", "prior", int(2.6 * GB),
               use="--model ID"),
    ModelEntry("DeepFloyd/IF-I-XL-v1.0", "DeepFloyd IF stage I (XL)", "prior", int(19 * GB), gated=True,
               licence_url="https://huggingface.co/DeepFloyd/IF-I-XL-v1.0", use="--model ID (text to mesh)"),
    ModelEntry("madebyollin/taesd", "Tiny autoencoder (TAESD)", "encoder", 10_000_000,
               use="tiny_vae=madebyollin/taesd (faster SD steps)"),
)
# the ControlNet a bare kind ("depth") means (engine/priors/controlnet.py loads these)
DEFAULT_CONTROLNET_IDS = {
    "depth": "lllyasviel/control_v11f1p_sd15_depth",
    "normal": "lllyasviel/control_v11p_sd15_normalbae",
    "canny": "lllyasviel/control_v11p_sd15_canny",
}
# ids the engine's older docs used, and the id a job may name for the same weights
ALIASES = {"runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5"}


def find_entry(model_id: str) -> ModelEntry | None:
    """The recommended entry of a hub id (aliases resolved), or None."""
    model_id = ALIASES.get(model_id, model_id)
    return next((e for e in RECOMMENDED if e.id == model_id), None)


def gated_message(model_id: str) -> str:
    """What to do when the hub refuses a gated model: the licence page and where the token goes."""
    entry = find_entry(model_id)
    page = entry.page if entry else f"https://huggingface.co/{model_id}"
    return (f"{model_id} is gated: sign in and accept its licence at {page}, create a read token at {TOKEN_PAGE} "
            f"and paste it into {TOKEN_FIELD} (command line: --token or HF_TOKEN), then download again")


def missing_message(model_id: str) -> str:
    """What a job says when its model is not on this machine: where to download it (never inside the job)."""
    return (f"model {model_id!r} is not downloaded on the engine's machine: download it in {MODELS_PANEL} or run "
            f"`python -m engine models download {model_id}`; an offline machine can use a copied models folder "
            f"(the Models Folder setting, or --models-dir / HF_HOME) or a local diffusers folder as the model")


def human_bytes(n: float) -> str:
    """1234567 -> "1.2 MB" (decimal units, as the hub shows sizes)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover
