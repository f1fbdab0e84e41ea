"""Train the bundled toy prior: `python -m engine.toy.train --out engine/assets/toy_prior`.

Renders the procedural dataset (engine/toy/dataset.py) with the project's rasterizer, then trains the pixel
UNet and the text encoder jointly with the ε-prediction loss (optionally Min-SNR-γ weighted, Hang et al. 2023),
AdamW with warm-up and cosine decay, and keeps an EMA of the weights, which is what gets saved. With
`--checkpoint DIR` it writes the full training state (weights, EMA, optimiser, step, random state) and a loadable
EMA prior every `--checkpoint-every` steps; `--resume` continues an interrupted run from there to the same result.
Reproducible from --seed on CPU.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .dataset import DatasetConfig, build_dataset
from .model import (
    MAX_TOKENS,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    load_networks,
    save_folder,
)

logger = logging.getLogger("engine.toy.train")


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def load_or_build_dataset(images: int, seed: int, cache: Path | None) -> tuple[torch.Tensor, list[str], float]:
    """The rendered dataset, read from / written to `cache` (.npz, no pickle) when given; returns seconds spent."""
    t0 = time.time()
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            if int(f["seed"]) == seed and len(f["images"]) == images:
                return torch.from_numpy(f["images"]), [str(c) for c in f["captions"]], time.time() - t0
    data, captions, _ = build_dataset(images, seed=seed, cfg=DatasetConfig())
    if cache is not None:
        np.savez(cache, images=data.numpy(), captions=np.array(captions), seed=np.array(seed))
    return data, captions, time.time() - t0


def _save_checkpoint(folder: Path, step: int, nets: dict, opt: torch.optim.Optimizer, gen: torch.Generator,
                     losses: list[float], tokenizer, scheduler, info: dict) -> None:
    """Write `folder/state.pt` (everything --resume needs) and `folder/prior/` (the EMA weights, loadable)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "optimizer": opt.state_dict(), "generator": gen.get_state(), "losses": losses,
             **{name: net.state_dict() for name, net in nets.items()}}
    tmp = folder / "state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / "state.pt")   # atomic: a run killed while saving keeps the previous checkpoint
    save_folder(folder / "prior", nets["ema_unet"], nets["ema_text"], tokenizer, scheduler, info)


