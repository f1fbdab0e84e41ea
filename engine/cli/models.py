"""`python -m engine models list|download|remove`: the models a job can use, fetched without leaving the engine.

`list` shows the recommended models (csd_blender/protocol/models.py) and any other model in the models folder,
with the bytes on disk and whether each is present; `download ID…` fetches what the engine needs of each (resumable:
run it again after an interruption; Ctrl-C or SIGTERM stops it cleanly); `remove ID…` frees the disk. `--json`
prints one JSON object per line (the Models panel of the add-on reads them); otherwise a table or a progress bar.
Exit status: 0, 2 for an error (one `error: [code] message` line), 3 when cancelled.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from csd_blender.protocol.models import RECOMMENDED, human_bytes


def add_models_parser(subparsers) -> None:
    """Register `models` with its `list`, `download` and `remove` actions."""
    p = subparsers.add_parser("models", help="list, download or remove the diffusion models jobs use")
    actions = p.add_subparsers(dest="action", required=True)
    for name, text in (("list", "the recommended models and those in the models folder: present, size on disk"),
                       ("download", "download models into the models folder (resumable, Ctrl-C stops)"),
                       ("remove", "delete models from the models folder")):
        a = actions.add_parser(name, help=text)
        if name != "list":
            a.add_argument("ids", nargs="+", metavar="ID", help="hub id, e.g. stable-diffusion-v1-5/stable-diffusion-v1-5")
        a.add_argument("--models-dir", default=None,
                       help="models folder (as HF_HOME: the hub cache is DIR/hub); default HF_HUB_CACHE / HF_HOME")
        a.add_argument("--json", action="store_true", help="one JSON object per line (for the add-on)")
        if name == "download":
            a.add_argument("--token", default=None, help="hub token for gated models (default: HF_TOKEN)")
            a.add_argument("--precision", default="fp16", choices=("fp16", "full", "both"),
                           help="weights to fetch where a model has both: fp16 (CUDA, default), full (CPU), both")
    p.set_defaults(func=cmd_models)


def _print(args, event: dict, text: str = "") -> None:
    if args.json:
        print(json.dumps(event), flush=True)
    elif text:
        print(text, flush=True)


def _list(args, cache) -> int:
    from ..models.store import model_status

    ids = [e.id for e in RECOMMENDED]
    if cache.is_dir():
        ids += sorted(p.name[len("models--"):].replace("--", "/") for p in cache.glob("models--*")
                      if p.name[len("models--"):].replace("--", "/") not in ids)
    if not args.json:
        print(f"models folder: {cache}")
    for repo_id in ids:
        s = model_status(cache, repo_id)
        event = s.as_json()
        state = "present" if s.present else ("partial" if s.partial or s.bytes_on_disk else "missing")
        estimate = event.get("estimate_bytes")
        size = human_bytes(s.bytes_on_disk) if s.bytes_on_disk else (f"~{human_bytes(estimate)}" if estimate else "-")
        gated = " (gated: licence + token)" if event.get("gated") else ""
        _print(args, event, f"{state:8s} {size:>10s}  {repo_id}{gated}")
    return 0


def _download(args, cache) -> int:
    from ..models.download import DownloadError, download_model
    from ..models.store import bytes_on_disk

    stopped = []
    previous = {sig: signal.signal(sig, lambda *_: stopped.append(1)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for repo_id in args.ids:
            last, bar = [0.0], None
            if not args.json:
                from tqdm import tqdm

                bar = tqdm(unit="B", unit_scale=True, desc=repo_id, dynamic_ncols=True)

            def report(p, repo_id=repo_id, bar=bar, last=last):
                if bar is not None:
                    bar.total = p.total
                    bar.update(p.done - bar.n)
                elif time.monotonic() - last[0] > 0.2 or p.done == p.total:
                    last[0] = time.monotonic()
                    _print(args, {"event": "progress", "id": repo_id, "file": p.file, "done": p.done,
                                  "total": p.total})

            try:
                path = download_model(repo_id, args.models_dir, args.token, report, lambda: bool(stopped),
                                      args.precision)
            except DownloadError as exc:
                if bar is not None:
                    bar.close()
                _print(args, {"event": "error", "id": repo_id, "code": exc.code, "message": str(exc)})
                if not args.json:
                    print(f"error: [{exc.code}] {exc}", file=sys.stderr)
                return 3 if exc.code == "cancelled" else 2
            if bar is not None:
                bar.close()
            _print(args, {"event": "done", "id": repo_id, "path": str(path),
                          "bytes_on_disk": bytes_on_disk(cache, repo_id)},
                   f"{repo_id}: {human_bytes(bytes_on_disk(cache, repo_id))} in {path}")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _remove(args, cache) -> int:
    from ..models.store import remove_model

    for repo_id in args.ids:
        freed = remove_model(cache, repo_id)
        _print(args, {"event": "removed", "id": repo_id, "freed_bytes": freed},
               f"{repo_id}: removed, {human_bytes(freed)} freed")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """`python -m engine models ACTION …`."""
    from ..models.store import models_cache

    cache = models_cache(args.models_dir)
    return {"list": _list, "download": _download, "remove": _remove}[args.action](args, cache)
