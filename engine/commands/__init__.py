"""The job commands on files: `texture`/`demo`, `edit`, `generate`/`generate-demo` — each one module with its
argparse options, args → protocol params, and a `run_files` that loads the inputs, runs the task and writes the
textured mesh, PNGs and job.json; `common` holds what they share (progress bar, output folder, job.json records,
masks, `JobCommand`). Used by `cli/` (which prints their outputs and error lines) and by batch lines. May import
tasks/, mesh/, images and the protocol; never serve/, batch/ or cli/."""
