"""Download a hub model into the models folder: resumable byte by byte, with progress, cancellable, token-aware.

huggingface_hub lists the repo (`model_info(files_metadata=True)`: commit and sizes) and answers each file's
metadata (HEAD …/resolve/COMMIT/FILE: etag, size, where the bytes are). The bytes come with plain HTTP Range
requests into `blobs/<etag>.csd-partial`, a name that survives an interruption (huggingface_hub ≥ 1 throws partial
files away), so the next run continues where the last one stopped; a finished blob is checked against its sha256
etag and renamed, and `hf_hub_download` then links it into the snapshot exactly as the hub cache expects.
`HF_ENDPOINT` (read at call time) points everything at another hub or a mirror.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from csd_blender.protocol.models import gated_message

from .store import COMPLETE, PARTIAL, UNFINISHED, models_cache, select_files, storage_folder

CHUNK = 1 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(Exception):
    """A download that cannot go on: `code` is one of protocol/models.py's ("gated", "not_found", "network", …)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Progress:
    """Bytes so far over the whole download (resumed bytes count as done)."""

    file: str
    done: int
    total: int


def endpoint() -> str:
    """The hub's address now (HF_ENDPOINT, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def _hub_error(repo_id: str, exc: BaseException) -> DownloadError:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or status in (401, 403):
        return DownloadError("gated", gated_message(repo_id))
    if isinstance(exc, RepositoryNotFoundError) or status == 404:
        return DownloadError("not_found", f"{repo_id}: no such model on {endpoint()} (check the id)")
    if isinstance(exc, HfHubHTTPError):
        return DownloadError("network", f"{repo_id}: the hub answered {status}: {str(exc).splitlines()[0]}")
    return DownloadError("network", f"{repo_id}: cannot reach {endpoint()} ({type(exc).__name__}: {exc}); "
                                    "check the connection, or copy a models folder from a machine that has one")


def list_files(repo_id: str, token: str | None = None, revision: str = "main") -> tuple[str, dict[str, int]]:
    """(commit, {file: size}) of a hub repo at `revision`."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint(), token=token or None).model_info(repo_id, revision=revision,
                                                                          files_metadata=True)
    except Exception as exc:  # huggingface_hub/httpx errors of every kind: one message that says what to do
        raise _hub_error(repo_id, exc) from exc
    return info.sha, {s.rfilename: int(s.size or 0) for s in info.siblings or ()}


def _fetch(url: str, dest: Path, expected: int | None, headers: dict, on_bytes: Callable[[int], None],
           should_stop: Callable[[], bool]) -> None:
    """Append the missing bytes of `url` to `dest` (Range from its current length)."""
    start = dest.stat().st_size if dest.exists() else 0
    if expected is not None and start >= expected:
        return
    request = urllib.request.Request(url, headers={**headers, "Range": f"bytes={start}-",
                                                   "Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=60) as response:
        mode = "ab" if response.status == 206 else "wb"   # a server that ignores Range sends everything again
        if mode == "wb":
            on_bytes(-start)
        with open(dest, mode) as fh:
            while True:
                if should_stop():
                    raise DownloadError("cancelled", "download cancelled; run it again to resume")
                block = response.read1(CHUNK)   # what has arrived: progress and cancel stay prompt
                if not block:
                    break
                fh.write(block)
                on_bytes(len(block))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK * 8), b""):
            h.update(block)
    return h.hexdigest()


def download_model(repo_id: str, models_dir: str | None = None, token: str | None = None,
                   progress: Callable[[Progress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, precision: str = "fp16") -> Path:
    """Download the files the engine needs of `repo_id` into the models folder; return the snapshot folder.

    Args:
        repo_id: hub id.
        models_dir: the models folder (None: the environment's hub cache).
        token: a hub token (gated models); None uses HF_TOKEN or the saved login.
        progress: called after every chunk with the bytes done and the total of all selected files.
        should_stop: checked between chunks; True stops with DownloadError("cancelled") and keeps the partial file.
        precision: "fp16" (default), "full" or "both" (see `select_files`).

    Raises:
        DownloadError: gated (licence page and token field named), not_found, network, disk, cancelled.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    emit = progress or (lambda p: None)
    stop = should_stop or (lambda: False)
    cache = models_cache(models_dir)
    token = token or os.environ.get("HF_TOKEN") or None
    commit, sizes = list_files(repo_id, token)
    wanted = select_files(sizes, precision)
    if not wanted:
        raise DownloadError("not_found", f"{repo_id}: no diffusers weights (safetensors) in the repo")
    blobs = storage_folder(cache, repo_id) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    unfinished = storage_folder(cache, repo_id) / UNFINISHED   # the model is not present until it is removed
    unfinished.write_text(json.dumps({"commit": commit, "files": wanted}), encoding="utf-8")
    total = sum(sizes[f] for f in wanted)
    done = [0]

    def count(n: int, name: str) -> None:
        done[0] += n
        emit(Progress(name, done[0], total))

    host = urlparse(endpoint()).netloc
    for name in wanted:
        try:
            meta = get_hf_file_metadata(hf_hub_url(repo_id, name, revision=commit, endpoint=endpoint()),
                                        token=token)
        except Exception as exc:
            raise _hub_error(repo_id, exc) from exc
        blob = blobs / meta.etag
        if not blob.exists():
            partial = blobs / (meta.etag + PARTIAL)
            if partial.exists():
                count(partial.stat().st_size, name)
            headers = build_hf_headers(token=token) if urlparse(meta.location).netloc == host else {}
            try:
                _fetch(meta.location, partial, meta.size, headers, lambda n, f=name: count(n, f), stop)
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):
                    raise DownloadError("gated", gated_message(repo_id)) from exc
                raise DownloadError("network", f"{repo_id}/{name}: HTTP {exc.code} while downloading") from exc
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
                raise DownloadError("network", f"{repo_id}/{name}: the connection broke ({exc}); run the download "
                                               "again to resume") from exc
            except OSError as exc:
                raise DownloadError("disk", f"cannot write {partial}: {exc}") from exc
            if meta.size is not None and partial.stat().st_size != meta.size:
                raise DownloadError("network", f"{repo_id}/{name}: got {partial.stat().st_size} of {meta.size} "
                                               "bytes; run the download again to resume")
            if SHA256.match(meta.etag) and _sha256(partial) != meta.etag:
                partial.unlink()
                raise DownloadError("network", f"{repo_id}/{name}: the downloaded bytes do not match their "
                                               "checksum; the partial file was removed, download again")
            partial.rename(blob)
        else:
            count(blob.stat().st_size, name)
        try:  # the blob is in place: the hub links it into the snapshot and writes refs/main
            hf_hub_download(repo_id, name, revision="main", cache_dir=str(cache), token=token, endpoint=endpoint())
        except Exception as exc:
            raise _hub_error(repo_id, exc) from exc
    snap = storage_folder(cache, repo_id) / "snapshots" / commit
    (snap / COMPLETE).write_text(json.dumps({"files": wanted, "bytes": total}), encoding="utf-8")
    unfinished.unlink()
    return snap
