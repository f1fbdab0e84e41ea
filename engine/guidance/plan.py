"""Branch planning: which prompts need a UNet evaluation this step, and one batched prior call for all of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import EngineError, ErrorCode

if TYPE_CHECKING:  # pragma: no cover
    from ..priors.base import Prior

BRANCHES = ("cond", "neg", "null")


@dataclass
class PromptEmbeddings:
    """Text embeddings for the three guidance branches.

    Each tensor is (1, L, D) (shared by the batch) or (B, L, D) (one per batch element, e.g. view-dependent
    prompts). `neg=None` means "no negative prompt": the negative branch is then the null branch and is merged
    into it instead of being evaluated twice.

    Attributes:
        cond: embeddings of the prompt y (for editing: the target prompt).
        null: embeddings of the empty prompt ∅.
        neg: embeddings of the negative prompt y_neg (for editing: the edit/source prompt), or None.
        perp_neg: view negatives and weights for Perp-Neg (engine.guidance.perp_neg.PerpNeg), or None; used only
            by configs with `perpneg_scale` ≠ 0 (then `cond` is the per-camera interpolated positive).
        same_neg_null: whether neg gives the same ε as null, once `neg_is_null` has compared them (None: not
            yet). Comparing device tensors waits for the device, so the answer is kept; `with_cond` carries it
            over, `dataclasses.replace` recomputes it.
    """

    cond: Tensor
    null: Tensor
    neg: Tensor | None = None
    perp_neg: Any = None
    same_neg_null: bool | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_prompts(
        cls, prior: Prior, prompt: str | list[str], negative_prompt: str = ""
    ) -> PromptEmbeddings:
        """Encode `prompt` (one string, or one per batch element), the negative prompt and "" with `prior`.

        Args:
            prior: a Prior (its `encode_prompts` caches per prompt).
            prompt: the positive/target prompt, or a list of B prompts.
            negative_prompt: the negative/edit prompt; "" means none (merged with the null branch).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        cond = prior.encode_prompts(prompts)
        null = prior.encode_prompts([""])
        neg = None
        if negative_prompt.strip():
            try:
                neg = prior.encode_prompts([negative_prompt])
            except EngineError as exc:
                if exc.code != ErrorCode.BAD_PROMPT:
                    raise
                raise EngineError(
                    ErrorCode.BAD_PROMPT, f"negative_prompt: {exc.message}", field="negative_prompt"
                ) from exc
        return cls(cond=cond, null=null, neg=neg)

    def neg_is_null(self) -> bool:
        """True when the negative branch would give the same ε as the null branch (compared once, kept)."""
        if self.same_neg_null is None:
            self.same_neg_null = self.neg is None or self.neg is self.null or (
                self.neg.shape == self.null.shape and bool(torch.equal(self.neg, self.null)))
        return self.same_neg_null

    def with_cond(self, cond: Tensor) -> PromptEmbeddings:
        """A copy with other positive embeddings (per-view prompts each step), keeping the neg/null answer.

        Args:
            cond: (1|B, L, D) embeddings of the prompt y.
        """
        out = dataclasses.replace(self, cond=cond)
        out.same_neg_null = self.same_neg_null
        return out

    def batch(self, branch: str, batch_size: int) -> Tensor:
        """The embeddings of `branch` broadcast to (batch_size, L, D).

        Args:
            branch: "cond", "neg" or "null".
            batch_size: B.
        """
        emb = getattr(self, branch)
        if emb is None:
            emb = self.null
        if emb.dim() != 3:
            raise EngineError(
                ErrorCode.INTERNAL, f"{branch} embeddings must be (1|B, L, D), got {tuple(emb.shape)}"
            )
        if emb.shape[0] == batch_size:
            return emb
        if emb.shape[0] == 1:
            return emb.expand(batch_size, -1, -1)
        raise EngineError(
            ErrorCode.INTERNAL, f"{branch} embeddings have batch {emb.shape[0]}, expected 1 or {batch_size}"
        )


@dataclass(frozen=True)
class Coefficients:
    """δ/w(t) = cond·ε(y) + neg·ε(y_neg) + null·ε(∅) + noise·ε, the official code's scale form (§1a step 7)."""

    cond: float
    neg: float
    null: float
    noise: float = 0.0


