"""Checks at the door that load no model: is a model there (a folder, or a hub id in the cache), and does its
word-level tokenizer know every word of a prompt. A job refused here is refused before `accepted`, with the field
at fault, instead of failing when its turn comes (issue 22, finding 8)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import EngineError, ErrorCode, ModelMissingError
from ..models.store import require_downloaded
from .hub import hub_cache_dir, missing_model
from .loader import _resolve_source


def _with_field(exc: ModelMissingError, field: str) -> ModelMissingError:
    if field != "model":
        exc.message = f"{field}: {exc.message}"
        exc.args = (exc.message,)
    exc.field = field
    return exc


def model_folder(model: str, field: str = "model") -> str | None:
    """The folder `model` loads from; None for a hub id that is not cached yet but may be downloaded (online).

    Args:
        model: "toy", a local diffusers folder or a hub id.
        field: the request field that names it ("model", "refine_model"), reported in the error.

    Raises:
        ModelMissingError: no such folder, a folder without model_index.json, or a hub id neither in the cache
            nor downloadable (HF_HUB_OFFLINE); its `field` is `field`.
    """
    try:
        source, is_local = _resolve_source(model)
    except ModelMissingError as exc:
        raise _with_field(exc, field) from None
    if is_local:
        if not (Path(source) / "model_index.json").is_file():
            raise _with_field(missing_model(source, "model_index.json (the folder is not in diffusers layout)"),
                              field)
        return source
    from huggingface_hub import try_to_load_from_cache

    try:  # a hub id: in the models folder (engine.models.store), or refused — jobs never download
        require_downloaded([source])
    except ModelMissingError as exc:
        raise _with_field(exc, field) from None
    try:
        found = try_to_load_from_cache(source, "model_index.json", cache_dir=hub_cache_dir())
    except Exception:  # noqa: BLE001 - present by the store's account; its tokenizer is simply not checked
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


@functools.lru_cache(maxsize=16)
def _word_tokenizer(path: str, mtime: float):
    """A word-level `tokenizers.Tokenizer` from tokenizer.json, or None for any other kind (sub-word ones know
    every word)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    return tokenizer if type(tokenizer.model).__name__ == "WordLevel" else None


def unknown_words(folder: str, prompt: str) -> list[str] | None:
    """The words of `prompt` the model in `folder` does not know (None when it has no word-level tokenizer).

    The words are split as the tokenizer splits them (lower-cased, punctuation dropped), so a prompt that the
    encoder would accept is accepted here.
    """
    path = os.path.join(folder, "tokenizer", "tokenizer.json")
    if not os.path.isfile(path):
        return None
    tokenizer = _word_tokenizer(path, os.path.getmtime(path))
    if tokenizer is None:
        return None
    vocab = tokenizer.get_vocab()
    norm = tokenizer.normalizer.normalize_str(prompt) if tokenizer.normalizer is not None else prompt
    pieces = [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(norm)] if tokenizer.pre_tokenizer else norm.split()
    return list(dict.fromkeys(w for w in pieces if w not in vocab))


def check_prompt_words(folder: str | None, field: str, prompt: str) -> None:
    """Raise BAD_PROMPT naming `field` when the model in `folder` has a word-level vocabulary without a word of
    `prompt` (nothing to check for None or a sub-word tokenizer)."""
    if folder is None or not prompt:
        return
    unknown = unknown_words(folder, prompt)
    if unknown:
        path = os.path.join(folder, "tokenizer", "tokenizer.json")
        special = {"[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]", "<unk>", "<pad>"}
        known = sorted(w for w in _word_tokenizer(path, os.path.getmtime(path)).get_vocab() if w not in special)
        raise EngineError(ErrorCode.BAD_PROMPT,
                          f"{field}: unknown word(s) {', '.join(repr(w) for w in unknown)}; this model knows only: "
                          f"{', '.join(known)}", field=field)
