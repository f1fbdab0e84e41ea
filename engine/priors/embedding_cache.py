"""Text-embedding cache on disk: one safetensors file per sha256(model key + dtype + prompt)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`$CSD_CACHE_DIR/embeddings` when CSD_CACHE_DIR is set, else `~/.cache/csd-blender/embeddings`."""
    root = os.environ.get("CSD_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "csd-blender"
    return base / "embeddings"


def folder_fingerprint(*folders: Path) -> str:
    """A string that changes when any file in the folders changes (names, sizes, mtimes).

    Args:
        *folders: folders to describe (missing ones are skipped).
    """
    parts = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                parts.append(f"{path.relative_to(folder.parent)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class EmbeddingCache:
    """Prompt embeddings (L, D) float32 kept in memory and written to disk, so the text encoder runs once.

    Args:
        model_key: identifies the text encoder (model id, or path + fingerprint for a local folder) and dtype.
        directory: where files go; None → `default_cache_dir()`. Disk errors only log a warning.
    """

    def __init__(self, model_key: str, directory: Path | str | None = None):
        self.model_key = model_key
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self._memory: dict[str, Tensor] = {}

    def key(self, prompt: str) -> str:
        """sha256 hex of the model key and the prompt."""
        return hashlib.sha256(f"{self.model_key}\0{prompt}".encode()).hexdigest()

    def path(self, prompt: str) -> Path:
        """The file that holds `prompt`'s embedding."""
        return self.directory / f"{self.key(prompt)}.safetensors"

    def get(self, prompt: str) -> Tensor | None:
        """The cached (L, D) float32 CPU embedding, from memory or disk, or None."""
        if prompt in self._memory:
            return self._memory[prompt]
        path = self.path(prompt)
        if not path.is_file():
            return None
        try:
            from safetensors.torch import load_file

            emb = load_file(str(path))["embedding"]
        except Exception as exc:  # noqa: BLE001 - a corrupt cache file is recomputed, never fatal
            logger.warning("ignoring unreadable embedding cache file %s: %s", path, exc)
            return None
        self._memory[prompt] = emb
        return emb

    def put(self, prompt: str, emb: Tensor) -> None:
        """Store an (L, D) embedding in memory and (atomically) on disk.

        Args:
            prompt: the prompt text.
            emb: (L, D) tensor; stored as float32 on the CPU.
        """
        emb = emb.detach().to("cpu", torch.float32).contiguous()
        self._memory[prompt] = emb
        try:
            from safetensors.torch import save_file

            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            os.close(fd)
            save_file({"embedding": emb}, tmp)
            os.replace(tmp, self.path(prompt))
        except OSError as exc:
            logger.warning("could not write the embedding cache in %s: %s", self.directory, exc)
