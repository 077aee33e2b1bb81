"""HO3D challenge files: the one place where joints and vertices change order and axes.

The challenge (shreyashampali/ho3d, ``pred.py`` and ``eval.py``; its README says to upload
``pred.zip`` made by ``zip -j pred.zip pred.json``) reads one JSON document,
``[joints_list, verts_list]``, with N entries of 21x3 joints and N entries of 778x3 vertices, in
metres and in OpenGL camera axes (x right, y up, z backward: our y and z negated). Joints are in the
HO3D order, MANO's 16 joints followed by the five fingertips::

    wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3, tips: thumb, index, middle, ring, pinky

The ground-truth files a challenge user may hold (``evaluation_xyz.json``,
``evaluation_verts.json``) are single lists in the same order and axes.

Inside the code joints follow ``utils.mano.JOINT_NAMES`` and camera axes are x right, y down,
z forward; :func:`to_ho3d` / :func:`from_ho3d` convert, and the readers and writers here return and
take the code's convention.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from errors import UserError
from utils.mano import JOINT_NAMES, MANO_TO_JOINTS, NUM_JOINTS, NUM_VERTS

ZIP_MEMBER = 'pred.json'  # the name the challenge's evaluation looks for inside the upload
DECIMALS = 6  # written coordinates are rounded to 1 micrometre: half the file size, metrics unchanged
# MANO_TO_JOINTS picks, for each code joint, its index in the HO3D order; argsort inverts it.
HO3D_TO_CODE = np.asarray(MANO_TO_JOINTS)
CODE_TO_HO3D = np.argsort(HO3D_TO_CODE)
HO3D_JOINT_NAMES = tuple(JOINT_NAMES[i] for i in CODE_TO_HO3D)
OPENGL_FLIP = np.array([1.0, -1.0, -1.0])  # our camera axes <-> OpenGL camera axes (an involution)


def _check(joints: np.ndarray, verts: np.ndarray) -> None:
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f'joints must have shape (N, {NUM_JOINTS}, 3), got {joints.shape}')
    if verts.ndim != 3 or verts.shape[1:] != (NUM_VERTS, 3) or len(verts) != len(joints):
        raise ValueError(f'verts must have shape ({len(joints)}, {NUM_VERTS}, 3), got {verts.shape}')


def to_ho3d(joints: npt.ArrayLike, verts: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Code convention -> challenge convention.

    Args:
        joints: (N, 21, 3) metres, ``JOINT_NAMES`` order, camera axes x right, y down, z forward.
        verts: (N, 778, 3) metres, same axes.
    Returns:
        joints (N, 21, 3) in HO3D order and OpenGL axes, verts (N, 778, 3) in OpenGL axes.
    """
    joints, verts = np.asarray(joints, dtype=np.float64), np.asarray(verts, dtype=np.float64)
    _check(joints, verts)
    return joints[:, CODE_TO_HO3D] * OPENGL_FLIP, verts * OPENGL_FLIP


