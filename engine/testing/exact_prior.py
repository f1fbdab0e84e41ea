"""An exact prior: the closed-form denoiser of a finite set of reference renders, behind the normal Prior interface.

A test fixture with a known right answer for text to mesh (issue 21), not a product feature. For a batch of cameras
it renders K reference shapes (by default the toy's cube, sphere, cone and torus: `engine.toy.dataset.primitive`,
centred, longest side 1, Z up, one flat colour over one background) from those same cameras, and returns the
*exact* noise prediction of that finite data set. With ᾱ = ᾱ_t, σ² = 1 − ᾱ_t and the references x_k:

    ε̂(x_t, "a k") = (x_t − √ᾱ·x_k) / σ                                          (one image: the conditional)
    ε̂(x_t, "")    = Σ_k w_k (x_t − √ᾱ·x_k) / σ,  w_k ∝ exp(−‖x_t − √ᾱ·x_k‖² / 2σ²)   (the mixture's posterior)

so ε(y) − ε(∅) = −(√ᾱ/σ)·(x_k − Σ_j w_j x_j) is the true classifier score of a known distribution, and CSD, SDS,
Perp-Neg and every stage of generate have a right answer to reach.

Prompts. `encode_prompts` gives each prompt a (1, 1, K) vector of prior weights over the shapes: one-hot for a
prompt that names one shape word (every other word, view words and artefact words included, is ignored), zeros for
a prompt that names none ("", the official negative prompt), which means "the uniform mixture". `predict_noise`
reads any non-negative vector e as the prior p(k) ∝ e_k (uniform when e = 0), so interpolated embeddings (Perp-Neg's
view interpolation of "a cube, front view" and "a cube, side view") stay "a cube", and the one formula
ε̂ = Σ_k p(k | x_t, e)·(x_t − √ᾱ x_k)/σ, p(k | x_t, e) ∝ e_k·exp(−‖x_t − √ᾱ x_k‖²/2σ²), covers both branches above.

Cameras. A real prior never needs the cameras, so `Prior` has no place for them and this fixture does not add one
to the interface. Instead it *observes* the batch: `observe(cameras)` sets the cameras the next `predict_noise`
calls refer to, and the context manager `watching()` wraps the task's camera source (by default
`ViewSampler.sample`, where every coarse and refine batch of every task comes from) so that each batch it hands the
task is observed on its way out. A task samples a batch, renders it and calls the prior once for it (all guidance
branches stacked branch-major: sample n of the call is camera n mod B), so the last observed batch is the one being
denoised; a call whose size is not a multiple of that batch, or a resolution that is not the prior's, is an error,
never a silent guess. The test (or benchmark) owns the choice: `with prior.watching(): run_generate(job,
prior=prior)`; task code is not touched and cannot tell this prior from a learned one.

Framing. The references use the toy data's framing: the object fills [-0.5, 0.5]^3 at scale 1, no spin (the cube
is axis-aligned), rendered at 2× and averaged down (as the toy's dataset), then resized bilinearly to the prior's
resolution exactly as `Prior.signed_image` resizes a render. Each shape is seen in two looks, both images of its
class (the sums over k above run over every look of every shape): flat, one colour for every shape (`colour`, a
mid grey) over one background (`background`, white), so the flat references differ only where their silhouettes
do; and as a geometry batch of text to mesh shows it (`generate_shading.geometry_colour`: on the toy path grey
Lambertian shading lit from the camera, else the normal map), so geometry batches are in the data set too.
Without the second look a shaded render is pulled towards a flat colour at random normals, which the exact prior
turned into a 364-face fragment (issue 21's notes).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import EngineError, ErrorCode
from ..priors.base import Prior
from ..render.cameras import Cameras
from ..render.rasterize import rasterize
from ..toy.dataset import primitive

logger = logging.getLogger(__name__)

SHAPES = ("cube", "sphere", "cone", "torus")


def cosine_alphas_cumprod(steps: int = 1000) -> Tensor:
    """ᾱ_t of the toy prior's DDPM scheduler (`squaredcos_cap_v2`, betas capped at 0.999), float32 (T,)."""
    import math

    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = torch.tensor([min(1 - f((i + 1) / steps) / f(i / steps), 0.999) for i in range(steps)],
                         dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0).float()


