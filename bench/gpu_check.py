"""GPU readiness and speed check: the CUDA tests, then full-size random-weight architectures timed the way the
tasks run them; one markdown table and one JSON file.

    bash bench/gpu_check.sh [--dry-run] [WHEELS=.whl] [OUT=$OUT or bench/out]    # the entry point (bench/README.md)
    python bench/gpu_check.py --out DIR [--dry-run] [--budget-s 420]

Sections, in order, each skipped (and listed as skipped) when the wall-time budget cannot hold it:
1. tests: `pytest -m gpu` over every test file that has the marker (CUDA-vs-CPU parity of the rasterizer,
   antialias and hash grid, and the other CUDA tests); the log goes to gpu_tests.txt.
2. texture: SD 1.5 UNet + depth ControlNet + VAE built from the published configs with random fp16 weights,
   channels-last, SDPA; texture jobs on Spot at 512² renders for batch 1 and 4, without and with
   `torch.compile` of the UNet: ms per step, ms of the step's batched UNet+ControlNet forward alone (its last
   call replayed), their ratio, the stage breakdown from a device-synchronised run, and peak memory.
3. sd21: SD 2.1-base UNet + VAE (v-prediction scheduler, the SD 2.x path) — guidance steps at 512², batch 1 and 4.
4. if: IF-I-XL stage I (bench/guidance.py's reconstruction) with T5-XXL-shaped random text embeddings (77 × 4096)
   — guidance steps at 64², batch 1 and 4.
5. generate: text to mesh's two stages (bench/generate.py's CUDA benchmark: IF-I-XL coarse, SD 2.1-base refine).
6. edit: the edit task (fit + Eq. 11 steps) with the SD 1.5 architecture at 512², batch 1.
7. scaling: texture step time against mesh faces, bake time against texture size, step time against batch
   (bench/texture.py's `scaling_rows`).
`--dry-run` runs the same code on the CPU with tiny widths, 64² renders and a step or two per row, and
`torch.compile(backend="eager")`, so the script is exercised by the test suite
(tests/test_gpu_readiness.py) between GPU runs. Random weights: timings and memory only, no image quality.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

TIMER_KEYS = ("render", "to_model_space", "unet", "backward", "optimiser")


@dataclass(frozen=True)
class CheckPlan:
    """What one run measures and at which size.

    Attributes:
        dry_run: tiny configs on the CPU (script check) instead of full size on CUDA.
        device: where the models run.
        dtype: weight dtype (fp16 on CUDA, fp32 in the dry run).
        render: texture/edit render size in pixels (the SD UNet's own size).
        texture: bake size of the texture and edit jobs.
        steps: timed steps per row.
        warmup: steps of the untimed job before each row (kernels, allocator, compilation).
        profile_steps: steps of the device-synchronised job that gives the stage breakdown.
        repeats: replays of the batched UNet+ControlNet forward timed alone.
        fit_steps: the edit job's reconstruction steps at most.
        batches: texture batch sizes.
        compile_batches: texture batch sizes timed with `torch.compile` too (each is a compilation).
        compile_backend: torch.compile backend ("inductor" on CUDA, "eager" in the dry run).
        compile_cost_s: budget a compiled row needs (compilation included).
    """

    dry_run: bool
    device: torch.device
    dtype: torch.dtype
    render: int
    texture: int
    steps: int
    warmup: int
    profile_steps: int
    repeats: int
    fit_steps: int
    batches: tuple[int, ...] = (1, 4)
    compile_batches: tuple[int, ...] = (1, 4)
    compile_backend: str = "inductor"
    compile_cost_s: float = 150.0

    @classmethod
    def make(cls, dry_run: bool) -> CheckPlan:
        """The full-size CUDA plan, or the tiny CPU one.

        Args:
            dry_run: the tiny CPU plan.
        """
        if dry_run:
            return cls(
                True,
                torch.device("cpu"),
                torch.float32,
                render=64,
                texture=64,
                steps=1,
                warmup=1,
                profile_steps=1,
                repeats=1,
                fit_steps=2,
                compile_batches=(1,),
                compile_backend="eager",
                compile_cost_s=5.0,
            )
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device (use --dry-run on a CPU)")
        return cls(
            False,
            torch.device("cuda"),
            torch.float16,
            render=512,
            texture=1024,
            steps=15,
            warmup=3,
            profile_steps=6,
            repeats=10,
            fit_steps=150,
        )


class Budget:
    """Wall-time budget of the whole check; sections ask before they start.

    Args:
        seconds: the budget.
    """

    def __init__(self, seconds: float):
        self.start = time.perf_counter()
        self.seconds = float(seconds)

    def used(self) -> float:
        """Seconds since the check started."""
        return time.perf_counter() - self.start

    def allows(self, need: float) -> bool:
        """Whether `need` more seconds fit.

        Args:
            need: the section's expected cost in seconds.
        """
        return self.used() + need <= self.seconds


@dataclass
class Report:
    """Everything the check found; written out again after every row so a killed run still leaves a table.

    Attributes:
        out: output folder.
        env: device, versions and settings.
        rows: one dict per timed case (see `ROW_COLUMNS`).
        scaling: bench/texture.py `scaling_rows` output.
        tests: the CUDA tests' command, return code and summary line.
        skipped: sections or rows the budget did not hold, with the reason.
        section_s: wall seconds per section.
        errors: section → traceback tail of a section that raised.
    """

    out: Path
    env: dict
    rows: list[dict] = field(default_factory=list)
    scaling: list[dict] = field(default_factory=list)
    tests: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    section_s: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        """Append a row and rewrite the files.

        Args:
            row: keys of `ROW_COLUMNS` (missing ones print as "–").
        """
        self.rows.append(row)
        self.write()

    def skip(self, what: str) -> None:
        """Record a skipped section or row and rewrite the files.

        Args:
            what: what was skipped and why.
        """
        self.skipped.append(what)
        print(f"gpu_check: skipped {what}", flush=True)
        self.write()

    def write(self, wall_s: float | None = None) -> None:
        """Write gpu_check.json and gpu_check.md to `out`.

        Args:
            wall_s: the check's total wall seconds, once known.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        data = {
            "env": self.env,
            "dry_run": self.env["dry_run"],
            "rows": self.rows,
            "scaling": self.scaling,
            "tests": self.tests,
            "skipped": self.skipped,
            "section_s": self.section_s,
            "errors": self.errors,
            "wall_s": wall_s,
        }
        (self.out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
        (self.out / "gpu_check.md").write_text(self.markdown(wall_s))

    def markdown(self, wall_s: float | None = None) -> str:
        """The report as markdown: header, main table, scaling table, tests and skipped lines."""
        e = self.env
        lines = [
            f"## GPU check — {e['device_name']}{' (DRY RUN: tiny configs on the CPU)' if e['dry_run'] else ''}",
            "",
            f"{e['date']}; torch {e['torch']} (CUDA {e['cuda']}, cuDNN {e['cudnn']}), diffusers {e['diffusers']}, "
            f"Python {e['python']}; weights {e['dtype']}, channels-last and SDPA on CUDA; random weights and "
            "random text embeddings (timings and memory only)."
            + (f" Wall {wall_s:.0f} s." if wall_s is not None else ""),
            "",
        ]
        lines += [table(ROW_COLUMNS, self.rows), ""]
        if self.scaling:
            lines += [
                "Scaling (bench/texture.py `scaling_rows`):",
                "",
                table(SCALING_COLUMNS, self.scaling),
                "",
            ]
        if self.tests:
            t = self.tests
            lines += [
                f"CUDA tests (`{t.get('command', '')}`): {t.get('summary', '')} (exit {t.get('returncode')})",
                "",
            ]
        if self.skipped:
            lines += ["Skipped: " + "; ".join(self.skipped), ""]
        if self.errors:
            lines += ["Failed sections (tracebacks in gpu_check.json): " + ", ".join(self.errors), ""]
        if self.section_s:
            lines += ["Section seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.section_s.items()), ""]
        return "\n".join(lines)


ROW_COLUMNS = (
    ("case", "case", "{}"),
    ("batch", "B", "{}"),
    ("compile", "compile", "{}"),
    ("ms_step", "ms/step", "{:.1f}"),
    ("fwd_ms", "UNet(+CN) fwd ms", "{:.1f}"),
    ("ratio", "step ÷ fwd", "{:.2f}"),
    ("unet_batch", "UNet batch", "{}"),
    ("render_ms", "render ms", "{:.1f}"),
    ("encode_ms", "VAE encode ms", "{:.1f}"),
    ("guidance_ms", "guidance ms", "{:.1f}"),
    ("backward_ms", "backward ms", "{:.1f}"),
    ("optimiser_ms", "optimiser ms", "{:.1f}"),
    ("peak_gib", "peak GiB", "{:.2f}"),
    ("note", "note", "{}"),
)
SCALING_COLUMNS = (
    ("axis", "axis", "{}"),
    ("value", "value", "{}"),
    ("batch", "B", "{}"),
    ("ms_step", "ms/step", "{:.1f}"),
    ("render_ms", "render ms", "{:.1f}"),
    ("bake_s", "bake s", "{:.2f}"),
    ("peak_gib", "peak GiB", "{:.2f}"),
)


def _jsonable(value):
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def table(columns, rows: list[dict]) -> str:
    """A markdown table of `rows` with `columns` = ((key, heading, format), ...); absent/NaN cells print "–".

    Args:
        columns: the column spec.
        rows: the row dicts.
    """

    def cell(row: dict, key: str, fmt: str) -> str:
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return fmt.format(v)

    out = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join(out)


def environment(plan: CheckPlan) -> dict:
    """Device, library versions and settings of this run."""
    import diffusers

    cuda = plan.device.type == "cuda"
    return {
        "dry_run": plan.dry_run,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device_name": torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "dtype": str(plan.dtype),
        "plan": {k: str(v) for k, v in asdict(plan).items()},
    }


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


def fake_text(prior, dim: int, length: int = 77, seed: int = 0) -> None:
    """Give `prior` random, per-prompt cached text embeddings of shape (1, length, dim) (no text encoder weights).

    Args:
        prior: the prior (its `encode_prompts` is replaced).
        dim: embedding width (768 SD 1.5, 1024 SD 2.x, 4096 T5-XXL for IF).
        length: tokens.
        seed: seed of the first prompt's embedding.
    """
    cache: dict[str, torch.Tensor] = {}

    def encode(prompts: list[str]) -> torch.Tensor:
        for p in prompts:
            if p not in cache:
                g = torch.Generator().manual_seed(seed + len(cache))
                cache[p] = torch.randn(1, length, dim, generator=g).to(prior.device)
        return torch.cat([cache[p] for p in prompts])

    prior.encode_prompts = encode


# ---------------------------------------------------------------------------------------------------- models


def configs(plan: CheckPlan) -> dict[str, dict]:
    """UNet/VAE configs: the published architectures, or tiny widths of the same block layout in the dry run."""
    from generate import SD21_BASE_UNET, _shrink  # bench/generate.py
    from guidance import IF_I_XL_UNET, SD15_UNET, SD15_VAE  # bench/guidance.py

    if not plan.dry_run:
        return {"sd15": SD15_UNET, "sd21": SD21_BASE_UNET, "if": IF_I_XL_UNET, "vae": SD15_VAE}
    blocks = (32, 64, 64, 64)
    size = plan.render // 8
    return {
        "sd15": dict(_shrink(SD15_UNET, blocks), sample_size=size),
        "sd21": dict(_shrink(SD21_BASE_UNET, blocks), sample_size=size),
        "if": dict(_shrink(IF_I_XL_UNET, blocks), sample_size=plan.render // 2),
        "vae": dict(SD15_VAE, block_out_channels=(32, 32, 64, 64), norm_num_groups=8, layers_per_block=1),
    }


def billions(module) -> str:
    """Parameters as "0.86 B" (or "1.2 M" below 10 M)."""
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e9:.2f} B" if n >= 1e7 else f"{n / 1e6:.1f} M"


def build_sd(
    plan: CheckPlan, unet_cfg: dict, vae_cfg: dict, controlnet: bool, prediction_type: str, name: str
):
    """A StableDiffusionPrior with random weights built directly on the device (optionally + a depth ControlNet).

    Args:
        plan: device and dtype.
        unet_cfg, vae_cfg: diffusers configs.
        controlnet: add a depth ControlNet initialised from the UNet (ControlNetModel.from_unet).
        prediction_type: the scheduler's "epsilon" or "v_prediction".
        name: the prior's name.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from engine.priors.base import prepare_unet
    from engine.priors.controlnet import ControlNetStack
    from engine.priors.stable_diffusion import StableDiffusionPrior
    from engine.priors.tiny import sd_ddim_scheduler

    with torch.device(plan.device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        net = ControlNetModel.from_unet(unet) if controlnet else None
    sizes = (
        f"UNet {billions(unet)}"
        + (f" + CN {billions(net)}" if net is not None else "")
        + f" + VAE {billions(vae)}"
    )
    stack = None
    if net is not None:
        res = unet_cfg["sample_size"] * 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        stack = ControlNetStack({"depth": prepare_unet(net, plan.device, plan.dtype)}, {"depth": 1.0}, res)
    prior = StableDiffusionPrior(
        name=name,
        unet=unet,
        vae=vae,
        controlnet=stack,
        text=None,
        device=plan.device,
        dtype=plan.dtype,
        scheduler=sd_ddim_scheduler(prediction_type),
    )
    fake_text(prior, unet_cfg["cross_attention_dim"])
    prior.sizes = sizes
    return prior


def build_if(plan: CheckPlan, unet_cfg: dict):
    """IF-I-XL stage I (pixel prior) with random weights and T5-XXL-shaped random text embeddings."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from engine.priors.pixel import PixelPrior

    with torch.device(plan.device):
        unet = UNet2DConditionModel(**unet_cfg)
    sizes = f"UNet {billions(unet)}"
    prior = PixelPrior(
        name="if-i-xl-arch",
        family="if",
        unet=unet,
        text=None,
        device=plan.device,
        dtype=plan.dtype,
        scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range"),
    )
    fake_text(prior, unet_cfg["encoder_hid_dim"])
    prior.sizes = sizes
    return prior


def spot() -> dict:
    """Spot (5.9k faces, with UVs) as texture-job arrays."""
    from engine.mesh import load_mesh, load_texture_image

    m = load_mesh(REPO / "engine" / "assets" / "meshes" / "spot.obj", up="y")
    tex = load_texture_image(REPO / "engine" / "assets" / "meshes" / "spot_texture.png")
    return {"vertices": m.vertices, "faces": m.faces.astype(np.int32), "uvs": m.uvs, "texture": tex}


# ---------------------------------------------------------------------------------------------------- sections


def run_gpu_tests(plan: CheckPlan, budget: Budget, report: Report) -> None:
    """`pytest -m gpu` over every test file that uses the marker; log to gpu_tests.txt."""
    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").glob("test_*.py")
        if "pytest.mark.gpu" in p.read_text(encoding="utf-8")
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *files]
    limit = max(30.0, min(180.0, budget.seconds - budget.used() - 60))
    try:
        proc = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=limit)
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, rc = f"{exc.stdout or ''}{exc.stderr or ''}\n(timed out after {limit:.0f} s)", "timeout"
    (report.out / "gpu_tests.txt").write_text(log if isinstance(log, str) else log.decode())
    lines = [ln for ln in str(log).splitlines() if ln.strip()]
    summary = next(
        (
            ln.strip("= ")
            for ln in reversed(lines)
            if " in " in ln
            and ("passed" in ln or "skipped" in ln or "failed" in ln or "deselected" in ln or "error" in ln)
        ),
        lines[-1] if lines else "",
    )
    report.tests = {
        "command": "pytest -q -m gpu " + " ".join(files),
        "returncode": rc,
        "summary": summary,
        "files": files,
    }
    print(f"gpu_check: CUDA tests: {summary} (exit {rc})", flush=True)
    report.write()


