"""Prompt → text embeddings like the diffusers pipelines (CLIP as Stable Diffusion, T5 with mask as IF), cached."""

from __future__ import annotations

import gc
import logging
from typing import Any

import torch
from torch import Tensor

from ..errors import EngineError, ErrorCode
from .embedding_cache import EmbeddingCache
from .hub import load_component

logger = logging.getLogger(__name__)

IF_MAX_LENGTH = 77  # IFPipeline.encode_prompt tokenises T5 prompts to 77 tokens


def transformers_dtype_kw() -> str:
    """`dtype` on transformers >= 4.56 (torch_dtype is deprecated there), else `torch_dtype`."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def vocabulary_words(tokenizer: Any) -> list[str] | None:
    """The words of a word-level tokenizer (special tokens excluded), or None for sub-word tokenizers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordLevel":
        return None
    special = set(tokenizer.all_special_tokens)
    return sorted(w for w in tokenizer.get_vocab() if w not in special)


class PromptEncoder:
    """Tokeniser + text encoder of a diffusers-layout model, loaded only while uncached prompts are encoded.

    Prompts are tokenised as the pipelines do (padding="max_length", truncation). CLIP-style encoders get no
    attention mask and give `last_hidden_state` (StableDiffusionPipeline); T5 encoders get the attention mask
    (IFPipeline, which also lower-cases and strips the prompt). After encoding, the encoder is freed; results live
    in an `EmbeddingCache` (memory + disk).

    Args:
        source: local folder or hub id.
        encoder_class: transformers class name from model_index.json (e.g. "CLIPTextModel", "T5EncoderModel").
        tokenizer: the loaded tokenizer.
        cache: the embedding cache.
        device: where the encoder runs.
        dtype: encoder weight dtype.
    """

    def __init__(
        self,
        source: str,
        encoder_class: str,
        tokenizer: Any,
        cache: EmbeddingCache,
        device: torch.device,
        dtype: torch.dtype,
    ):
        self.source = source
        self.encoder_class = encoder_class
        self.tokenizer = tokenizer
        self.cache = cache
        self.device = device
        self.dtype = dtype
        self.is_t5 = "T5" in encoder_class
        length = getattr(tokenizer, "model_max_length", None)
        self.max_length = IF_MAX_LENGTH if self.is_t5 or not length or length > 100_000 else int(length)
        self.encoder_loads = 0

    def _normalise(self, prompt: str) -> str:
        return prompt.lower().strip() if self.is_t5 else prompt

    def knows(self, words: tuple[str, ...]) -> bool:
        """Whether every word of `words` can appear in a prompt: always for sub-word tokenizers (real models), for a
        word-level one (the toy prior) only when its vocabulary holds them."""
        vocabulary = vocabulary_words(self.tokenizer)
        return vocabulary is None or set(words) <= set(vocabulary)

    def check_vocabulary(self, prompt: str) -> None:
        """Raise BAD_PROMPT when a word-level tokenizer maps a word of `prompt` to the unknown token.

        Args:
            prompt: the prompt text.
        """
        words = vocabulary_words(self.tokenizer)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if words is None or unk is None:
            return
        text = self._normalise(prompt)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if unk not in ids:
            return
        backend = self.tokenizer.backend_tokenizer
        norm = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        pieces = (
            [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(norm)]
            if backend.pre_tokenizer
            else norm.split()
        )
        unknown = [w for w, i in zip(pieces, ids) if i == unk] if len(pieces) == len(ids) else []
        raise EngineError(
            ErrorCode.BAD_PROMPT,
            f"prompt {prompt!r}: unknown word(s) {', '.join(repr(w) for w in unknown) or '(unrecognised text)'}; "
            f"this model knows only: {', '.join(words)}",
            field="prompt",
        )

    def _load_encoder(self) -> Any:
        import transformers

        cls = getattr(transformers, self.encoder_class, None)
        if cls is None:
            raise EngineError(
                ErrorCode.MODEL_MISSING,
                f"model {self.source!r}: text encoder class {self.encoder_class!r} is not in transformers",
            )
        enc = load_component(
            cls, self.source, "text_encoder", dtype=self.dtype, dtype_kw=transformers_dtype_kw()
        )
        self.encoder_loads += 1
        return enc.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def _run(self, encoder: Any, prompts: list[str]) -> Tensor:
        text = [self._normalise(p) for p in prompts]
        tok = self.tokenizer(
            text, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        for p, full in zip(prompts, self.tokenizer(text, add_special_tokens=True)["input_ids"]):
            if len(full) > self.max_length:
                logger.warning("prompt %r is longer than %d tokens and was truncated", p, self.max_length)
        ids = tok["input_ids"].to(self.device)
        if self.is_t5:
            out = encoder(ids, attention_mask=tok["attention_mask"].to(self.device))
        else:
            out = encoder(ids)
        return out.last_hidden_state.float()

    def encode(self, prompts: list[str]) -> Tensor:
        """(N, L, D) float32 embeddings on `device`, one per prompt, from the cache when possible.

        Args:
            prompts: the prompt strings ("" is the null prompt).
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        todo = [p for p in dict.fromkeys(prompts) if self.cache.get(p) is None]
        if todo:
            for p in todo:
                self.check_vocabulary(p)
            encoder = self._load_encoder()
            try:
                embs = self._run(encoder, todo)
            finally:
                del encoder
                if self.device.type == "cuda":  # CPU memory is freed by refcounting alone
                    gc.collect()
                    torch.cuda.empty_cache()
            for p, e in zip(todo, embs):
                self.cache.put(p, e)
        return torch.stack([self.cache.get(p) for p in prompts]).to(self.device)
