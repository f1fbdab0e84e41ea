"""Fixtures of the tests that talk to a real engine subprocess (test_server.py, test_server_malformed.py).

`engine` is module-scoped: each module that asks for it starts one engine (torch import, then the prior loads on
its first job) and stops it after its last test, which must find it exiting cleanly.
"""

from __future__ import annotations

import sys

import pytest
from paths import REPO

from csd_blender.link.client import EngineClient
from csd_blender.link.process import EngineProcess


@pytest.fixture(scope="module")
def prior_dir() -> str:
    """The bundled, trained toy prior (engine/assets/toy_prior): the engine's embedded default."""
    return "toy"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    proc = EngineProcess(sys.executable, log_file=log, device="cpu", cwd=REPO)
    proc.start(timeout_s=120)
    yield proc
    code = proc.stop(timeout_s=30)  # a clean exit takes 1-3 s idle; a loaded 2-core box can take over 6
    assert code == 0, f"engine exit code {code}\n{log.read_text()[-3000:]}"


@pytest.fixture
def client(engine):
    c = EngineClient(engine.endpoint, engine.token)
    c.connect(timeout_s=30)
    yield c
    c.close()
