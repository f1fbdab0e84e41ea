"""The prompt embeddings of a job, per view word when the prior is view-dependent: one definition for every task.

threestudio's prompt processor, as every official CSD config uses it: the prompt (and, for editing, the edit
prompt) is encoded once per view word (", front view" / side / back / overhead); each step the batch's cameras pick
their embeddings, or, with Perp-Neg (the coarse stage of text to mesh), interpolate them by azimuth.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import EngineError, ErrorCode
from .perp_neg import perp_neg_prompts
from .plan import PromptEmbeddings
from .views import VIEWS, view_names, view_prompt

VIEW_WORDS = (*VIEWS, "view")


def job_negative(prior: Prior, negative: str, preset_negative: str) -> str:
    """The negative prompt a job runs with: the user's when given, else the guidance preset's recommended one (the
    official "oversaturated color, ugly, tiling, low quality, noisy") when the prior can read its words.

    Args:
        prior: the job's prior.
        negative: the user's negative prompt ("" for none given).
        preset_negative: the preset's `negative_prompt`.
    """
    if negative.strip() or not preset_negative.strip():
        return negative
    words = tuple(re.findall(r"[a-z]+", preset_negative.lower()))
    return preset_negative if prior.knows_words(words) else ""


def knows_views(prior: Prior) -> bool:
    """Whether `prior` reads view-dependent prompts (every real prior; the toy prior from v3 on)."""
    return prior.knows_words(VIEW_WORDS)

if TYPE_CHECKING:  # pragma: no cover
    from ..priors.base import Prior


def encode(prior: Prior, field_name: str, prompts: list[str]) -> Tensor:
    """`prior.encode_prompts(prompts)`; a prompt the prior cannot read is `bad_prompt` naming `field_name`."""
    try:
        return prior.encode_prompts(prompts)
    except EngineError as exc:
        if exc.code != ErrorCode.BAD_PROMPT or exc.field == field_name:
            raise
        raise EngineError(ErrorCode.BAD_PROMPT, f"{field_name}: {exc.message}", field=field_name) from exc


class ViewPrompts:
    """A job's prompt embeddings; `for_cameras(c2w)` gives one step's PromptEmbeddings.

    Args:
        prior: the Prior (its `encode_prompts` caches per prompt).
        prompt: the positive prompt (editing: the target prompt).
        negative: the negative prompt (editing: the edit prompt); "" for none (merged with the null branch).
        view_dependent: encode ", {view} view" variants and pick them per camera (None: when the prior knows the
            view words, `knows_views`).
        view_negative: give the negative prompt view words too (editing, Eq. 11: both prompts describe the view).
        fields: the request fields of `prompt` and `negative`, named in a `bad_prompt` error.
    """

    def __init__(self, prior: Prior, prompt: str, negative: str = "", *, view_dependent: bool | None = None,
                 view_negative: bool = False, fields: tuple[str, str] = ("prompt", "negative_prompt")):
        cond = encode(prior, fields[0], [prompt])
        null = prior.encode_prompts([""])
        neg = encode(prior, fields[1], [negative]) if negative.strip() else None
        self.base = PromptEmbeddings(cond=cond, null=null, neg=neg)
        self.view_cond: dict[str, Tensor] | None = None
        self.view_neg: dict[str, Tensor] | None = None
        if view_dependent is None:
            view_dependent = knows_views(prior)
        if view_dependent:
            self.view_cond = {v: encode(prior, fields[0], [view_prompt(prompt, v)]) for v in VIEWS}
            if view_negative and neg is not None:
                self.view_neg = {v: encode(prior, fields[1], [view_prompt(negative, v)]) for v in VIEWS}

    @classmethod
    def from_embeddings(cls, base: PromptEmbeddings, view_cond: dict[str, Tensor] | None = None,
                        view_neg: dict[str, Tensor] | None = None) -> ViewPrompts:
        """Prompts from embeddings made elsewhere (benchmarks with random embeddings, no text encoder).

        Args:
            base: the view-independent embeddings.
            view_cond, view_neg: view word -> (1, L, D) embeddings, or None.
        """
        out = cls.__new__(cls)
        out.base, out.view_cond, out.view_neg = base, view_cond, view_neg
        return out

    @property
    def view_dependent(self) -> bool:
        """Whether the embeddings change with the camera."""
        return self.view_cond is not None

    def for_cameras(self, c2w: Tensor, perp_neg: bool = False) -> PromptEmbeddings:
        """The embeddings for a batch of cameras.

        Args:
            c2w: (B, 4, 4) camera-to-world matrices around the origin; pass the host copy (no device sync).
            perp_neg: view-interpolated positives and Perp-Neg's two view negatives per camera.
        """
        if self.view_cond is None:
            return self.base
        if perp_neg:
            pos, pn = perp_neg_prompts(self.view_cond, c2w)
            return dataclasses.replace(self.base, cond=pos, perp_neg=pn)
        names = view_names(c2w)
        out = self.base.with_cond(torch.cat([self.view_cond[v] for v in names]))
        if self.view_neg is not None:
            out = dataclasses.replace(out, neg=torch.cat([self.view_neg[v] for v in names]))
        return out
