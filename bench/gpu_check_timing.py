"""How the GPU check times and weighs a run: device synchronisation, the peak-memory window, and the batched
UNet(+ControlNet) forward of a prior's last call replayed alone."""

from __future__ import annotations

import time

import torch

TIMER_KEYS = ("render", "to_model_space", "unet", "backward", "optimiser")  # the stages of one step (bake is not)


def sync(device: torch.device) -> None:
    """Wait for queued device work (a no-op on the CPU).

    Args:
        device: the device.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window on CUDA.

    Args:
        device: the device.
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    """Peak allocated GiB since `reset_peak` (NaN on the CPU).

    Args:
        device: the device.
    """
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


class ForwardRecorder:
    """Keeps the inputs of a prior's last `predict_noise` call, to time that batched forward alone afterwards.

    Args:
        prior: the prior whose `predict_noise` is wrapped (restored by `close`).
    """

    def __init__(self, prior):
        self.prior = prior
        self.inner = prior.predict_noise
        self.last: tuple | None = None
        prior.predict_noise = self._call

    def _call(self, x_t, t, embeddings, control=None):
        self.last = (x_t, t, embeddings, control)
        return self.inner(x_t, t, embeddings, control=control)

    def close(self) -> None:
        """Restore the prior's own `predict_noise`."""
        del self.prior.predict_noise

    @property
    def batch(self) -> int:
        """The UNet batch of the last call (k branches × B)."""
        return int(self.last[0].shape[0]) if self.last else 0

    def time_ms(self, repeats: int) -> float:
        """Mean ms of the last call's batched UNet(+ControlNet) forward, replayed `repeats` times after one warm-up.

        Args:
            repeats: timed replays.
        """
        if self.last is None:
            raise RuntimeError("the prior was never called")
        x_t, t, emb, control = self.last
        dev = self.prior.device
        with torch.no_grad():
            self.inner(x_t, t, emb, control=control)
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(repeats):
                self.inner(x_t, t, emb, control=control)
            sync(dev)
        return 1000 * (time.perf_counter() - t0) / repeats
