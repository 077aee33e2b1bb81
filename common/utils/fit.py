"""Placing a root-relative hand in the camera: closed-form fits of 3D joints to 2D joints.

The network predicts the hand's shape and pose relative to its wrist (metres) and, separately,
where its joints lie in the image (pixels). Two placements reconcile them:

- :func:`fit_translation`: a pinhole camera (focal f, principal point c) and the translation t
  that puts the hand at ``X + t`` so that its projection best matches the 2D joints. Solved by
  linear least squares (below: a few reweighted linear solves, no non-linear optimiser and no
  initial guess).
- :func:`fit_weak_perspective`: u = s X + a (scale s in pixels per metre, 2D offset a), the
  limit of a distant camera; needs no focal length but says nothing about depth.

What is identifiable. Under a pinhole camera, scaling the hand about the camera centre changes
nothing in the image: ``f (s X + t) / (s Z + t_z) = f (X + t / s) / (Z + t_z / s)``. So a scale
and a translation cannot both be recovered from one view: every (s, t) has the same image as
(1, t / s). The fit therefore keeps the hand's metric size as predicted (from its MANO shape) and
solves for t only; a hand predicted 10 % too large comes out 10 % too far away. Likewise the
focal length trades off against depth (doubling f doubles t_z, up to perspective effects), so
t_z is only as right as the focal length given. Under weak perspective the scale is identifiable
but the depth is not.

Conventions (docs/DESIGN.md): metres, camera axes x right, y down, z forward; pixels with centres at
integer coordinates.
"""
from __future__ import annotations

import numpy as np

from utils.transforms import cam2pixel

REWEIGHT_STEPS = 3


def default_focal(width: int, height: int) -> float:
    """Focal length in pixels assumed for an image of unknown camera: its larger side.

    That is a horizontal field of view of 53 degrees on a landscape frame, close to the cameras
    of the hand-object datasets (HO3D: 617 px, SYNTH: about 620 px, both at 640 x 480) and of
    ordinary phone and web cameras (55-70 degrees)."""
    return float(max(width, height))


def image_center(width: int, height: int) -> np.ndarray:
    """(2,) principal point assumed for an image of unknown camera: its centre, in pixel
    coordinates with pixel centres at integers."""
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0])


class FitError(ValueError):
    """The 2D joints are not the image of the 3D joints from any camera in front of them."""


def fit_translation(joints_rel: np.ndarray, joints_2d: np.ndarray, focal: float | np.ndarray,
                    princpt: np.ndarray) -> np.ndarray:
    """The translation t (3,) that best projects ``joints_rel + t`` onto ``joints_2d``.

    joints_rel (N, 3) root-relative 3D joints in metres; joints_2d (N, 2) pixels; focal: f or
    (fx, fy) in pixels; princpt (2,) pixels. Needs N >= 2. Raises :class:`FitError` when the
    best fit puts the hand behind the camera (2D joints that are, e.g., a mirror image of the 3D
    ones).

    With the inverse depth ``q = 1 / tz`` and ``p = (tx, ty) / tz`` as unknowns, the projection
    ``u = fx (X + tx) / (Z + tz) + cx`` of joint i at (X, Y, Z), seen at (u, v), becomes linear:

        q (fx X - (u - cx) Z) + fx px = u - cx
        q (fy Y - (v - cy) Z) + fy py = v - cy

    2N equations, 3 unknowns, solved by least squares. The residual of a row is the pixel error
    times ``1 + q Z = (Z + tz) / tz``, close to 1 for a hand much smaller than its distance; the
    rows are then divided by that factor at the solution and solved again (a few times), which
    makes the residuals the pixel reprojection errors. With exact data every solve returns the
    true t; with noisy or inconsistent data the result is the geometric least-squares optimum
    to within a small fraction of a pixel. (Solving for t directly, with rows multiplied by the
    depth ``Z + tz``, is also linear but favours small depths: on 2D and 3D joints that disagree
    it pulls the hand towards the camera.)
    """
    x = np.asarray(joints_rel, dtype=np.float64)
    uv = np.asarray(joints_2d, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or uv.shape != (len(x), 2) or len(x) < 2:
        raise ValueError(f'joints_rel must be (N, 3) and joints_2d (N, 2) with N >= 2, got '
                         f'{x.shape} and {uv.shape}')
    f = np.broadcast_to(np.asarray(focal, dtype=np.float64), (2,))
    d = uv - np.asarray(princpt, dtype=np.float64)                        # (N, 2) centred pixels
    n = len(x)
    a = np.zeros((n, 2, 3))                                                # unknowns q, px, py
    a[:, :, 0] = f * x[:, :2] - d * x[:, 2:3]
    a[:, 0, 1], a[:, 1, 2] = f[0], f[1]
    weights = np.ones(n)
    for _ in range(REWEIGHT_STEPS):
        w = weights[:, None]
        q, px, py = np.linalg.lstsq((a * w[..., None]).reshape(-1, 3), (d * w).reshape(-1), rcond=None)[0]
        factor = 1.0 + q * x[:, 2]
        if q <= 0 or (factor <= 0).any():
            raise FitError('no camera in front of the hand projects the 3D joints onto the 2D joints '
                           f'(best inverse depth {q:.3g} 1/m, joint depth factors down to {factor.min():.3g})')
        weights = 1.0 / factor
    return np.array([px / q, py / q, 1.0 / q])


def reprojection_error(joints_cam: np.ndarray, joints_2d: np.ndarray, focal: float | np.ndarray,
                       princpt: np.ndarray) -> np.ndarray:
    """(N,) pixel distance between the projection of joints_cam (N, 3) (camera coordinates,
    metres) and joints_2d (N, 2)."""
    f = np.broadcast_to(np.asarray(focal, dtype=np.float64), (2,))
    return np.linalg.norm(cam2pixel(joints_cam, f, princpt) - np.asarray(joints_2d), axis=1)


def fit_weak_perspective(joints_rel: np.ndarray, joints_2d: np.ndarray) -> tuple[float, np.ndarray]:
    """Scale s (pixels per metre) and offset a (2,) minimising ``sum |s X_xy + a - uv|^2``.

    joints_rel (N, 3) metres (only x and y are used); joints_2d (N, 2) pixels. Closed form:
    a is the mean residual, s the least-squares ratio of the centred point sets.
    """
    xy = np.asarray(joints_rel, dtype=np.float64)[:, :2]
    uv = np.asarray(joints_2d, dtype=np.float64)
    xc, uc = xy - xy.mean(0), uv - uv.mean(0)
    denom = float((xc ** 2).sum())
    if denom == 0.0:
        raise ValueError('the 3D joints have no extent in x and y; a weak-perspective scale cannot be fitted')
    s = float((xc * uc).sum() / denom)
    return s, uv.mean(0) - s * xy.mean(0)
