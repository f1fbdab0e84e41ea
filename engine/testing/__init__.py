"""Fixtures for tests and benchmarks, not product code: tiny randomly initialised models in diffusers layout, built
from configs and saved so the real `from_pretrained` code loads them. May import anything below `tasks/`
(priors, guidance, render, fields, mesh) and third-party model libraries; nothing in the engine imports it."""