@dataclass(frozen=True)
class BranchPlan:
    """The branches to evaluate (in batch order) and their coefficients after merging neg into null."""

    branches: tuple[str, ...]
    coefficients: Mapping[str, float]
    noise: float

    @property
    def k(self) -> int:
        """Number of UNet branches (the UNet batch is k·B)."""
        return len(self.branches)


def plan_branches(coeffs: Coefficients, neg_is_null: bool) -> BranchPlan:
    """Drop every branch whose total coefficient is zero; merge neg into null when they are the same prompt.

    Examples: CSD at ω2 = 0 needs (cond, null); csd-if after step 5000 (ω1 = ω2 = 1) needs (cond, neg); CSD with
    no negative prompt needs (cond, null) with null coefficient −ω1.

    Args:
        coeffs: per-branch coefficients for this step.
        neg_is_null: whether the negative embeddings equal the null ones.
    """
    total = {"cond": coeffs.cond, "neg": coeffs.neg, "null": coeffs.null}
    if neg_is_null:
        total["null"] += total["neg"]
        total["neg"] = 0.0
    branches = tuple(b for b in BRANCHES if total[b] != 0.0)
    return BranchPlan(branches, {b: total[b] for b in branches}, coeffs.noise)


def ensure_branches(plan: BranchPlan, names: tuple[str, ...]) -> BranchPlan:
    """`plan` with `names` evaluated too (coefficient 0 where they were dropped), in the usual branch order.

    Args:
        plan: from `plan_branches`.
        names: branches another term needs (Perp-Neg: "cond" and the negative prompt's branch).
    """
    coeffs = {**{n: 0.0 for n in names}, **plan.coefficients}
    branches = tuple(b for b in BRANCHES if b in coeffs)
    return BranchPlan(branches, {b: coeffs[b] for b in branches}, plan.noise)


def repeat_control(control: Mapping[str, Tensor] | None, batch_size: int, k: int) -> dict[str, Tensor] | None:
    """Control images (1|B, 3, H, W) → (k·B, 3, H, W), in the same branch-major order as the latents.

    Args:
        control: condition name → image batch, or None.
        batch_size: B.
        k: number of branches.
    """
    if not control:
        return None
    out = {}
    for name, img in control.items():
        if img.shape[0] == 1 and batch_size != 1:
            img = img.expand(batch_size, -1, -1, -1)
        if img.shape[0] != batch_size:
            raise EngineError(
                ErrorCode.INTERNAL, f"control[{name!r}] has batch {img.shape[0]}, expected 1 or {batch_size}"
            )
        out[name] = img.repeat(k, 1, 1, 1)
    return out


def evaluate_branches(
    prior: Prior,
    plan: BranchPlan,
    x_t: Tensor,
    t: Tensor,
    prompts: PromptEmbeddings,
    control: Mapping[str, Tensor] | None = None,
    extra: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """ε for every planned branch from ONE batched `prior.predict_noise` call on k·B samples.

    Args:
        prior: the diffusion prior.
        plan: from `plan_branches`.
        x_t: (B, C, h, w) noisy model-space input.
        t: (B,) timesteps.
        prompts: the embeddings.
        control: optional ControlNet images (1|B, 3, H, W) per condition; repeated k times.
        extra: further branches evaluated in the same call, name → (B, L, D) embeddings (Perp-Neg's view
            negatives); they follow the planned branches in the batch.

    Returns:
        branch name → (B, C, h, w) ε prediction (float32).
    """
    extra = dict(extra or {})
    names = list(plan.branches) + list(extra)
    if not names:
        return {}
    b, k = x_t.shape[0], len(names)
    x_in = x_t.repeat(k, 1, 1, 1)
    t_in = t.repeat(k)
    emb = torch.cat([prompts.batch(name, b) for name in plan.branches] + list(extra.values()), dim=0)
    eps = prior.predict_noise(x_in, t_in, emb, control=repeat_control(control, b, k))
    return dict(zip(names, eps.float().split(b, dim=0)))


def combine(plan: BranchPlan, eps: Mapping[str, Tensor], noise: Tensor) -> Tensor:
    """Σ coefficient·ε(branch) + noise_coefficient·ε: the un-weighted δ (B, C, h, w).

    Args:
        plan: the branch plan.
        eps: branch → ε prediction.
        noise: the ε that was added to make x_t.
    """
    out = torch.zeros_like(noise)
    for name in plan.branches:
        out = out + plan.coefficients[name] * eps[name]
    if plan.noise != 0.0:
        out = out + plan.noise * noise
    return out