class ExactPrior(Prior):
    """The exact denoiser of K reference shapes seen from the observed cameras (module docstring).

    Args:
        shapes: the reference shapes (names `engine.toy.dataset.primitive` knows), in embedding order.
        family: the family the tasks see ("toy": the toy path, its presets and shading; "if": the real-prior path).
        resolution: model-space size (the toy prior's 32 by default).
        colour: RGB in [0, 1] of every reference object (flat, unlit).
        background: RGB in [0, 1] of every reference background.
        supersample: references are rasterized at this multiple of the camera size and averaged down.
        geometry_looks: each shape is also seen as a geometry batch shows it (the toy family: grey Lambertian
            shading lit from the camera; others: the normal map), a second image of the same class.
        device: where tensors live.
    """

    latent = False

    def __init__(
        self,
        shapes: Sequence[str] = SHAPES,
        *,
        family: str = "toy",
        resolution: int = 32,
        colour: Sequence[float] = (0.45, 0.45, 0.45),
        background: Sequence[float] = (1.0, 1.0, 1.0),
        supersample: int = 2,
        geometry_looks: bool = True,
        device: torch.device | str = "cpu",
    ):
        # no UNet, scheduler or text encoder: Prior.__init__ is not called, its attributes are set here
        self.name = f"exact:{'/'.join(shapes)}"
        self.family = family
        self.shapes = tuple(shapes)
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.resolution = int(resolution)
        self.channels = 3
        self.alphas_cumprod = cosine_alphas_cumprod().to(self.device)
        self.num_train_timesteps = len(self.alphas_cumprod)
        self.prediction_type = "epsilon"
        self.colour = torch.tensor(colour, dtype=torch.float32)
        self.background = torch.tensor(background, dtype=torch.float32)
        self.supersample = int(supersample)
        self.looks = ("flat", "geometry") if geometry_looks else ("flat",)
        self._meshes = []
        for shape in self.shapes:
            mesh = primitive(shape)
            self._meshes.append((torch.tensor(mesh.vertices, dtype=torch.float32),
                                 torch.tensor(mesh.faces, dtype=torch.int32),
                                 torch.tensor(mesh.face_normals, dtype=torch.float32)))
        self.cameras: Cameras | None = None
        self._references: Tensor | None = None
        self.calls = 0

    # --- cameras -------------------------------------------------------------------------------------------------

    def observe(self, cameras: Cameras) -> None:
        """The cameras of the batch the next `predict_noise` calls denoise (their references are rendered lazily)."""
        self.cameras = cameras
        self._references = None

    @contextlib.contextmanager
    def watching(self, owner: type | None = None, method: str = "sample") -> Iterator[ExactPrior]:
        """While active, every Cameras batch `owner.method` returns is observed (default: `ViewSampler.sample`).

        Args:
            owner: the class (or module) whose method hands out the task's training cameras.
            method: its name.
        """
        if owner is None:
            from ..tasks.common.views import ViewSampler

            owner = ViewSampler
        original = getattr(owner, method)
        prior = self

        def observed(*args, **kwargs):
            cams = original(*args, **kwargs)
            prior.observe(cams)
            return cams

        setattr(owner, method, observed)
        try:
            yield self
        finally:
            setattr(owner, method, original)

    def render_references(self, cameras: Cameras) -> Tensor:
        """(K, L, B, 3, R, R) references in [−1, 1] (model space) of every shape in every look from `cameras`."""
        from ..tasks.generate_shading import geometry_colour

        s = self.supersample
        cams = cameras.to("cpu").rescaled(cameras.width * s, cameras.height * s)
        clip = cams.world_to_clip().float()
        light = F.normalize(cams.c2w[:, :3, 3].float(), dim=-1)
        out = []
        for verts, faces, normals in self._meshes:
            pos = torch.einsum("bij,vj->bvi", clip, F.pad(verts, (0, 1), value=1.0))
            rast = rasterize(pos.contiguous(), faces, (cams.height, cams.width), backend="torch")
            tri = rast[..., 3].long()
            mask = (tri > 0).float()[..., None]
            looks = []
            for look in self.looks:
                if look == "flat":
                    fg = self.colour.expand(*mask.shape[:-1], 3)
                else:
                    fg = geometry_colour(normals[(tri - 1).clamp(min=0)], light, self.family == "toy")
                img = (fg * mask + self.background * (1 - mask)).permute(0, 3, 1, 2)
                if s > 1:
                    img = F.avg_pool2d(img, s)
                img = img * 2.0 - 1.0
                if img.shape[-2:] != (self.resolution, self.resolution):
                    img = F.interpolate(img, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
                looks.append(img)
            out.append(torch.stack(looks))
        return torch.stack(out).to(self.device)

    @property
    def references(self) -> Tensor:
        """(K, L, B, 3, R, R) references of the observed cameras (L looks per shape)."""
        if self.cameras is None:
            raise EngineError(ErrorCode.INTERNAL, "ExactPrior: no cameras observed (use `watching()` or `observe`)")
        if self._references is None:
            self._references = self.render_references(self.cameras)
        return self._references

    # --- the Prior interface -------------------------------------------------------------------------------------

    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """(N, 1, K) prior weights over the shapes: one-hot per named shape word, zeros (= the mixture) for none."""
        out = torch.zeros(len(prompts), 1, len(self.shapes), device=self.device)
        for i, prompt in enumerate(prompts):
            words = prompt.lower().replace(",", " ").split()
            for k, shape in enumerate(self.shapes):
                if shape in words:
                    out[i, 0, k] = 1.0
        return out

    def shape_of(self, embedding: Tensor) -> str | None:
        """The shape an embedding (1, K) names, or None for the mixture (tests and logs)."""
        e = embedding.reshape(-1)
        return self.shapes[int(e.argmax())] if float(e.max()) > 0 else None

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, H, W) in [0, 1] → (B, 3, R, R) in [−1, 1], differentiable (the pixel priors' mapping)."""
        return self.signed_image(rgb).float()

    def decode(self, x: Tensor) -> Tensor:
        """(B, 3, R, R) in [−1, 1] → RGB in [0, 1]."""
        return ((x.detach().float() + 1.0) / 2.0).clamp(0, 1)

    @torch.no_grad()
    def predict_noise(
        self, x_t: Tensor, t: Tensor, embeddings: Tensor, control: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """The exact ε̂ (N, 3, R, R) of the observed batch's references (module docstring).

        Args:
            x_t: (N, 3, R, R), N = branches × B, branch-major.
            t: (N,) timesteps.
            embeddings: (N, 1, K) prior weights over the shapes (`encode_prompts`, or interpolations of them).
            control: not supported (no ControlNets).
        """
        self._check_inputs(x_t, t, embeddings)
        if control:
            raise EngineError(ErrorCode.INTERNAL, "ExactPrior has no ControlNets")
        refs = self.references                                   # (K, L, B, 3, R, R)
        k, n_looks, b = refs.shape[:3]
        n = x_t.shape[0]
        if n % b or x_t.shape[-2:] != refs.shape[-2:]:
            raise EngineError(
                ErrorCode.INTERNAL,
                f"ExactPrior: a call of {tuple(x_t.shape)} does not fit the observed batch of {b} cameras at "
                f"{tuple(refs.shape[-2:])}",
            )
        e = embeddings.reshape(n, -1).to(self.device).float().clamp_min(0.0)
        if e.shape[1] != k:
            raise EngineError(ErrorCode.INTERNAL, f"ExactPrior: embeddings of {e.shape[1]} shapes, expected {k}")
        self.calls += 1
        x_t = x_t.to(self.device).float()
        # (N, K·L, 3, R, R): sample n ↔ camera n mod B; every look of a shape is an image of its class
        x0 = refs.flatten(0, 1).repeat(1, n // b, 1, 1, 1).transpose(0, 1)
        a = self.alphas_cumprod[t.to(self.device)].view(n, 1, 1, 1, 1)
        sigma = (1.0 - a).sqrt()
        eps_k = (x_t[:, None] - a.sqrt() * x0) / sigma           # (N, K·L, 3, R, R)
        log_lik = -0.5 * eps_k.pow(2).flatten(2).sum(-1)          # −‖x_t − √ᾱ x_k‖² / 2σ²
        uniform = e.sum(1, keepdim=True) <= 0
        e = torch.where(uniform, torch.ones_like(e), e).repeat_interleave(n_looks, dim=1)
        log_post = log_lik + torch.log(e.clamp_min(1e-30)) + torch.where(e > 0, 0.0, -torch.inf)
        w = torch.softmax(log_post, dim=1)                        # (N, K·L)
        return (w[..., None, None, None] * eps_k).sum(1)

# --- measuring a generated mesh against the references --------------------------------------------------------

def silhouettes(vertices, faces, size: int = 64, views: int = 8) -> Tensor:
    """(views, size, size) bool masks of a mesh, normalised into [-0.5, 0.5]^3, from the turntable cameras
    (`fixed_views`: elevation 15°, distance 2.2, azimuth 0 = front), as the generate tests compare silhouettes.

    Args:
        vertices: (V, 3) array-like; faces: (F, 3) array-like.
        size: mask edge in pixels; views: turntable views.
    """
    import numpy as np

    from ..mesh import Mesh, normalize
    from ..render.surface import hit_surface
    from ..tasks.common.views import fixed_views

    mesh_n, _ = normalize(Mesh(np.asarray(vertices, np.float32), np.asarray(faces, np.int64)))
    with torch.no_grad():
        hits = hit_surface(fixed_views(views, size), torch.tensor(mesh_n.vertices),
                           torch.tensor(mesh_n.faces, dtype=torch.int32))
    return hits.mask


def reference_silhouettes(shape: str, size: int = 64, views: int = 8) -> Tensor:
    """`silhouettes` of the reference primitive `shape` (no spin: the exact prior's framing)."""
    mesh = primitive(shape)
    return silhouettes(mesh.vertices, mesh.faces, size, views)


def silhouette_iou(a: Tensor, b: Tensor) -> float:
    """Intersection over union of two stacks of bool masks (all views pooled)."""
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def shape_ious(vertices, faces, shapes: Sequence[str] = SHAPES, size: int = 64) -> dict[str, float]:
    """{shape: 8-view silhouette IoU of the mesh with that reference}."""
    sil = silhouettes(vertices, faces, size)
    return {s: silhouette_iou(sil, reference_silhouettes(s, size)) for s in shapes}
