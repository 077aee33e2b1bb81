"""Rotation conversions in torch: axis-angle <-> matrix <-> 6D (and the quaternion in between),
and the mean of a set of rotations.

The conversions are batched over any leading dimensions, differentiable, and stable at angle 0 and
near pi. Matrices rotate column vectors (``x' = R @ x``).
"""
import math

import torch
import torch.nn.functional as F

_SMALL = 1e-6  # squared sine of half the angle below which quaternion_to_axis_angle uses its series


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3): the cross-product matrix, ``skew(a) @ b == cross(a, b)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle (direction = axis, norm = angle in radians) -> (..., 3, 3).

    Rodrigues' formula ``R = I + a K + b K^2`` with ``K = skew(aa)``, ``a = sin(t)/t`` and
    ``b = (1 - cos(t))/t^2 = (sin(t/2)/(t/2))^2 / 2``, both through ``torch.sinc``, which is exact
    and smooth at t = 0 (few operations: this runs in every MANO forward pass).
    """
    t = torch.linalg.vector_norm(aa, dim=-1, keepdim=True)[..., None]          # (..., 1, 1)
    a = torch.sinc(t / math.pi)
    b = torch.sinc(t / (2 * math.pi)).square() / 2
    k = skew(aa)
    return torch.eye(3, dtype=aa.dtype, device=aa.device) + a * k + b * (k @ k)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 4) unit quaternion (w, x, y, z) with w >= 0.

    Picks, per matrix, the best-conditioned of the four algebraically equal formulas (the one whose
    divisor is largest), so it stays accurate for angles near pi.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * q_i^2 for i = w, x, y, z
    q_sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                        1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    q_abs = torch.sqrt(torch.clamp(q_sq, min=0) + 1e-12)  # 2|q_i|; the epsilon keeps sqrt'(0) finite
    # Row i: the quaternion scaled by 4 q_i, so dividing by 2|q_i| gives ±q.
    cands = torch.stack([
        torch.stack([q_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, q_sq[..., 1], m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, q_sq[..., 2], m21 + m12], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m12 + m21, q_sq[..., 3]], dim=-1),
    ], dim=-2) / (2 * q_abs[..., None])
    best = q_abs.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternion (w, x, y, z) -> (..., 3) axis-angle with angle in [0, pi]."""
    q = torch.where(q[..., :1] < 0, -q, q)
    w, xyz = q[..., :1], q[..., 1:]
    s2 = (xyz * xyz).sum(-1, keepdim=True)
    small = s2 < _SMALL
    s = torch.where(small, torch.ones_like(s2), s2).sqrt()
    angle = 2 * torch.atan2(s, w)
    # angle / sin(angle/2); near 0 use the series 2/w * (1 - s^2/(3 w^2)) of 2 atan(s/w) / s.
    factor = torch.where(small, 2 / w * (1 - s2 / (3 * w * w)), angle / s)
    return xyz * factor


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) axis-angle with angle in [0, pi]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3): Gram-Schmidt on two column vectors (Zhou et al., CVPR 2019).

    The 6 numbers are the first two columns of the matrix, column-major: ``(r00, r10, r20, r01,
    r11, r21)``, matching :func:`matrix_to_rot6d`.
    """
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, column-major."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def mean_rotation(m: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotations -> (3, 3): their chordal L2 mean, the rotation nearest (in the Frobenius
    norm) to the average of the matrices, found by SVD. Not differentiable where the average is
    rank-deficient (e.g. rotations spread evenly over all of SO(3))."""
    if m.dim() != 3 or m.shape[1:] != (3, 3):
        raise ValueError(f'expected rotations of shape (N, 3, 3), got {tuple(m.shape)}')
    u, _, vt = torch.linalg.svd(m.mean(dim=0))
    fix = torch.ones(3, dtype=m.dtype, device=m.device)
    fix[2] = torch.sign(torch.linalg.det(u @ vt))
    return u @ torch.diag(fix) @ vt