def train(out: Path, steps: int, batch_size: int, images: int, lr: float, seed: int, ema_decay: float,
          width: int, log_every: int = 25, dataset_cache: Path | None = None, init: Path | None = None,
          checkpoint: Path | None = None, checkpoint_every: int = 250, resume: bool = False,
          min_snr: float = 0.0) -> dict:
    """Train and save the toy prior; returns the training summary written to training_info.json.

    Args:
        out: output folder (diffusers layout).
        steps: optimisation steps (in total, counting the steps a resumed checkpoint already did).
        batch_size: images per step.
        images: size of the rendered dataset.
        lr: peak learning rate.
        seed: seeds the dataset, the initialisation and the noise.
        ema_decay: EMA decay of the saved weights.
        width: UNet base channel count.
        log_every: steps between log lines.
        dataset_cache: optional .npz file caching the rendered dataset between runs.
        init: a saved toy prior to continue training from (its UNet and text encoder; its width replaces `width`).
        checkpoint: folder for the resumable training state and the latest EMA prior (None: no checkpoints).
        checkpoint_every: steps between checkpoints.
        resume: continue from `checkpoint/state.pt` when it exists (same arguments otherwise).
        min_snr: γ of Min-SNR loss weighting, min(SNR, γ)/SNR per sample (0: plain ε-MSE).
    """
    torch.manual_seed(seed)
    data, captions, t_data = load_or_build_dataset(images, seed, dataset_cache)
    logger.info("rendered %d images in %.1f s", len(data), t_data)
    tokenizer = build_tokenizer()
    ids = torch.tensor(tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True).input_ids)
    lengths = [len(x) for x in tokenizer(captions, add_special_tokens=True).input_ids]
    if max(lengths, default=0) > MAX_TOKENS or (ids == tokenizer.unk_token_id).any():
        raise ValueError("a caption is longer than MAX_TOKENS or has a word outside the vocabulary")
    scheduler, previous = build_scheduler(), {}
    if init is None:
        unet, text_encoder = build_unet(width), build_text_encoder(len(tokenizer))
    else:
        unet, text_encoder = load_networks(init)
        if text_encoder.config.vocab_size < len(tokenizer):   # a prior from before words were added (v2 → v3)
            text_encoder.resize_token_embeddings(len(tokenizer))
        width = unet.config.block_out_channels[0]
        info_path = init / "training_info.json"
        previous = json.loads(info_path.read_text()) if info_path.exists() else {}
        logger.info("continuing from %s (%s steps before)", init, previous.get("steps", "?"))
    steps_before = int(previous.get("steps", 0))
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    nets = {"unet": unet, "text": text_encoder, "ema_unet": ema_unet, "ema_text": ema_text}
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    alphas = scheduler.alphas_cumprod
    gen = torch.Generator().manual_seed(seed + 1 + steps_before)  # a continued run draws new batches
    losses: list[float] = []
    start = 0
    state_path = checkpoint / "state.pt" if checkpoint is not None else None
    if resume and state_path is not None and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        for name, net in nets.items():
            net.load_state_dict(state[name])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        start, losses = int(state["step"]), list(state["losses"])
        logger.info("resumed from %s at step %d", state_path, start)

    def summary(done: int, seconds: float) -> dict:
        final = sum(losses[-200:]) / max(1, len(losses[-200:]))
        info = {
            "command": "python -m engine.toy.train " + " ".join(sys.argv[1:]),
            "steps": steps_before + done, "steps_this_run": done, "batch_size": batch_size, "images": images,
            "lr": lr, "seed": seed, "ema_decay": ema_decay, "min_snr_gamma": min_snr, "unet_width": width,
            "unet_parameters": sum(p.numel() for p in unet.parameters()),
            "text_encoder_parameters": sum(p.numel() for p in text_encoder.parameters()),
            "final_loss_last_200_steps": round(final, 5),
            "dataset": dataclasses.asdict(DatasetConfig()), "vocabulary_size": len(tokenizer),
            "dataset_seconds": round(t_data, 1), "train_seconds": round(seconds, 1),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
        }
        if start:
            info["resumed_from_step"] = start
        if previous:
            info["continued_from"] = previous
        return info

    t_train = time.time()
    seconds_before = 0.0
    if start and state_path is not None and (checkpoint / "prior" / "training_info.json").exists():
        seconds_before = json.loads((checkpoint / "prior" / "training_info.json").read_text())["train_seconds"]
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup=min(200, steps // 10 + 1))
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        x0 = data[idx].float() / 127.5 - 1
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        cond = text_encoder(ids[idx]).last_hidden_state
        per_sample = (unet(x_t, t, cond).sample - noise).pow(2).mean(dim=(1, 2, 3))
        if min_snr > 0:
            snr = alphas[t] / (1 - alphas[t])
            loss = (per_sample * snr.clamp(max=min_snr) / snr).mean()
        else:
            loss = per_sample.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        losses.append(per_sample.mean().item())   # plain ε-MSE, comparable across weightings
        if (step + 1) % log_every == 0 or step == steps - 1:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            rate = (step + 1 - start) / (time.time() - t_train)
            logger.info("step %d/%d loss %.4f (%.2f steps/s, %.0f s left)", step + 1, steps, recent, rate,
                        (steps - step - 1) / rate)
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _save_checkpoint(checkpoint, step + 1, nets, opt, gen, losses, tokenizer, scheduler,
                             summary(step + 1, seconds_before + time.time() - t_train))
            logger.info("checkpoint at step %d in %s", step + 1, checkpoint)
    info = summary(steps, seconds_before + time.time() - t_train)
    save_folder(out, ema_unet, ema_text, tokenizer, scheduler, info)
    logger.info("saved %s (final loss %.4f)", out, info["final_loss_last_200_steps"])
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "toy_prior")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=120000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--dataset-cache", type=Path, default=None, help=".npz file to cache the rendered dataset")
    parser.add_argument("--init", type=Path, default=None, help="a saved toy prior to continue training from")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="folder for resumable training state and the latest EMA prior")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint's state.pt if present")
    parser.add_argument("--min-snr", type=float, default=5.0, help="Min-SNR-γ loss weighting (0: plain ε-MSE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    train(args.out, args.steps, args.batch_size, args.images, args.lr, args.seed, args.ema, args.width,
          dataset_cache=args.dataset_cache, init=args.init, checkpoint=args.checkpoint,
          checkpoint_every=args.checkpoint_every, resume=args.resume, min_snr=args.min_snr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
