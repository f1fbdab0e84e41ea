"""A shape classifier made of plain silhouette statistics, fitted on ground-truth renders (never on model output).

Each image's object mask (pixels far from the border's median colour) is described by a few numbers: how much of its
bounding box and of its convex hull it fills, whether it has a hole, how its width changes from top to bottom, its
aspect ratio and how round its outline is. A k-nearest-neighbour vote among the ground-truth descriptors
(standardised) names the shape: a class such as "cube" has several silhouette modes (square, hexagon), which one
centroid per class would blur.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = ("fill", "solidity", "hole", "taper", "aspect", "roundness")


def object_mask(img: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """(H, W) bool: pixels that differ from the background, estimated as the median colour of the image border."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    return np.abs(img - bg).max(-1) > threshold


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a bool mask (stray pixels dropped)."""
    labels = np.zeros(mask.shape, np.int32)
    best, best_size, current = 0, 0, 0
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if labels[y, x]:
            continue
        current += 1
        stack, size = [(y, x)], 0
        labels[y, x] = current
        while stack:
            cy, cx = stack.pop()
            size += 1
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else mask


def _close(mask: np.ndarray) -> np.ndarray:
    """Morphological closing with a 3×3 square (dilate, then erode): bridges one-pixel cracks in an outline."""
    def dilate(m):
        p = np.pad(m, 1)
        return np.stack([p[dy:dy + m.shape[0], dx:dx + m.shape[1]] for dy in range(3) for dx in range(3)]).any(0)
    return ~dilate(~dilate(mask))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background region not connected to the image border filled."""
    outside = np.zeros_like(mask)
    outside[0], outside[-1], outside[:, 0], outside[:, -1] = ~mask[0], ~mask[-1], ~mask[:, 0], ~mask[:, -1]
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= ~mask
        if (grown == outside).all():
            return ~outside
        outside = grown


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (N, 2) points (Andrew's monotone chain, shoelace formula)."""
    pts = np.unique(points, axis=0)
    if len(pts) < 3:
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and np.cross(out[-1] - out[-2], p - out[-2]) <= 0:
                out.pop()
            out.append(p)
        return out

    hull = np.array(half(pts)[:-1] + half(pts[::-1])[:-1], dtype=np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def descriptors(mask: np.ndarray) -> np.ndarray | None:
    """The silhouette descriptors (FEATURES order) of a bool mask, or None when it holds under 12 pixels."""
    mask = largest_component(_close(mask))
    area = float(mask.sum())
    if area < 12:
        return None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = y1 - y0, x1 - x0
    filled = _fill_holes(mask)
    corners = np.concatenate([np.stack([ys + dy, xs + dx], 1) for dy in (0, 1) for dx in (0, 1)])  # pixel corners
    widths = mask[y0:y1].sum(1).astype(np.float64)
    third = max(1, h // 3)
    taper = (widths[:third].mean() + 0.5) / (widths[-third:].mean() + 0.5)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    f = np.pad(filled, 1)  # pixels on the image border count as outline
    edge = filled & ~(f[:-2, 1:-1] & f[2:, 1:-1] & f[1:-1, :-2] & f[1:-1, 2:])
    ey, ex = np.nonzero(edge)
    radius = np.hypot(ey + 0.5 - cy, ex + 0.5 - cx)
    return np.array([
        area / (h * w),                                  # fill of the bounding box
        float(filled.sum()) / max(_hull_area(corners), 1.0),  # solidity
        (float(filled.sum()) - area) / area,             # hole
        np.log(taper),                                   # top narrower than bottom < 0
        np.log(h / w),                                   # aspect
        float(radius.std() / max(radius.mean(), 1e-6)),  # roundness (0 for a circle)
    ])


@dataclass
class SilhouetteClassifier:
    """k-nearest neighbours on standardised silhouette descriptors of ground-truth renders."""

    labels: np.ndarray         # (N,) class names of the reference descriptors
    points: np.ndarray         # (N, F) standardised reference descriptors
    mean: np.ndarray           # (F,)
    scale: np.ndarray          # (F,)
    k: int = 7

    @classmethod
    def fit(cls, images_by_class: dict[str, np.ndarray], k: int = 7) -> "SilhouetteClassifier":
        """Fit on ground-truth renders: {shape: (N, H, W, 3) float images in [0, 1]}."""
        feats, labels = [], []
        for name, images in images_by_class.items():
            for img in images:
                d = descriptors(object_mask(img))
                if d is not None:
                    feats.append(d)
                    labels.append(name)
        allf = np.array(feats)
        mean, scale = allf.mean(0), allf.std(0) + 1e-6
        return cls(np.array(labels), (allf - mean) / scale, mean, scale, k)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.labels.tolist()))

    def predict(self, img: np.ndarray) -> str | None:
        """The shape named for one (H, W, 3) image, or None when it shows no object."""
        d = descriptors(object_mask(img))
        if d is None:
            return None
        dist = (((self.points - (d - self.mean) / self.scale) ** 2).sum(1))
        votes = self.labels[np.argsort(dist)[:self.k]]
        names, counts = np.unique(votes, return_counts=True)
        return str(names[int(np.argmax(counts))])