def from_ho3d(joints: npt.ArrayLike, verts: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Challenge convention -> code convention; the inverse of :func:`to_ho3d`. Shapes as there."""
    joints, verts = np.asarray(joints, dtype=np.float64), np.asarray(verts, dtype=np.float64)
    _check(joints, verts)
    return joints[:, HO3D_TO_CODE] * OPENGL_FLIP, verts * OPENGL_FLIP


def write_submission(joints: npt.ArrayLike, verts: npt.ArrayLike, json_path: str | Path,
                     zip_path: str | Path) -> None:
    """Write a challenge submission: ``json_path`` and ``zip_path`` holding it as ``pred.json``.

    Coordinates are rounded to :data:`DECIMALS` decimals of a metre (at most 0.5 micrometre off),
    which halves the size of the upload without changing any metric at its printed precision.

    Args:
        joints: (N, 21, 3), verts: (N, 778, 3), both in the code's convention (metres,
            ``JOINT_NAMES`` order, camera axes); converted with :func:`to_ho3d`.
    """
    ho3d_joints, ho3d_verts = to_ho3d(joints, verts)
    text = json.dumps([np.round(ho3d_joints, DECIMALS).tolist(),
                       np.round(ho3d_verts, DECIMALS).tolist()])
    json_path, zip_path = Path(json_path), Path(zip_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(text)
    with zipfile.ZipFile(zip_path, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(ZIP_MEMBER, text)


def _load_json(path: Path):
    if path.is_dir():
        raise UserError(f'{path} is a folder; give the path of the JSON (or zip) file in it.')
    if not path.is_file():
        raise UserError(f'{path} does not exist; give the path of an existing file.')
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith('.json')]
                if ZIP_MEMBER in names:
                    names = [ZIP_MEMBER]
                if len(names) != 1:
                    raise UserError(f'{path} must hold one JSON file ({ZIP_MEMBER}), '
                                    f'found {len(names)}; zip only the prediction file.')
                if '/' in names[0]:
                    raise UserError(f'{path} holds {names[0]} inside a folder, where the challenge '
                                    f'server does not look; zip the file alone (zip -j).')
                return json.loads(zf.read(names[0]))
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        raise UserError(f'{path} is not valid JSON ({err}); pass a file written as JSON.') from err
    except OSError as err:
        raise UserError(f'cannot read {path} ({err.strerror or err}); check its permissions.') from err


def _array(data, path: Path, what: str, points: int) -> np.ndarray:
    """A list of ``points``x3 entries from ``path`` as (N, points, 3) float64, or a UserError."""
    if isinstance(data, list) and not data:
        raise UserError(f'{path}: {what} list is empty; it needs one entry per image.')
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 3 or arr.shape[1:] != (points, 3):
        shape = 'ragged or not numbers' if arr is None else 'x'.join(map(str, arr.shape))
        raise UserError(f'{path}: {what} must be a list of {points}x3 arrays of numbers, found {shape}; '
                        f'write it in the HO3D challenge format.')
    if not np.all(np.isfinite(arr)):
        raise UserError(f'{path}: {what} contain NaN or infinite values; fix that file.')
    return arr


def read_submission(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a challenge prediction file (``pred*.json`` or the ``.zip`` holding it).

    Returns:
        joints (N, 21, 3), verts (N, 778, 3) in the code's convention (see :func:`from_ho3d`).
    Raises:
        UserError naming the file when it is missing, not JSON, or not ``[joints, verts]`` of
        matching lengths and sizes.
    """
    path = Path(path)
    data = _load_json(path)
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(d, list) for d in data)):
        raise UserError(f'{path} must hold a list of two lists, [joints, vertices]; '
                        f'write it in the HO3D challenge format.')
    if len(data[0]) != len(data[1]):
        raise UserError(f'{path} has {len(data[0])} joint entries but {len(data[1])} vertex '
                        f'entries; both lists need one entry per image.')
    joints = _array(data[0], path, 'joints', NUM_JOINTS)
    verts = _array(data[1], path, 'vertices', NUM_VERTS)
    return from_ho3d(joints, verts)


def read_gt(joints_json: str | Path, verts_json: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read challenge-format ground truth: a JSON list of 21x3 joints and one of 778x3 vertices
    (HO3D order, OpenGL axes, metres). Returns them in the code's convention, (N,21,3), (N,778,3)."""
    joints_json, verts_json = Path(joints_json), Path(verts_json)
    joints = _array(_load_json(joints_json), joints_json, 'joints', NUM_JOINTS)
    verts = _array(_load_json(verts_json), verts_json, 'vertices', NUM_VERTS)
    if len(joints) != len(verts):
        raise UserError(f'{joints_json} has {len(joints)} entries but {verts_json} has '
                        f'{len(verts)}; use ground-truth files of the same split.')
    return from_ho3d(joints, verts)
