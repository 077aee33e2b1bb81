"""Shared fixtures: a random MANO-format model (for checks that must hold for ANY valid model) and
a tiny SYNTH set made once per session by the generator's command line; and the project logger
kept visible to caplog in every test, whatever ran before."""
import bootstrap  # noqa: F401  (threading defaults before torch is imported; pytest.ini sets the path)

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GENERATOR = Path(__file__).resolve().parents[1] / 'data' / 'SYNTH' / 'generate.py'

MANO_PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])


def random_mano_arrays(seed: int = 0) -> dict:
    """A MANO-format model with MANO's sizes and tree but random arrays, including non-zero
    pose-corrective blend shapes and a non-zero hands_mean."""
    rng = np.random.default_rng(seed)
    v, j = 778, 16
    weights = rng.random((v, j)) ** 4
    weights /= weights.sum(1, keepdims=True)
    j_reg = rng.random((j, v)) * (rng.random((j, v)) < 0.05)
    j_reg[:, 0] += 1e-3
    j_reg /= j_reg.sum(1, keepdims=True)
    kintree = np.stack([np.where(MANO_PARENTS < 0, 4294967295, MANO_PARENTS), np.arange(j)])
    return {
        'v_template': rng.normal(size=(v, 3)) * 0.04,
        'f': rng.integers(0, v, size=(1538, 3)).astype(np.uint32),
        'shapedirs': rng.normal(size=(v, 3, 10)) * 0.005,
        'posedirs': rng.normal(size=(v, 3, 135)) * 0.005,
        'J_regressor': j_reg,
        'weights': weights,
        'kintree_table': kintree.astype(np.int64),
        'hands_components': np.linalg.qr(rng.normal(size=(45, 45)))[0].T,
        'hands_mean': rng.normal(size=45) * 0.3,
    }


@pytest.fixture(autouse=True)
def project_log_reaches_caplog(monkeypatch):
    """logger.setup_logging (run in this process by the Trainer, test.py's and the demo's main)
    stops the 'interacthand' logger from propagating to the root logger. pytest 9 attaches caplog
    to such loggers too, but older versions (requirements.txt allows 7.4) listen at the root
    only: there a test that reads caplog would pass or fail by which tests ran before it."""
    monkeypatch.setattr(logging.getLogger('interacthand'), 'propagate', True)


@pytest.fixture
def mano_arrays() -> dict:
    return random_mano_arrays()


@pytest.fixture(scope='session')
def synth_set(tmp_path_factory) -> Path:
    """40 training + 10 evaluation SYNTH frames (seed 3)."""
    out = tmp_path_factory.mktemp('synth')
    cmd = [sys.executable, str(GENERATOR), '--num-train', '40', '--num-eval', '10', '--seed', '3',
           '--out', str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return out
