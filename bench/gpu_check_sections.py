"""The GPU check's measuring sections (bench/gpu_check.py runs them in order): the CUDA tests, texture rows
(eager, tiny VAE, compiled), guidance rows of a prior, text to mesh's stages, an edit job, and the scaling tables."""

from __future__ import annotations

import subprocess
import sys
import traceback
from pathlib import Path

import torch
from gpu_check_models import tiny_encoder
from gpu_check_plan import Budget, CheckPlan
from gpu_check_report import Report
from gpu_check_timing import TIMER_KEYS, ForwardRecorder, peak_gib, reset_peak

REPO = Path(__file__).resolve().parents[1]


def run_gpu_tests(plan: CheckPlan, budget: Budget, report: Report) -> None:
    """`pytest -m gpu` over every test file under tests/ that uses the marker; log to gpu_tests.txt."""
    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
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