def texture_job(plan: CheckPlan, prior, mesh: dict, batch: int, steps: int, profile: bool = False) -> dict:
    """One texture job on `mesh`; returns its stats.

    Args:
        plan: sizes and device.
        prior: the prior.
        mesh: texture-job arrays.
        batch: views per step.
        steps: optimisation steps.
        profile: device-synchronised stage clocks.
    """
    from csd_blender.protocol.params import TextureParams
    from engine.tasks.texture import make_texture_job, run_texture

    p = TextureParams(
        prompt="a brown cow with white spots",
        steps=steps,
        batch_size=batch,
        render_size=plan.render,
        texture_size=plan.texture,
        device=plan.device.type,
        progress_every=steps,
        preview_size=64,
    )
    arrays = {k: v for k, v in mesh.items() if k != "texture"}
    return run_texture(make_texture_job(p, arrays), prior=prior, profile=profile).stats


def texture_row(plan: CheckPlan, prior, mesh: dict, batch: int, variant: str) -> dict:
    """Warm-up job, timed job (ms/step, peak memory, the last UNet call replayed alone), profiled job (stages).

    Args:
        plan: sizes and device.
        prior: the SD 1.5 + depth ControlNet prior (its UNet compiled, or its tiny encoder set, per `variant`).
        mesh: texture-job arrays.
        batch: views per step.
        variant: "eager", "tiny VAE" or "compile".
    """
    texture_job(plan, prior, mesh, batch, plan.warmup)
    reset_peak(plan.device)
    rec = ForwardRecorder(prior)
    try:
        st = texture_job(plan, prior, mesh, batch, plan.steps)
        peak = peak_gib(plan.device)
        fwd = rec.time_ms(plan.repeats)
        unet_batch = rec.batch
    finally:
        rec.close()
    prof = texture_job(plan, prior, mesh, batch, plan.profile_steps, profile=True)
    per = {k: 1000 * v / prof["steps_run"] for k, v in prof["seconds_per_stage"].items()}
    ms = 1000 * st["loop_seconds"] / st["steps_run"]
    encoder = " + TAESD-arch encoder" if variant == "tiny VAE" else ""
    return {
        "section": "texture",
        "variant": variant,
        "case": f"texture, SD 1.5 + depth CN ({prior.sizes}){encoder}, Spot, {plan.render}²",
        "batch": batch,
        "compile": "on" if variant == "compile" else "off",
        "ms_step": ms,
        "fwd_ms": fwd,
        "ratio": ms / fwd,
        "unet_batch": unet_batch,
        "render_ms": per["render"],
        "encode_ms": per["to_model_space"],
        "guidance_ms": per["unet"],
        "backward_ms": per["backward"],
        "optimiser_ms": per["optimiser"],
        "peak_gib": peak,
        "bake_s": st["seconds_per_stage"]["bake"],
        "profiled_ms_step": sum(per[k] for k in TIMER_KEYS),
        "note": f"{plan.steps} steps; stages from {plan.profile_steps} synchronised steps",
    }


