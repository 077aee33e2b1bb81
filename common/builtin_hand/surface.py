"""The surface of the built-in hand: a signed-distance-like function of the skeleton (palm slab,
hypothenar pad, finger tubes, thumb), negative inside, smooth where the parts meet."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builtin_hand.anatomy import FINGERS, Bone, Skeleton

# ----------------------------------------------------------------------------------------------
# The surface: a signed-distance-like function (negative inside), smooth where parts meet

def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth minimum (union) of two distance fields, blending within k of each other."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * k / 4


def _tube(pts: np.ndarray, bone: Bone, knots: np.ndarray, ws: np.ndarray, hs: np.ndarray,
          caps: tuple[float, float]) -> np.ndarray:
    """A tube along ``bone``'s axis with elliptic cross-sections: half-widths ``ws`` (along
    bone.l) and half-thicknesses ``hs`` (along bone.n) at distances ``knots`` (increasing) from
    bone.start, and half-ellipsoid caps of lengths ``caps`` at its two ends. pts (N, 3) -> (N,)."""
    d = pts - bone.start
    t = d @ bone.a
    tc = np.clip(t, knots[0], knots[-1])
    w, h = np.interp(tc, knots, ws), np.interp(tc, knots, hs)
    cap = np.where(t < knots[0], caps[0], caps[1])
    r = np.sqrt((d @ bone.l / w) ** 2 + (d @ bone.n / h) ** 2 + ((t - tc) / cap) ** 2)
    return (r - 1.0) * np.minimum(w, h)


@dataclass
class _Profile:
    """Cross-sections of one finger tube at distances ``knots`` from its MCP joint; the tip's
    rounded cap (length ``cap``) starts at the last knot."""
    knots: np.ndarray
    ws: np.ndarray
    hs: np.ndarray
    cap: float

    @property
    def end(self) -> float:
        return float(self.knots[-1])


_KNUCKLE_BULGE = 0.05   # relative widening over the PIP and DIP joints (and narrowing mid-shaft)


def finger_profile(bones: list[Bone]) -> _Profile:
    """A long finger's tube: linear taper between the joints, a little wider over the PIP and
    DIP knuckles and narrower along the shafts, from inside the palm to a rounded tip."""
    joint_t = np.cumsum([0.0] + [b.length for b in bones])
    w = np.array([b.w[0] for b in bones] + [bones[2].w[1]])
    h = np.array([b.h[0] for b in bones] + [bones[2].h[1]])
    cap = 0.95 * h[-1]
    ends = joint_t - np.array([0.0, 0.0, 0.0, cap])       # the cap ends where the finger does
    pip, dip = joint_t[1], joint_t[2]
    knots = np.array([-0.025, 0.0, 0.5 * pip, pip - 0.004, pip, pip + 0.004, 0.5 * (pip + dip),
                      dip - 0.003, dip, dip + 0.003, ends[3]])
    bulge = _KNUCKLE_BULGE * np.array([0, 0, -0.5, 0.5, 1, 0.5, -0.5, 0.5, 1, 0.5, 0])
    return _Profile(knots, np.interp(knots, ends, w) * (1 + bulge),
                    np.interp(knots, ends, h) * (1 + bulge), cap)


def thumb_caps(bones: list[Bone]) -> list[tuple[float, float]]:
    """Lengths of the round ends of each thumb segment (proximal, distal)."""
    return [(min(b.w[0], b.h[0]), min(b.w[1], b.h[1]) * (0.95 if i == 2 else 1.0))
            for i, b in enumerate(bones)]


class HandSurface:
    """The hand's skin as the zero set of :meth:`__call__` (negative inside; near the surface
    roughly the distance in metres)."""

    def __init__(self, skel: Skeleton):
        self.skel = skel
        self.profiles = {f: finger_profile(skel.digits[f]) for f in FINGERS}
        mcp = np.array([skel.digits[f][0].start for f in FINGERS])
        order = np.argsort(mcp[:, 2])
        self.arc_z, self.arc_s = mcp[order, 2], -mcp[order, 0]

    def knuckle_s(self, z: np.ndarray) -> np.ndarray:
        """s (distance from the wrist toward the fingers) of the knuckle line at z."""
        return np.interp(z, self.arc_z, self.arc_s)

    def palm_section(self, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """Palm cross-section at s: half-width, centre z, half-thickness, centre y, exponent."""
        pm = self.skel.palm
        return tuple(np.interp(s, pm['s'], pm[k]) for k in ('W', 'zc', 'T', 'yc', 'p'))

    def palm(self, pts: np.ndarray) -> np.ndarray:
        """The palm slab, open toward the forearm, rounded off just past the knuckle line."""
        s = -pts[:, 0]
        W, zc, T, yc, p = self.palm_section(s)
        r = (np.abs((pts[:, 2] - zc) / W) ** p + np.abs((pts[:, 1] - yc) / T) ** p) ** (1 / p)
        return -_smin(-(r - 1.0) * T, -(s - self.knuckle_s(pts[:, 2]) - 0.004), 0.010)

    def thumb(self, pts: np.ndarray) -> np.ndarray:
        """Three round-ended segments; the tip's rounding ends where the last bone does."""
        bones = self.skel.digits['thumb']
        caps = thumb_caps(bones)
        ends = [b.length for b in bones[:2]] + [bones[2].length - caps[2][1]]
        parts = [_tube(pts, b, np.array([0.0, end]), np.array(b.w), np.array(b.h), c)
                 for b, c, end in zip(bones, caps, ends)]
        return _smin(_smin(parts[0], parts[1], 0.004), parts[2], 0.004)

    def finger(self, pts: np.ndarray, name: str) -> np.ndarray:
        b, pr = self.skel.digits[name][0], self.profiles[name]
        return _tube(pts, b, pr.knots, pr.ws, pr.hs, (0.01, pr.cap))

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """pts (N, 3) -> (N,). Each finger blends into the palm on its own, so neighbouring
        fingers do not blend into each other."""
        c, r = self.skel.hypothenar
        hypothenar = (np.linalg.norm((pts - c) / r, axis=1) - 1.0) * r.min()
        body = _smin(self.palm(pts), hypothenar, 0.012)
        body = _smin(body, self.thumb(pts), 0.014 * self.skel.thenar)
        return np.min([_smin(body, self.finger(pts, f), 0.010) for f in FINGERS], axis=0)

    def gradient(self, pts: np.ndarray, values: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        """(N, 3) forward-difference gradient at pts, given the values there."""
        return np.stack([(self(pts + eps * e) - values) / eps for e in np.eye(3)], axis=1)

    def cast(self, origin: np.ndarray, direction: np.ndarray, r_max: np.ndarray,
             steps: int = 24) -> tuple[np.ndarray, np.ndarray]:
        """Rays (N, 3) from inside: distance to the first surface crossing within r_max (N,),
        and whether there is one."""
        rs = np.linspace(0.0, 1.0, steps + 1)[None, :] * r_max[:, None]          # (N, S+1)
        outside = self((origin[:, None] + rs[..., None] * direction[:, None]).reshape(-1, 3)) > 0
        outside = outside.reshape(rs.shape)
        found = outside.any(1)
        first = np.where(found, outside.argmax(1), steps)
        lo = rs[np.arange(len(rs)), np.maximum(first - 1, 0)]
        hi = rs[np.arange(len(rs)), first]
        for _ in range(22):
            mid = 0.5 * (lo + hi)
            inside = self(origin + mid[:, None] * direction) <= 0
            lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
        return 0.5 * (lo + hi), found

    def project(self, pts: np.ndarray, iters: int = 2) -> np.ndarray:
        """Newton steps along the gradient onto the zero set."""
        for _ in range(iters):
            values = self(pts)
            g = self.gradient(pts, values)
            pts = pts - (values / np.maximum((g * g).sum(1), 1e-12))[:, None] * g
        return pts


