"""How the engine server listens and runs: `ServerConfig`, filled from `python -m engine serve`'s options."""

from __future__ import annotations

from dataclasses import dataclass, field

from csd_blender.protocol.limits import REQUEST_LIMITS, Limits


@dataclass
class ServerConfig:
    """How the server listens and runs.

    Args:
        bind: ZeroMQ endpoint; port 0 picks a free port ("tcp://127.0.0.1:0").
        token: the secret every request must carry (at least 16 characters).
        device: resolved torch device ("cpu", "cuda:0").
        curve_dir: folder with `server.key_secret` (zmq.auth certificates) and optionally
            `authorized_clients/` (public keys); required for a non-loopback bind.
        endpoint_file: where to write {"endpoint", "pid", ...} once bound (atomically).
        limits: request size limits.
        progress_hz: at most this many progress events per second per job.
        poll_ms: socket poll timeout (how quickly worker messages go out).
        shutdown_grace_s: how long shutdown waits for a cancelled job to stop.
        admin_token: a second token (at least 16 characters, or "" for none) whose requests see and cancel
            every client's jobs.
        client_timeout_s: a client that sends nothing (not even a ping) for this long loses its jobs, queued
            ones first.
        ray_address: run jobs on a pool of Ray actors at this address ("local", "auto", "ray://host:10001");
            None: on the local worker thread.
        ray_workers: pool actors (None: as many as the cluster's GPUs, or CPUs, allow).
        gpus_per_worker, cpus_per_worker: what each pool actor reserves.
        ray_health_timeout_s: a pool actor that leaves a progress request unanswered this long while running a job
            (hung, stopped, its machine lost) is replaced and its job ends with `engine_died`.
    """

    bind: str = "tcp://127.0.0.1:0"
    token: str = ""
    device: str = "cpu"
    curve_dir: str | None = None
    endpoint_file: str | None = None
    limits: Limits = field(default_factory=lambda: REQUEST_LIMITS)
    progress_hz: float = 5.0
    poll_ms: int = 20
    shutdown_grace_s: float = 30.0
    admin_token: str = ""
    client_timeout_s: float = 30.0
    ray_address: str | None = None
    ray_workers: int | None = None
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    ray_health_timeout_s: float = 30.0