def tiny_encoder(plan: CheckPlan):
    """A random-weight AutoencoderTiny: the TAESD architecture (diffusers' defaults), tiny widths in the dry run."""
    from diffusers import AutoencoderTiny

    kw = {}
    if plan.dry_run:
        kw = {
            "encoder_block_out_channels": (8,) * 4,
            "decoder_block_out_channels": (8,) * 4,
            "num_encoder_blocks": (1,) * 4,
            "num_decoder_blocks": (1,) * 4,
        }
    with torch.device(plan.device):
        return AutoencoderTiny(**kw)


def texture_section(plan: CheckPlan, budget: Budget, report: Report, prior, mesh: dict) -> None:
    """Texture rows: eager for every batch, then with a TAESD-architecture encoder (the `tiny_vae` option), then
    with `torch.compile` of the UNet (each compiled batch size is one compilation)."""
    from engine.priors.base import prepare_unet

    eager = prior.unet
    variants = (
        ("eager", plan.batches),
        ("tiny VAE", plan.compile_batches),
        ("compile", plan.compile_batches),
    )
    for variant, batches in variants:
        if variant == "compile":
            prior.unet = torch.compile(eager, backend=plan.compile_backend)
        elif variant == "tiny VAE":
            prior.encoder = prepare_unet(tiny_encoder(plan), plan.device, plan.dtype)
        try:
            for batch in batches:
                need = plan.compile_cost_s if variant == "compile" else (45.0 if not plan.dry_run else 2.0)
                if not budget.allows(need):
                    report.skip(f"texture B={batch} {variant} (budget)")
                    continue
                try:
                    report.add(texture_row(plan, prior, mesh, batch, variant))
                except Exception as exc:  # a compiler or encoder failure is a finding, not the end
                    if variant == "eager":
                        raise
                    report.errors[f"texture B={batch} {variant}"] = "".join(traceback.format_exception(exc))[
                        -3000:
                    ]
                    report.write()
        finally:
            prior.unet, prior.encoder = eager, None
            if variant == "compile":
                torch._dynamo.reset()


