"""Geometry between camera, image and crop: projection, 2D affine maps, in-plane rotation of 3D
joints and of the MANO global rotation, and left->right mirroring.

Conventions (docs/DESIGN.md): metres, camera axes x right, y down, z forward; image pixels (u, v) with
pixel centres at integer coordinates (OpenCV). 2D affine maps are (3, 3) matrices acting on
homogeneous column vectors ``[u, v, 1]``.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.rotation import axis_angle_to_matrix, matrix_to_axis_angle

_MIRROR_AA = np.array([1.0, -1.0, -1.0])  # axis-angle (a, b, c) of a mirrored (x -> -x) rotation


def cam2pixel(points: np.ndarray, focal: np.ndarray, princpt: np.ndarray) -> np.ndarray:
    """(N, 3) camera coordinates -> (N, 2) pixel coordinates: ``u = fx x / z + cx``."""
    points = np.asarray(points, dtype=np.float64)
    z = points[:, 2:3]
    return points[:, :2] / z * np.asarray(focal, dtype=np.float64) + np.asarray(princpt, dtype=np.float64)


def pixel2cam(uv: np.ndarray, depth: np.ndarray, focal: np.ndarray, princpt: np.ndarray) -> np.ndarray:
    """(N, 2) pixels and (N,) depths in metres -> (N, 3) camera coordinates (inverse of cam2pixel)."""
    uv = np.asarray(uv, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64).reshape(-1, 1)
    xy = (uv - np.asarray(princpt, dtype=np.float64)) / np.asarray(focal, dtype=np.float64) * depth
    return np.concatenate([xy, depth], axis=1)


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by a (3, 3) or (2, 3) affine matrix -> (N, 2)."""
    a = np.asarray(affine, dtype=np.float64)[:2]
    return np.asarray(points, dtype=np.float64) @ a[:, :2].T + a[:, 2]


def translation(tx: float, ty: float) -> np.ndarray:
    """(3, 3) 2D translation."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def rotation_2d(angle_deg: float) -> np.ndarray:
    """(3, 3) 2D rotation by ``angle_deg`` in image axes (x right, y down): a positive angle turns
    +x towards +y, i.e. clockwise as seen on screen."""
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def mirror_x(width: int) -> np.ndarray:
    """(3, 3) map of a left-right image flip: pixel u -> width - 1 - u."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_z(angle_deg: float) -> np.ndarray:
    """(3, 3) rotation of camera coordinates about the camera z axis by ``angle_deg``.

    Its x-y block is :func:`rotation_2d`, so rotating 3D points by it rotates their image
    projections by the same angle about the principal point.
    """
    r = np.eye(3)
    r[:2, :2] = rotation_2d(angle_deg)[:2, :2]
    return r


def rotate_points(points: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """(N, 3) points (e.g. root-relative joints) rotated by a (3, 3) matrix -> (N, 3)."""
    return np.asarray(points) @ np.asarray(rot, dtype=np.asarray(points).dtype).T


def rotate_global_pose(pose: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """(48,) MANO pose with its global rotation ``R_g`` replaced by ``rot @ R_g``, so that the posed
    hand is the original one rotated by ``rot`` about its root joint. Finger rotations are local
    and stay as they are."""
    out = np.array(pose, dtype=np.float32, copy=True)
    r_g = axis_angle_to_matrix(torch.as_tensor(out[:3], dtype=torch.float64))
    composed = torch.as_tensor(np.asarray(rot), dtype=torch.float64) @ r_g
    out[:3] = matrix_to_axis_angle(composed).numpy()
    return out


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """(..., 3k) axis-angle pose of a hand -> pose of its mirror image (x -> -x): every (a, b, c)
    becomes (a, -b, -c). With a model mirrored the same way (utils.mano.mirror_model, and MANO's
    left/right pair), the mirrored pose on the other side's model gives the mirrored hand."""
    pose = np.asarray(pose)
    return (pose.reshape(*pose.shape[:-1], -1, 3) * _MIRROR_AA).reshape(pose.shape).astype(pose.dtype)


def mirror_points(points: np.ndarray) -> np.ndarray:
    """(N, 3) root-relative (or camera) points mirrored x -> -x."""
    points = np.array(points, copy=True)
    points[:, 0] *= -1
    return points


def intrinsics(focal: tuple[float, float], princpt: tuple[float, float]) -> np.ndarray:
    """(3, 3) pinhole matrix from focal lengths and principal point in pixels."""
    return np.array([[focal[0], 0, princpt[0]], [0, focal[1], princpt[1]], [0, 0, 1]], dtype=np.float64)
