"""DexYCB results the official toolkit scores: absolute 3D joints per image, placed by the
closed-form camera fit.

The toolkit (NVlabs/dex-ycb-toolkit, ``dex_ycb_toolkit/hpe_eval.py``) reads a text file with one
line per sample, ``image_id, x1, y1, z1, ..., x21, y21, z21``: the id is the sample's index in the
toolkit's split (the annotation files' image ids, data/DEX_YCB/build_annotations.py), joints in
millimetres in the camera frame (x right, y down, z forward) and in the order of
``utils.mano.JOINT_NAMES``. Every sample with a hand needs a line. It reports three rows:
absolute (the joints as written), root-relative and Procrustes-aligned MPJPE.

The network predicts the hand relative to its wrist, so an absolute position must come from
somewhere: each hand is placed with :func:`utils.fit.fit_translation` (the closed-form fit the
demo's ``--fit`` uses), from the predicted 3D joints, the predicted 2D joints in the image and
the frame's own intrinsics. The absolute row then scores the full prediction, the other two the
shape and pose alone. Where no camera in front of the hand explains the 2D joints (a fit that
fails), the wrist is put on its 2D ray at the depth the weak-perspective scale implies.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.files import write_atomically
from utils.fit import FitError, fit_translation, fit_weak_perspective
from utils.mano import NUM_JOINTS

FALLBACK_DEPTH = 0.7   # metres: DexYCB's hands are 0.5-1 m from its cameras; used if no scale is found


def place_joints(joints_rel: np.ndarray, joints_2d: np.ndarray, focal: np.ndarray,
                 princpt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put root-relative hands in their cameras.

    Args:
        joints_rel: (N, 21, 3) metres, wrist at the origin, camera axes.
        joints_2d: (N, 21, 2) the predicted 2D joints, image pixels.
        focal, princpt: (N, 2) each frame's intrinsics, pixels.
    Returns:
        (N, 21, 3) absolute joints, metres, and (N,) bool: True where the fit failed and the
        weak-perspective fallback placed the hand.
    """
    placed = np.empty_like(np.asarray(joints_rel, dtype=np.float64))
    failed = np.zeros(len(placed), dtype=bool)
    for i, (rel, uv, f, c) in enumerate(zip(joints_rel, joints_2d, focal, princpt)):
        try:
            t = fit_translation(rel, uv, f, c)
        except FitError:
            failed[i] = True
            t = _fallback_translation(np.asarray(rel, dtype=np.float64), uv, f, c)
        placed[i] = rel + t
    return placed, failed


def _fallback_translation(rel: np.ndarray, uv: np.ndarray, focal: np.ndarray, princpt: np.ndarray) -> np.ndarray:
    """(3,) the wrist on the ray through its 2D position, at the depth mean(focal) / s of the
    weak-perspective scale s (pixels per metre), or FALLBACK_DEPTH where s is not positive."""
    scale, _ = fit_weak_perspective(rel, uv)
    depth = float(np.mean(focal)) / scale if scale > 0 else FALLBACK_DEPTH
    return np.array([*((uv[0] - princpt) / focal * depth), depth])


def write_results(path: str | Path, image_ids: np.ndarray, joints: np.ndarray) -> None:
    """Write the toolkit's results file (atomically): image_ids (N,) int, joints (N, 21, 3)
    absolute, metres (written in millimetres, 4 decimals: 0.1 micrometre)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or len(joints) != len(image_ids):
        raise ValueError(f'joints must have shape ({len(image_ids)}, {NUM_JOINTS}, 3), got {joints.shape}')
    mm = joints.reshape(len(joints), -1) * 1000.0
    text = ''.join(f'{int(i)},' + ','.join(f'{x:.4f}' for x in row) + '\n' for i, row in zip(image_ids, mm))
    write_atomically(Path(path), lambda tmp: tmp.write_text(text))