def guidance_rows(
    plan: CheckPlan, budget: Budget, report: Report, section: str, label: str, prior, preset: str
) -> None:
    """bench/guidance.py's loop (model space → guidance → backward → Adam) on a learnable image, B = 1 and 4."""
    from guidance import run_case  # bench/guidance.py

    from engine.guidance import PromptEmbeddings, build_guidance

    emb = prior.encode_prompts(["a cow", "", "ugly"])
    prompts = PromptEmbeddings(cond=emb[:1], null=emb[1:2], neg=emb[2:])
    for batch in plan.batches:
        if not budget.allows(30.0 if not plan.dry_run else 1.0):
            report.skip(f"{section} B={batch} (budget)")
            continue
        rec = ForwardRecorder(prior)
        try:
            r = run_case(label, prior, build_guidance(preset), prompts, batch, plan.steps, warmup=plan.warmup)
            fwd, unet_batch = rec.time_ms(plan.repeats), rec.batch
        finally:
            rec.close()
        report.add(
            {
                "section": section,
                "case": f"{label} ({prior.sizes}), {preset}, {prior.resolution}²",
                "batch": batch,
                "compile": "off",
                "ms_step": r["ms/step"],
                "fwd_ms": fwd,
                "ratio": r["ms/step"] / fwd,
                "unet_batch": unet_batch,
                "peak_gib": r["peak MiB"] / 1024 if plan.device.type == "cuda" else float("nan"),
                "note": "learnable image, no render",
            }
        )


