"""ControlNet conditioning for Stable Diffusion 1.5: several nets, each with its own scale; torch Canny edges."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from csd_blender.protocol.errors import ProtocolError
from csd_blender.protocol.models import DEFAULT_CONTROLNET_IDS

from ..errors import EngineError, ErrorCode, RequestError

logger = logging.getLogger(__name__)
__all__ = ["DEFAULT_CONTROLNET_IDS", "ControlNetStack", "canny_edges", "depth_to_control", "parse_controlnet_spec",
           "scales_for"]


def parse_controlnet_spec(spec: str) -> tuple[str, str]:
    """ "depth" → ("depth", default id); "depth=/path/or/hub-id" → ("depth", that model).

    The syntax is the protocol's (`csd_blender.protocol.params.split_controlnet_spec`), so what the add-on and the
    command line accept is what loads here.

    Args:
        spec: a condition name, optionally with `=model`.
    """
    from csd_blender.protocol.params import split_controlnet_spec

    try:
        name, source = split_controlnet_spec(spec)
    except ProtocolError as exc:
        raise RequestError("controlnets", exc.message.removeprefix("controlnets: ")) from None
    return name, (source or DEFAULT_CONTROLNET_IDS[name])


def _box_blur(x: Tensor, k: int) -> Tensor:
    pad = k // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.avg_pool2d(x, k, stride=1)


@torch.no_grad()
def canny_edges(image: Tensor, low: float = 50.0, high: float = 100.0, blur: int = 5) -> Tensor:
    """Canny edges in torch (no OpenCV), following the official preprocessing `cv2.blur(5×5)` + `Canny(50, 100)`.

    Box blur, 3×3 Sobel per channel on the 0-255 scale, L1 magnitude |gx| + |gy| of the strongest channel
    (OpenCV's rule for colour images), non-maximum suppression along 4 directions, then double threshold with
    hysteresis (weak pixels connected to strong ones are kept).

    Args:
        image: (B, 3, H, W) in [0, 1], e.g. a rendered normal map (`normal * 0.5 + 0.5`).
        low, high: hysteresis thresholds on the 0-255 gradient scale.
        blur: box-blur size (odd; 1 disables).

    Returns:
        (B, 3, H, W) float {0, 1} edge image (white edges on black, as ControlNet-canny expects).
    """
    x = image.float().clamp(0, 1) * 255.0
    b, c, h, w = x.shape
    if blur > 1:
        x = _box_blur(x, blur)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2,1,3,3)
    g = F.conv2d(F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate"), kernels)
    gx, gy = g[:, 0].reshape(b, c, h, w), g[:, 1].reshape(b, c, h, w)
    mag_c = gx.abs() + gy.abs()
    best = mag_c.argmax(dim=1, keepdim=True)
    mag, gx, gy = mag_c.gather(1, best)[:, 0], gx.gather(1, best)[:, 0], gy.gather(1, best)[:, 0]
    # non-maximum suppression: compare with the two neighbours along the quantised gradient direction
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    sector = torch.zeros_like(mag, dtype=torch.long)  # 0°: left/right
    sector[(angle >= 22.5) & (angle < 67.5)] = 1  # 45°
    sector[(angle >= 67.5) & (angle < 112.5)] = 2  # 90°: up/down
    sector[(angle >= 112.5) & (angle < 157.5)] = 3  # 135°
    padded = F.pad(mag, (1, 1, 1, 1))
    offsets = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for s, ((dy1, dx1), (dy2, dx2)) in enumerate(offsets):
        n1 = padded[:, 1 + dy1 : 1 + dy1 + h, 1 + dx1 : 1 + dx1 + w]
        n2 = padded[:, 1 + dy2 : 1 + dy2 + h, 1 + dx2 : 1 + dx2 + w]
        keep |= (sector == s) & (mag >= n1) & (mag > n2)
    nms = torch.where(keep, mag, torch.zeros_like(mag))
    strong = nms > high
    weak = nms > low
    for _ in range(max(h, w)):
        grown = weak & (F.max_pool2d(strong.float().unsqueeze(1), 3, 1, 1)[:, 0] > 0)
        if torch.equal(grown | strong, strong):
            break
        strong = strong | grown
    return strong.float().unsqueeze(1).expand(b, 3, h, w).contiguous()


def depth_to_control(depth: Tensor, mask: Tensor) -> Tensor:
    """Camera depth → ControlNet-depth image: per image min-max normalised, near = bright, background 0.

    ControlNet v1.1 depth was trained on relative inverse depth (MiDaS-like: near is white). Foreground maps to
    [0.1, 1] so the farthest surface stays distinguishable from the background.

    Args:
        depth: (B, 1, H, W) distance along the view axis (any positive scale).
        mask: (B, 1, H, W) foreground coverage in [0, 1].

    Returns:
        (B, 3, H, W) in [0, 1].
    """
    fg = mask > 0.5
    big = torch.finfo(depth.dtype).max
    dmin = torch.where(fg, depth, torch.full_like(depth, big)).amin(dim=(1, 2, 3), keepdim=True)
    dmax = torch.where(fg, depth, torch.full_like(depth, -big)).amax(dim=(1, 2, 3), keepdim=True)
    norm = (depth - dmin) / (dmax - dmin).clamp_min(1e-6)
    img = torch.where(fg, 0.1 + 0.9 * (1.0 - norm.clamp(0, 1)), torch.zeros_like(depth))
    return img.expand(-1, 3, -1, -1)


class ControlNetStack:
    """Several ControlNets applied to one UNet call; their residuals are summed (diffusers MultiControlNetModel).

    Args:
        models: condition name → ControlNetModel (already on the device, in the weight dtype).
        scales: condition name → conditioning scale (0 skips that net).
        resolution: the UNet's pixel size; control images are resized to it.
    """

    def __init__(self, models: Mapping[str, Any], scales: Mapping[str, float], resolution: int):
        self.models = dict(models)
        self.scales = {k: float(scales.get(k, 1.0)) for k in self.models}
        self.resolution = resolution
        self.calls = 0

    @property
    def names(self) -> tuple[str, ...]:
        """The condition names, in application order."""
        return tuple(self.models)

    def prepare(
        self, control: Mapping[str, Tensor] | None, n: int, device: torch.device, dtype: torch.dtype
    ) -> dict[str, Tensor]:
        """Control images for every net as (n, 3, R, R) in [0, 1]; "canny" is derived from "normal" when absent.

        Accepted batch sizes: n, 1 (broadcast) or any divisor of n (tiled, branch-major like the latents).

        Args:
            control: condition name → (b, 3, H, W) image in [0, 1] (or (b, 1, H, W)).
            n: UNet batch.
            device: target device.
            dtype: weight dtype.
        """
        control = dict(control or {})
        out = {}
        for name in self.models:
            img = control.get(name)
            if img is None and name == "canny" and control.get("normal") is not None:
                img = canny_edges(control["normal"])
            if img is None:
                raise EngineError(
                    ErrorCode.INTERNAL,
                    f"ControlNet {name!r} is loaded but no control[{name!r}] image was given"
                    + (" (or control['normal'] to derive it from)" if name == "canny" else ""),
                )
            if img.dim() != 4 or img.shape[1] not in (1, 3):
                raise EngineError(
                    ErrorCode.INTERNAL, f"control[{name!r}] must be (b, 3, H, W), got {tuple(img.shape)}"
                )
            if img.shape[1] == 1:
                img = img.expand(-1, 3, -1, -1)
            b = img.shape[0]
            if b != n:
                if n % b:
                    raise EngineError(
                        ErrorCode.INTERNAL, f"control[{name!r}] has batch {b}, UNet batch is {n}"
                    )
                img = img.repeat(n // b, 1, 1, 1)
            img = img.to(device=device, dtype=torch.float32)
            if img.shape[-2:] != (self.resolution, self.resolution):
                img = F.interpolate(
                    img,
                    size=(self.resolution, self.resolution),
                    mode="bilinear",
                    align_corners=False,
                    antialias=False,
                )
            out[name] = img.clamp(0, 1).to(dtype)
        return out

    def residuals(
        self, x_t: Tensor, t: Tensor, embeddings: Tensor, images: Mapping[str, Tensor]
    ) -> tuple[list[Tensor] | None, Tensor | None]:
        """Summed (down-block residuals, mid-block residual) over the nets, or (None, None) if all scales are 0.

        Args:
            x_t: (n, 4, h, w) UNet input in the weight dtype.
            t: (n,) timesteps.
            embeddings: (n, L, D) text embeddings in the weight dtype.
            images: from `prepare`.
        """
        down: list[Tensor] | None = None
        mid: Tensor | None = None
        for name, net in self.models.items():
            scale = self.scales[name]
            if scale == 0.0:
                continue
            d, m = net(
                x_t,
                t,
                encoder_hidden_states=embeddings,
                controlnet_cond=images[name],
                conditioning_scale=scale,
                return_dict=False,
            )
            self.calls += 1
            if down is None:
                down, mid = list(d), m
            else:
                down = [a + b for a, b in zip(down, d)]
                mid = mid + m
        return down, mid


def scales_for(
    names: Sequence[str], scales: Sequence[float] | Mapping[str, float] | None
) -> dict[str, float]:
    """Condition name → scale (default 1.0).

    Args:
        names: the condition names.
        scales: one scale per name, a mapping, or None.
    """
    if scales is None:
        return {n: 1.0 for n in names}
    if isinstance(scales, Mapping):
        return {n: float(scales.get(n, 1.0)) for n in names}
    scales = list(scales)
    if len(scales) != len(names):
        raise RequestError(
            "controlnet_scales", f"needs one scale per ControlNet ({len(names)}), got {len(scales)}"
        )
    return {n: float(s) for n, s in zip(names, scales)}