def generate_section(plan: CheckPlan, report: Report) -> None:
    """Text to mesh's coarse and refine stages through bench/generate.py's CUDA benchmark."""
    import generate  # bench/generate.py

    for r in generate.cuda_bench(plan.steps, tiny=plan.dry_run):
        parts = r["parts"]
        report.add(
            {
                "section": "generate",
                "case": f"generate {r['stage']}",
                "batch": 4 if "coarse" in r["stage"] else 1,
                "compile": "off",
                "ms_step": r["ms_per_step"],
                "fwd_ms": r["unet_ms"],
                "ratio": r["ratio"],
                "render_ms": 1000 * parts.get("render", float("nan")),
                "peak_gib": r["peak_gib"],
                "note": f"parts s/step {parts}; samples/ray {r['samples_per_ray']}",
            }
        )


def edit_section(plan: CheckPlan, report: Report, sd, mesh: dict) -> None:
    """One edit job (fit, then Eq. 11 steps) with the SD 1.5 architecture (no ControlNet), batch 1."""
    from csd_blender.protocol.params import EditParams
    from engine.priors.stable_diffusion import StableDiffusionPrior
    from engine.tasks.edit import make_edit_job, run_edit

    prior = StableDiffusionPrior(
        name="sd15-arch",
        unet=sd.unet,
        vae=sd.vae,
        scheduler=sd.scheduler,
        text=None,
        device=plan.device,
        dtype=plan.dtype,
    )
    prior.encode_prompts, prior.sizes = sd.encode_prompts, sd.sizes.split(" + CN")[0] + " + VAE"
    p = EditParams(
        target_prompt="a blue cow",
        edit_prompt="a spotted cow",
        steps=plan.steps,
        batch_size=1,
        render_size=plan.render,
        texture_size=plan.texture,
        fit_max_steps=plan.fit_steps,
        device=plan.device.type,
        progress_every=plan.steps,
        preview_size=64,
    )
    reset_peak(plan.device)
    rec = ForwardRecorder(prior)
    try:
        st = run_edit(make_edit_job(p, mesh), prior=prior).stats
        fwd, unet_batch = rec.time_ms(plan.repeats), rec.batch
    finally:
        rec.close()
    per = st["seconds_per_stage"]
    ms = 1000 * sum(per[k] for k in TIMER_KEYS) / max(st["steps_run"], 1)
    report.add(
        {
            "section": "edit",
            "case": f"edit, SD 1.5 ({prior.sizes}), Spot, {plan.render}²",
            "batch": 1,
            "compile": "off",
            "ms_step": ms,
            "fwd_ms": fwd,
            "ratio": ms / fwd,
            "unet_batch": unet_batch,
            "peak_gib": peak_gib(plan.device),
            "note": f"fit {per['fit']:.1f} s over {st['fit_steps']} steps; host stage clocks",
        }
    )


def scaling_section(plan: CheckPlan, report: Report, prior) -> None:
    """bench/texture.py's scaling tables with the SD 1.5 + depth ControlNet prior (eager)."""
    from texture import scaling_rows  # bench/texture.py

    if plan.dry_run:
        kw = {"faces": (100, 400), "sizes": (64, 128), "batches": (1, 2), "steps": 1}
    else:
        kw = {
            "faces": (1_000, 10_000, 100_000, 1_000_000),
            "sizes": (512, 1024, 2048, 4096),
            "batches": (1, 2, 4, 8),
            "steps": 5,
        }
    report.scaling = scaling_rows(prior, render_size=plan.render, device=plan.device.type, **kw)
    report.write()


SECTIONS = ("tests", "texture", "sd21", "if", "generate", "edit", "scaling")


def run_section(name: str, need_s: float, budget: Budget, report: Report, fn) -> None:
    """Run one section if `need_s` fits the budget; an error is recorded (and fails the check) but the next
    section still runs.

    Args:
        name: section name.
        need_s: its expected cost.
        budget: the wall-time budget.
        report: the report.
        fn: the section, called without arguments.
    """
    if not budget.allows(need_s):
        report.skip(f"{name} (budget: {budget.used():.0f} of {budget.seconds:.0f} s used)")
        return
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - one broken section must not lose the rest
        report.errors[name] = "".join(traceback.format_exception(exc))[-3000:]
        print(f"gpu_check: section {name} failed:\n{report.errors[name]}", file=sys.stderr, flush=True)
    report.section_s[name] = round(time.perf_counter() - t0, 1)
    print(f"gpu_check: {name} took {report.section_s[name]:.1f} s ({budget.used():.0f} s used)", flush=True)
    report.write()


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns the exit status (1 when a section raised)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, required=True, help="output folder (gpu_check.md, .json, gpu_tests.txt)"
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny configs on the CPU (checks the script)")
    ap.add_argument(
        "--budget-s", type=float, default=420.0, help="wall-time budget; sections past it are skipped"
    )
    ap.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (a rerun of what a first run had to skip)",
    )
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    budget = Budget(args.budget_s)
    plan = CheckPlan.make(args.dry_run)
    report = Report(out=args.out, env=environment(plan))
    report.write()
    full = not plan.dry_run
    cfg, mesh, models = configs(plan), spot(), {}

    def sd15():
        if "sd" not in models:
            models["sd"] = build_sd(
                plan,
                cfg["sd15"],
                cfg["vae"],
                controlnet=True,
                prediction_type="epsilon",
                name="sd15-arch+depth",
            )
        return models["sd"]

    def sd21() -> None:
        prior = build_sd(
            plan,
            cfg["sd21"],
            cfg["vae"],
            controlnet=False,
            prediction_type="v_prediction",
            name="sd21-base-arch",
        )
        guidance_rows(plan, budget, report, "sd21", "SD 2.1-base arch, v-prediction", prior, "csd-sd-refine")

    def if_stage() -> None:
        guidance_rows(plan, budget, report, "if", "IF-I-XL stage I arch", build_if(plan, cfg["if"]), "csd-if")

    sections = {  # name → (seconds it needs on a GPU, the section)
        "tests": (30, lambda: run_gpu_tests(plan, budget, report)),
        "texture": (60, lambda: texture_section(plan, budget, report, sd15(), mesh)),
        "sd21": (40, sd21),
        "if": (60, if_stage),
        "generate": (100, lambda: generate_section(plan, report)),
        "edit": (45, lambda: edit_section(plan, report, sd15(), mesh)),
        "scaling": (60, lambda: scaling_section(plan, report, sd15())),
    }
    for name in SECTIONS:
        if name in chosen:
            reset_peak(plan.device)
            need, fn = sections[name]
            run_section(name, need if full else 1, budget, report, fn)
    report.write(wall_s=budget.used())
    print(report.markdown(budget.used()), flush=True)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
