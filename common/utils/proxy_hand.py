"""The built-in procedural hand model: a right hand in the MANO file layout, made by code.

Used by :func:`utils.mano.load_hand_model` when no MANO file is found. It is not MANO and is not
fitted to scans; it has MANO's array names and shapes, kinematic tree, vertex and face counts and
fingertip vertex indices, so every part of the system (and outside MANO tools, through
:func:`write_proxy_pickle`) runs unchanged.

Rest frame, as in MANO's right hand: the flat hand lies in the x-z plane, the fingers point along
-x from the wrist, the thumb is on the +z side and the palm faces -y. Unlike MANO, the wrist
joint is at the origin. Wrist to middle fingertip is 0.186 m. Every joint's rest frame is the
global frame, so flexing a long finger is a positive rotation about (nearly) +z.

Construction (:func:`build_proxy_model`, about a second, then cached):

* Surface: a signed-distance-like function (:class:`HandSurface`) of a palm slab with
  super-elliptic cross-sections, a hypothenar pad, four finger tubes with tapering elliptic
  cross-sections, knuckle bulges and rounded tips, and a three-segment thumb whose metacarpal
  blends into the palm as the thenar eminence (smooth minimum).
* Mesh: rings of vertices along a palm tube (from the 16-vertex wrist opening), along each
  finger and along the thumb. The last palm ring is the first ring of the four fingers, with one
  web quad between neighbours; the thumb tube starts from a hole cut into the palm's grid; each
  fingertip is one vertex. Every vertex is shot along a ray from its bone's axis onto the
  surface, then the mesh is relaxed (Laplacian steps, each followed by projection back onto the
  surface). The result is a closed genus-0 surface except one 16-vertex boundary loop at the
  wrist: 778 vertices, 1538 triangles. Vertices are ordered palm, index, middle, ring, pinky,
  thumb (each base to tip), with the fingertips moved to MANO's indices 745 (thumb), 317 (index),
  444 (middle), 556 (ring), 673 (pinky).
* ``weights``: each vertex follows the bone it lies along, handing over smoothly across each
  joint (palm to MCP across the knuckle line, palm to the thumb's CMC over the thenar), then the
  weights are diffused over the mesh.
* ``J_regressor``: each joint is a non-negative, affine combination of the vertices in a slab of
  the mesh across its bone, reproducing the joint (``J_regressor @ v_template == J`` to 1e-8 m).
* ``shapedirs``: the hand rebuilt with one anatomical parameter of :data:`SHAPE_DIRECTIONS` moved
  by one population standard deviation, minus the default hand; made orthogonal by Gram-Schmidt
  in that order (so a later direction is its name's change with what earlier directions explain
  removed). ``betas`` in [-2, 2] give plausible adult hands (wrist to middle fingertip
  0.164-0.208 m along beta 0).
* ``posedirs`` are zero: plain linear blend skinning, no pose correctives.
* ``hands_mean``: a relaxed hand: fingers flexed a little more toward the pinky, slightly spread,
  the thumb a quarter of the way to opposition.
* ``hands_components``: 45 orthonormal rows. The first ten are hand synergies (Gram-Schmidt in
  this order, so each is "mostly" what its name says; + is the direction named):

  0. close: all finger joints flex, the thumb comes along (from flat to a firm grasp)
  1. thumb opposition: the thumb lifts off the palm and swings across until its pad meets the
     pad of the (flexed) ring finger
  2. spread: the fingers fan out, the thumb abducts
  3. index flexion
  4. ring and pinky flexion
  5. knuckle (MCP) flexion with straight fingers, versus hook (PIP/DIP) flexion
  6. thumb curl (MCP and IP flexion)
  7. thumb roll: the thumb turns about its own axis, its pad toward the fingers
  8. thumb palmar abduction (lifts the thumb off the palm plane)
  9. distal (DIP) flexion of the four fingers

  Rows 10-44 complete the basis (single-joint directions). :data:`PCA_STD` holds the natural
  standard deviation of each coefficient, so that ``hands_mean + (clip(N(0, 1), -2, 2) * PCA_STD)
  @ hands_components`` gives natural hands, from a flat hand to a firm grasp, thumb anywhere
  from abducted to opposed; rows 10-44 add only a few degrees. About one such sample in six
  has a small interpenetration (the thumb pressing into a finger, touching fingers); check
  them if that matters.

The arrays are cached in memory and on disk (folder ``$INTERACTHAND_CACHE``, default
``~/.cache/interacthand``), keyed by a hash of this file, so each version is built once.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from utils.files import write_atomically
from utils.mano import FINGERTIP_VERTS, NUM_MANO_JOINTS, NUM_VERTS

log = logging.getLogger('interacthand')

NUM_JOINTS = NUM_MANO_JOINTS
TIP_VERTS = dict(zip(('thumb', 'index', 'middle', 'ring', 'pinky'), FINGERTIP_VERTS))
FINGERS = ('index', 'middle', 'ring', 'pinky')                 # long fingers, thumb side first
# MANO joint index of each digit's three joints (MCP, PIP, DIP; thumb: CMC, MCP, IP).
FINGER_JOINTS = {'index': (1, 2, 3), 'middle': (4, 5, 6), 'pinky': (7, 8, 9),
                 'ring': (10, 11, 12), 'thumb': (13, 14, 15)}
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

# Standard deviation of each hands_components coefficient for sampling natural poses (see the
# module docstring): pose = hands_mean + (clip(N(0, 1), -2, 2) * PCA_STD) @ hands_components.
# Rows 0-9: half of each synergy's amplitude along its row (_PoseSpace.synergies gives them at
# +2 sigma); rows 10-44: a couple of degrees.
PCA_STD = np.array([0.744, 0.374, 0.094, 0.271, 0.235, 0.494, 0.291, 0.112, 0.077, 0.215] + [0.03] * 35)

DISTAL = np.array([-1.0, 0.0, 0.0])   # wrist -> fingers
RADIAL = np.array([0.0, 0.0, 1.0])    # toward the thumb
DORSAL = np.array([0.0, 1.0, 0.0])    # back of the hand (the palm faces -y)


# ----------------------------------------------------------------------------------------------
# Anatomy

@dataclass(frozen=True)
class HandParams:
    """Anatomical parameters of the template, as factors of the default adult hand."""
    scale: float = 1.0             # everything
    finger_length: float = 1.0     # the four fingers' phalanges
    palm_width: float = 1.0        # across the knuckles
    palm_thickness: float = 1.0
    finger_girth: float = 1.0      # finger and thumb cross-sections (and knuckle spacing)
    thumb_size: float = 1.0        # thumb length and girth
    wrist_size: float = 1.0        # wrist width and thickness
    ulnar_length: float = 1.0      # ring and pinky length
    fingertip_girth: float = 1.0   # taper toward the tips (slender vs. spatulate fingers)
    thenar: float = 1.0            # thenar and hypothenar bulk


# Shape directions in shapedirs order: (name, HandParams field, relative standard deviation in
# the adult population).
SHAPE_DIRECTIONS = (
    ('overall size', 'scale', 0.06),
    ('finger length', 'finger_length', 0.04),
    ('palm width', 'palm_width', 0.05),
    ('palm thickness', 'palm_thickness', 0.08),
    ('finger girth', 'finger_girth', 0.07),
    ('thumb size', 'thumb_size', 0.06),
    ('wrist size', 'wrist_size', 0.07),
    ('ring and pinky length', 'ulnar_length', 0.04),
    ('fingertip girth', 'fingertip_girth', 0.08),
    ('thenar bulk', 'thenar', 0.12),
)

# Long fingers of the default hand (metres, degrees): MCP joint at s (distance from the wrist
# toward the fingers), y, z; fan angle toward the thumb; phalanx lengths (MCP-PIP, PIP-DIP,
# DIP-tip); half-widths and half-thicknesses at MCP, PIP, DIP and where the tip rounds off.
_FINGER_TABLE = {
    'index': ((0.087, 0.001, 0.0245), 2.0, (0.040, 0.024, 0.022),
              (0.0102, 0.0096, 0.0087, 0.0082), (0.0097, 0.0088, 0.0078, 0.0070)),
    'middle': ((0.091, 0.002, 0.0025), -1.0, (0.044, 0.028, 0.023),
               (0.0104, 0.0099, 0.0089, 0.0084), (0.0099, 0.0090, 0.0080, 0.0072)),
    'ring': ((0.086, 0.001, -0.0185), -4.0, (0.041, 0.027, 0.022),
             (0.0098, 0.0094, 0.0085, 0.0080), (0.0094, 0.0086, 0.0076, 0.0069)),
    'pinky': ((0.077, -0.002, -0.0390), -9.0, (0.032, 0.020, 0.020),
              (0.0087, 0.0083, 0.0076, 0.0071), (0.0083, 0.0076, 0.0068, 0.0062)),
}
# Thumb: CMC joint (s, y, z); per segment (CMC-MCP, MCP-IP, IP-tip): angle from the fingers'
# direction toward the thumb side, tilt toward the palm side, pronation of the pad toward the
# fingers (degrees), length; half-widths and half-thicknesses at CMC, MCP, IP and the tip.
_THUMB_CMC = (0.021, -0.008, 0.019)
_THUMB_SEGMENTS = ((42.0, 12.0, 40.0, 0.045), (28.0, 14.0, 50.0, 0.031), (20.0, 14.0, 55.0, 0.027))
_THUMB_W = (0.0155, 0.0112, 0.0106, 0.0098)
_THUMB_H = (0.0140, 0.0100, 0.0090, 0.0082)
# Palm slab cross-sections at s: half-width W, centre z, half-thickness T, centre y, exponent of
# the super-ellipse (2: ellipse, larger: boxier).
_PALM_S = np.array([-0.020, 0.000, 0.025, 0.050, 0.075, 0.095])
_PALM_W = np.array([0.0270, 0.0300, 0.0355, 0.0390, 0.0410, 0.0416])
_PALM_ZC = np.array([0.0000, -0.0012, -0.0035, -0.0048, -0.0055, -0.0056])
_PALM_T = np.array([0.0175, 0.0165, 0.0150, 0.0138, 0.0128, 0.0120])
_PALM_YC = np.array([-0.0010, -0.0015, -0.0020, -0.0020, -0.0015, -0.0010])
_PALM_P = np.array([2.2, 2.4, 2.8, 3.0, 3.0, 3.0])
_HYPOTHENAR = ((0.036, -0.0075, -0.031), (0.030, 0.0085, 0.0105))   # centre (s, y, z), radii


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _at(s: float, y: float, z: float) -> np.ndarray:
    """Point at distance s from the wrist toward the fingers, height y, z toward the thumb."""
    return s * DISTAL + y * DORSAL + z * RADIAL


@dataclass
class Bone:
    """One phalanx or metacarpal: start joint, unit direction ``a``, pad-side normal ``n``,
    length, and half-width (along ``l = a x n``, toward the thumb on the fingers; also the
    flexion axis) and half-thickness (along ``n``) at its start and end."""
    start: np.ndarray
    a: np.ndarray
    n: np.ndarray
    length: float
    w: tuple[float, float]
    h: tuple[float, float]

    def __post_init__(self):
        self.l = np.cross(self.a, self.n)

    @property
    def end(self) -> np.ndarray:
        return self.start + self.length * self.a


@dataclass
class Skeleton:
    """Joints (16, 3), each digit's bones (proximal to distal) and the palm's shape."""
    joints: np.ndarray
    digits: dict[str, list[Bone]]
    palm: dict[str, np.ndarray]                 # _PALM_* profiles, scaled
    hypothenar: tuple[np.ndarray, np.ndarray]   # centre (3,), radii along x, y, z
    thenar: float


def _digit(start: np.ndarray, directions: list[tuple[np.ndarray, np.ndarray]], lengths,
           w: np.ndarray, h: np.ndarray) -> list[Bone]:
    bones = []
    for i, ((a, n), length) in enumerate(zip(directions, lengths)):
        bones.append(Bone(start, a, n, length, (w[i], w[i + 1]), (h[i], h[i + 1])))
        start = bones[-1].end
    return bones


def make_skeleton(p: HandParams) -> Skeleton:
    """The joints and bones of a hand with parameters ``p`` (metres, the module's rest frame)."""
    width = p.scale * p.palm_width * p.finger_girth   # fatter fingers sit further apart
    thick = p.scale * p.palm_thickness
    girth = p.scale * p.finger_girth
    taper = np.array([1.0, 1.0, p.fingertip_girth ** 0.5, p.fingertip_girth])
    digits = {}
    for name, ((s, y, z), fan, lengths, ws, hs) in _FINGER_TABLE.items():
        a = np.cos(np.radians(fan)) * DISTAL + np.sin(np.radians(fan)) * RADIAL
        grow = p.scale * p.finger_length * (p.ulnar_length if name in ('ring', 'pinky') else 1.0)
        digits[name] = _digit(_at(s * p.scale, y * thick, z * width), [(a, -DORSAL)] * 3,
                              np.array(lengths) * grow, np.array(ws) * girth * taper,
                              np.array(hs) * girth * taper)
    directions = []
    for angle, tilt, pronation, _ in _THUMB_SEGMENTS:
        a = np.cos(np.radians(angle)) * DISTAL + np.sin(np.radians(angle)) * RADIAL
        a = _unit(np.cos(np.radians(tilt)) * a - np.sin(np.radians(tilt)) * DORSAL)
        n0 = _unit(-DORSAL - (-DORSAL @ a) * a)     # toward the palm side
        l0 = np.cross(a, n0)                        # away from the fingers
        directions.append((a, np.cos(np.radians(pronation)) * n0 - np.sin(np.radians(pronation)) * l0))
    thumb_girth = girth * p.thumb_size * np.array([p.thenar, 1.0, 1.0, p.fingertip_girth])
    cmc = _at(_THUMB_CMC[0] * p.scale, _THUMB_CMC[1] * thick, _THUMB_CMC[2] * width)
    lengths = np.array([seg[3] for seg in _THUMB_SEGMENTS]) * p.scale * p.thumb_size
    digits['thumb'] = _digit(cmc, directions, lengths, np.array(_THUMB_W) * thumb_girth,
                             np.array(_THUMB_H) * thumb_girth)
    joints = np.zeros((NUM_JOINTS, 3))
    for name, bones in digits.items():
        joints[list(FINGER_JOINTS[name])] = [b.start for b in bones]
    wrist = np.interp(_PALM_S, [0.0, 0.05], [p.wrist_size, 1.0])
    palm = {'s': _PALM_S * p.scale, 'W': _PALM_W * width * wrist, 'zc': _PALM_ZC * width,
            'T': _PALM_T * thick * wrist, 'yc': _PALM_YC * thick, 'p': _PALM_P}
    (hs_, hy, hz), (rs, ry, rz) = _HYPOTHENAR
    hypothenar = (_at(hs_ * p.scale, hy * thick, hz * width),
                  np.array([rs * p.scale, ry * thick * p.thenar, rz * width * p.thenar]))
    return Skeleton(joints, digits, palm, hypothenar, p.thenar)


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


def _finger_profile(bones: list[Bone]) -> _Profile:
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


def _thumb_caps(bones: list[Bone]) -> list[tuple[float, float]]:
    """Lengths of the round ends of each thumb segment (proximal, distal)."""
    return [(min(b.w[0], b.h[0]), min(b.w[1], b.h[1]) * (0.95 if i == 2 else 1.0))
            for i, b in enumerate(bones)]


class HandSurface:
    """The hand's skin as the zero set of :meth:`__call__` (negative inside; near the surface
    roughly the distance in metres)."""

    def __init__(self, skel: Skeleton):
        self.skel = skel
        self.profiles = {f: _finger_profile(skel.digits[f]) for f in FINGERS}
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
        caps = _thumb_caps(bones)
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


# ----------------------------------------------------------------------------------------------
# The mesh: vertex rings and their triangles (the same for every shape), and where the vertices
# go for a given shape

_PALM_ROW_SIZES = (16, 31) + (36,) * 7   # the wrist opening, then rows up to the knuckles
_PALM_ROW_S = (-0.016, -0.0045)          # s of the first two rows; the others run up to the knuckles
_HOLE_ROW, _HOLE_SLOT, _HOLE_CELLS = 4, 32, 3   # thumb hole: 3 x 3 palm cells from row 4, slot 32
_FINGER_OWN_RINGS = {'index': 11, 'middle': 13, 'ring': 11, 'pinky': 10}   # incl. 2 on the tip
_THUMB_RING_SIZES = (12, 10) + (8,) * 8                                      # incl. 2 on the tip
_THUMB_RING_TILT = (0.5, 0.1)            # the thumb's first rings lean toward the palm's side
_TIP_ANGLES = np.radians([40.0, 70.0])   # polar angles of the rings on a rounded tip
_WEB_T = 0.40                            # fingers part at this fraction of the proximal phalanx
_RING8 = np.radians(22.5 + 45.0 * np.arange(8))   # angles of an 8-vertex ring


@dataclass
class _Topology:
    """Vertex ids of every ring (counter-clockwise about its tube's direction) and the faces.

    A 36-slot palm row lists the back of the hand from the thumb side to the little-finger side
    (slots 0-15), two slots on the little-finger side, the palm side back (18-33) and two slots on
    the thumb side. ``split`` is the fingers' common first ring: the backs of the four fingers
    (0-15), then their palm sides (16-31) in reverse.
    """
    palm_rows: list[np.ndarray]          # slot -> vertex id; -1 inside the thumb hole
    split: np.ndarray                    # (32,)
    finger_rings: dict[str, list[np.ndarray]]   # own rings (8,), proximal to distal
    thumb_rings: list[np.ndarray]
    hole: np.ndarray                     # (12,) palm vertices around the thumb's root
    tips: dict[str, int]
    hole_cells: set                      # (row, slot) of the palm cells the thumb replaces
    shaft_counts: dict[str, tuple[int, int, int]]   # a finger's rings per phalanx
    num_verts: int
    thumb_phase: float = 0.0             # angle of the thumb's first rings, matching the hole
    faces: np.ndarray | None = None

    def finger_first_ring(self, k: int) -> np.ndarray:
        return np.concatenate([self.split[4 * k:4 * k + 4], self.split[28 - 4 * k:32 - 4 * k]])


def _shaft_counts(bones: list[Bone], t_start: float, t_end: float, n: int) -> tuple[int, int, int]:
    """Rings per phalanx between t_start and t_end (n in all), about proportional to length."""
    lengths = np.diff([t_start, bones[0].length, bones[0].length + bones[1].length, t_end])
    counts = np.maximum(1, np.floor(lengths / lengths.sum() * n)).astype(int)
    while counts.sum() < n:
        counts[np.argmax(lengths / counts)] += 1
    return tuple(int(c) for c in counts)


def _shaft_ts(bones: list[Bone], t_start: float, t_end: float, counts: tuple[int, int, int]) -> np.ndarray:
    """Ring positions along a finger: even within each phalanx, one ring on each joint."""
    edges = [t_start, bones[0].length, bones[0].length + bones[1].length, t_end]
    return np.concatenate([edges[i] + (edges[i + 1] - edges[i]) * np.arange(1, c + 1) / c
                           for i, c in enumerate(counts)])


def _make_topology(skel: Skeleton) -> _Topology:
    """Vertex ids, ring by ring: palm rows, the fingers' first ring, each finger's own rings and
    tip, the thumb's rings and tip. The faces follow in :func:`_connect`."""
    ids = iter(range(10 ** 6))
    n = _HOLE_CELLS
    hole_cells = {(_HOLE_ROW + i, (_HOLE_SLOT + j) % 36) for i in range(n) for j in range(n)}
    hole_inner = {(_HOLE_ROW + i, (_HOLE_SLOT + j) % 36) for i in range(1, n) for j in range(1, n)}
    rows = [np.array([-1 if (r, c) in hole_inner else next(ids) for c in range(size)])
            for r, size in enumerate(_PALM_ROW_SIZES)]
    split = np.array([next(ids) for _ in range(32)])
    counts, rings, tips = {}, {}, {}
    for name in FINGERS:
        bones = skel.digits[name]
        counts[name] = _shaft_counts(bones, _WEB_T * bones[0].length, _finger_profile(bones).end,
                                     _FINGER_OWN_RINGS[name] - len(_TIP_ANGLES))
        rings[name] = [np.array([next(ids) for _ in range(8)]) for _ in range(_FINGER_OWN_RINGS[name])]
        tips[name] = next(ids)
    thumb = [np.array([next(ids) for _ in range(size)]) for size in _THUMB_RING_SIZES]
    tips['thumb'] = next(ids)
    r0, c0 = _HOLE_ROW, _HOLE_SLOT
    loop = ([(r0, c0 + i) for i in range(n)] + [(r0 + i, c0 + n) for i in range(n)]
            + [(r0 + n, c0 + n - i) for i in range(n)] + [(r0 + n - i, c0) for i in range(n)])
    hole = np.array([rows[r][c % 36] for r, c in loop])
    return _Topology(rows, split, rings, thumb, hole, tips, hole_cells, counts, next(ids))


class _Rays:
    """Where each vertex goes: shot from ``origin`` along ``direction`` onto the surface.

    ``reach`` is the distance to the vertex's own part's surface (its tube, or the palm slab).
    The first crossing is looked for up to 2.2 times that far; a ray that finds none (it runs
    through a blended crotch into a neighbouring part) stops at ``reach``. ``along`` is a digit
    vertex's distance along its digit from the digit's first joint (NaN on the palm).
    """

    def __init__(self, num_verts: int):
        self.origin, self.direction = np.zeros((num_verts, 3)), np.zeros((num_verts, 3))
        self.reach, self.along = np.zeros(num_verts), np.full(num_verts, np.nan)

    def set(self, ids: np.ndarray, origin: np.ndarray, direction: np.ndarray, reach: float,
            along: float = np.nan) -> None:
        self.origin[ids] = origin
        self.direction[ids] = _unit(direction)
        self.reach[ids], self.along[ids] = reach, along


def _superellipse(psi: np.ndarray, W, zc, T, yc, p) -> tuple[np.ndarray, np.ndarray]:
    """Point (z, y) at angle parameter psi (0: thumb side, pi/2: back) on a palm cross-section."""
    c, s = np.cos(psi), np.sin(psi)
    return zc + W * np.sign(c) * np.abs(c) ** (2 / p), yc + T * np.sign(s) * np.abs(s) ** (2 / p)


def _arc_psi(fractions: np.ndarray, W, zc, T, yc, p) -> np.ndarray:
    """Angle parameters at the given fractions of a cross-section's perimeter from psi = 0."""
    psi = np.linspace(0.0, 2 * np.pi, 1441)
    z, y = _superellipse(psi, W, zc, T, yc, p)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(z), np.diff(y)))])
    return np.interp(np.mod(fractions, 1.0) * arc[-1], arc, psi)


def _palm_psi(surf: HandSurface, row: int, s_ref: float) -> np.ndarray:
    """Angle parameters of a palm row's slots: evenly spread near the wrist, lined up with the
    finger rings near the knuckles."""
    size = _PALM_ROW_SIZES[row]
    section = surf.palm_section(np.array(s_ref))
    if size != 36:
        return np.unwrap(_arc_psi((np.arange(size) + 0.5) / size, *section))
    even = np.unwrap(_arc_psi((np.arange(36) + 1.5) / 36, *section))
    W, zc, _, _, p = surf.palm_section(np.array(surf.arc_s.mean()))
    z = np.concatenate([surf.skel.digits[f][0].start[2] + surf.profiles[f].ws[1] * np.cos(_RING8[:4])
                        for f in FINGERS])
    zeta = np.clip((z - zc) / W, -0.98, 0.98)
    back = np.arccos(np.sign(zeta) * np.abs(zeta) ** (p / 2))
    aligned = np.concatenate([back, back[15] + (2 * np.pi - 2 * back[15]) * np.array([1, 2]) / 3,
                              2 * np.pi - back[::-1], 2 * np.pi + back[0] * np.array([-1, 1]) / 3])
    f = ((row - 2) / (len(_PALM_ROW_SIZES) - 3)) ** 1.5
    return (1 - f) * even + f * aligned


def _thumb_frame(bones: list[Bone], tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point on the thumb's bone polyline at arc length tau (K,), and a tangent and pad normal
    that turn smoothly across the joints: each (K, 3)."""
    ends = np.cumsum([b.length for b in bones])
    seg = np.minimum(np.searchsorted(ends, tau), 2)
    starts = np.concatenate([[0.0], ends[:-1]])
    centre = np.array([bones[i].start + (t - starts[i]) * bones[i].a for i, t in zip(seg, tau)])
    a = np.repeat(bones[0].a[None], len(tau), 0)
    n = np.repeat(bones[0].n[None], len(tau), 0)
    for j in range(2):
        beta = _smoothstep((tau - ends[j] + 0.008) / 0.016)[:, None]
        a = (1 - beta) * a + beta * bones[j + 1].a
        n = (1 - beta) * n + beta * bones[j + 1].n
    a = _unit(a)
    return centre, a, _unit(n - (n * a).sum(1, keepdims=True) * a)


def _thumb_ring_angles(topo: _Topology, i: int) -> np.ndarray:
    """Angles of thumb ring i's vertices about the thumb; rings of other than 8 vertices start
    at the angle of the hole's first vertex."""
    size = _THUMB_RING_SIZES[i]
    return _RING8 if size == 8 else topo.thumb_phase + 2 * np.pi * np.arange(size) / size


def _layout(skel: Skeleton, topo: _Topology, surf: HandSurface) -> _Rays:
    """The rays that place every vertex of the hand with skeleton ``skel``."""
    rays = _Rays(topo.num_verts)
    scale = skel.palm['s'][-1] / _PALM_S[-1]
    s_first, s_last = 0.007 * scale, surf.arc_s.mean() - 0.003 * scale
    for r, ids in enumerate(topo.palm_rows):
        u = (r - 2) / (len(_PALM_ROW_SIZES) - 3)
        s_ref = _PALM_ROW_S[r] * scale if r < 2 else (1 - u) * s_first + u * s_last
        psi = _palm_psi(surf, r, s_ref)
        s = np.full(len(psi), s_ref)
        if r >= 2:   # rows bend toward the knuckle line
            z, _ = _superellipse(psi, *surf.palm_section(s))
            s = (1 - u) * s_first + u * (surf.knuckle_s(z) - 0.003 * scale)
        W, zc, T, yc, p = surf.palm_section(s)
        z, y = _superellipse(psi, W, zc, T, yc, p)
        guess = np.stack([-s, y, z], 1)
        centre = np.stack([-s, yc, np.clip(z, zc - W + T, zc + W - T)], 1)
        keep = ids >= 0
        reach = np.linalg.norm(guess - centre, axis=1) + 0.002
        rays.set(ids[keep], centre[keep], (guess - centre)[keep], reach[keep])
    for k, name in enumerate(FINGERS):
        bone, prof = skel.digits[name][0], surf.profiles[name]
        a = bone.a
        radial = np.cos(_RING8)[:, None] * bone.l - np.sin(_RING8)[:, None] * bone.n   # (8, 3)
        t_web = _WEB_T * bone.length
        ts = np.concatenate([[t_web], _shaft_ts(skel.digits[name], t_web, prof.end, topo.shaft_counts[name])])
        for t, ids in zip(ts, [topo.finger_first_ring(k)] + topo.finger_rings[name][:-2]):
            rays.set(ids, bone.start + t * a, radial, np.interp(t, prof.knots, prof.ws), t)
        end = bone.start + prof.end * a
        for theta, ids in zip(_TIP_ANGLES, topo.finger_rings[name][-2:]):
            rays.set(ids, end, np.cos(theta) * radial + np.sin(theta) * a, prof.ws[-1],
                     prof.end + prof.cap * np.sin(theta))
        rays.set(np.array([topo.tips[name]]), end, a[None], prof.cap, prof.end + prof.cap)
    bones = skel.digits['thumb']
    lmc, lpp = bones[0].length, bones[1].length
    cap = _thumb_caps(bones)[2][1]
    end = lmc + lpp + bones[2].length - cap
    taus = np.array([0.5 * lmc, 0.78 * lmc, lmc, lmc + lpp / 3, lmc + 2 * lpp / 3, lmc + lpp,
                     0.5 * (lmc + lpp + end), end, end, end])
    centre, a, n = _thumb_frame(bones, taus)
    l, m = np.cross(a, n), -n
    side = _unit(0.8 * RADIAL - 0.6 * DORSAL)     # outward normal of the palm around the hole
    for i, tilt in enumerate(_THUMB_RING_TILT):
        a_tilt = _unit(a[i] + tilt * side)
        l[i] = _unit(l[i] - (l[i] @ a_tilt) * a_tilt)
        m[i] = np.cross(a_tilt, l[i])
    half_width = np.interp(taus, [0.0, lmc, lmc + lpp, end], [b.w[0] for b in bones] + [bones[2].w[1]])
    for i, ids in enumerate(topo.thumb_rings):
        phi = _thumb_ring_angles(topo, i)
        radial = np.cos(phi)[:, None] * l[i] + np.sin(phi)[:, None] * m[i]
        along = taus[i]
        if i >= len(taus) - len(_TIP_ANGLES):
            theta = _TIP_ANGLES[i - (len(taus) - len(_TIP_ANGLES))]
            radial = np.cos(theta) * radial + np.sin(theta) * a[i]
            along = end + cap * np.sin(theta)
        rays.set(ids, centre[i], radial, half_width[i], along)
    rays.set(np.array([topo.tips['thumb']]), centre[-1], a[-1][None], cap, end + cap)
    return rays


def _place(rays: _Rays, surf: HandSurface) -> np.ndarray:
    """(V, 3) vertices where the rays meet the surface."""
    r, found = surf.cast(rays.origin, rays.direction, 2.2 * rays.reach)
    return rays.origin + np.where(found, r, rays.reach)[:, None] * rays.direction


def _stitch(a_ids: np.ndarray, b_ids: np.ndarray, a_ang: np.ndarray, b_ang: np.ndarray) -> list:
    """Triangles joining loop a to loop b, both counter-clockwise (increasing angle) about the
    direction from a to b, by merging their angles: len(a) + len(b) triangles, facing out."""
    n, m = len(a_ids), len(b_ids)
    j0 = int(np.argmin(np.abs(np.angle(np.exp(1j * (b_ang - a_ang[0]))))))
    b_order = np.roll(np.arange(m), -j0)
    ua = np.concatenate([[0.0], np.mod(a_ang[1:] - a_ang[0], 2 * np.pi), [2 * np.pi]])
    ub0 = np.angle(np.exp(1j * (b_ang[j0] - a_ang[0])))
    ub = ub0 + np.concatenate([[0.0], np.mod(b_ang[b_order[1:]] - b_ang[j0], 2 * np.pi), [2 * np.pi]])
    tris, i, j = [], 0, 0
    while i < n or j < m:
        if j == m or (i < n and ua[i + 1] <= ub[j + 1]):
            tris.append((a_ids[i], a_ids[(i + 1) % n], b_ids[b_order[j % m]]))
            i += 1
        else:
            tris.append((a_ids[i % n], b_ids[b_order[(j + 1) % m]], b_ids[b_order[j]]))
            j += 1
    return tris


def _quads(a_ids: np.ndarray, b_ids: np.ndarray, skip: set = frozenset()) -> list:
    """Two triangles per quad between loops of equal size (slot i to slot i), except the quads
    starting at the slots in ``skip``."""
    n, tris = len(a_ids), []
    for i in range(n):
        if i not in skip:
            a0, a1, b0, b1 = a_ids[i], a_ids[(i + 1) % n], b_ids[i], b_ids[(i + 1) % n]
            tris += [(a0, a1, b1), (a0, b1, b0)]
    return tris


def _thumb_angle(skel: Skeleton, pts: np.ndarray, tau: float) -> np.ndarray:
    """Angle of points about the thumb's axis at arc length tau (0: away from the fingers)."""
    centre, a, n = _thumb_frame(skel.digits['thumb'], np.array([tau]))
    d = pts - centre
    return np.arctan2(d @ -n[0], d @ np.cross(a[0], n[0]))


def _connect(topo: _Topology, verts: np.ndarray, skel: Skeleton, surf: HandSurface) -> np.ndarray:
    """(F, 3) triangles of the rings of :func:`_make_topology`; the default hand's vertices
    decide how loops of different sizes are joined."""
    def palm_angle(ids: np.ndarray) -> np.ndarray:
        pts = verts[ids]
        W, zc, T, yc, _ = surf.palm_section(-pts[:, 0])
        return np.arctan2((pts[:, 1] - yc) / T, (pts[:, 2] - zc) / W)

    rows = topo.palm_rows
    tris = _stitch(rows[0], rows[1], palm_angle(rows[0]), palm_angle(rows[1]))
    tris += _stitch(rows[1], rows[2], palm_angle(rows[1]), palm_angle(rows[2]))
    for r in range(2, len(rows) - 1):
        tris += _quads(rows[r], rows[r + 1], {c for (rr, c) in topo.hole_cells if rr == r})
    tris += _stitch(rows[-1], topo.split, palm_angle(rows[-1]), palm_angle(topo.split))
    for k in range(3):   # the web between neighbouring fingers
        d3, d4 = topo.split[4 * k + 3], topo.split[4 * k + 4]
        p3, p4 = topo.split[28 - 4 * k], topo.split[27 - 4 * k]
        tris += [(d3, d4, p4), (d3, p4, p3)]
    for k, name in enumerate(FINGERS):
        rings = [topo.finger_first_ring(k)] + topo.finger_rings[name]
        for a_ids, b_ids in zip(rings[:-1], rings[1:]):
            tris += _quads(a_ids, b_ids)
        tris += [(rings[-1][i], rings[-1][(i + 1) % 8], topo.tips[name]) for i in range(8)]
    tau = 0.5 * skel.digits['thumb'][0].length
    first = topo.thumb_rings[0]
    tris += _stitch(topo.hole, first, _thumb_angle(skel, verts[topo.hole], tau),
                    _thumb_angle(skel, verts[first], tau))
    for i, (a_ids, b_ids) in enumerate(zip(topo.thumb_rings[:-1], topo.thumb_rings[1:])):
        if len(a_ids) == len(b_ids):
            tris += _quads(a_ids, b_ids)
        else:
            tris += _stitch(a_ids, b_ids, _thumb_ring_angles(topo, i), _thumb_ring_angles(topo, i + 1))
    last = topo.thumb_rings[-1]
    tris += [(last[i], last[(i + 1) % 8], topo.tips['thumb']) for i in range(8)]
    return np.array(tris, dtype=np.int64)


def _neighbours(faces: np.ndarray, num_verts: int):
    """Row-normalised vertex adjacency as a scipy sparse matrix: ``A @ x`` is the mean of each
    vertex's neighbours."""
    from scipy import sparse
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    adj = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_verts, num_verts)).tocsr()
    adj.data[:] = 1.0
    return sparse.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj


def _relax(verts: np.ndarray, adj, fixed: np.ndarray, surf: HandSurface, rounds: int = 5,
           step: float = 0.5) -> np.ndarray:
    """Even out the vertex spacing: Laplacian steps, each followed by projection back onto the
    surface; ``fixed`` vertices (the wrist opening, the fingertips) stay."""
    free = ~fixed
    for _ in range(rounds):
        moved = verts + step * (adj @ verts - verts)
        verts = verts.copy()
        verts[free] = surf.project(moved[free])
    return verts


# ----------------------------------------------------------------------------------------------
# Skinning weights and joint regressor

_MCP_BLEND = 0.016   # half-width (metres) of the hand-over from the palm to a finger


def _blend(t: np.ndarray, t_joint: float, half_width: float) -> np.ndarray:
    """0 well before a joint, 1 well after it, smooth across ``t_joint +- half_width``."""
    return _smoothstep((t - t_joint + half_width) / (2 * half_width))


def _skin_weights(verts: np.ndarray, along: np.ndarray, skel: Skeleton, topo: _Topology,
                  adj) -> np.ndarray:
    """(V, 16) weights: each vertex follows the bone it lies along (``along``: distance along
    its digit, NaN on the palm), blended across each joint, then diffused three times over the
    mesh. Rows are non-negative and sum to 1."""
    weights = np.zeros((len(verts), NUM_JOINTS))
    palm = np.flatnonzero(np.isnan(along))
    # Palm: the wrist, handing over to a finger's MCP joint across the knuckle line and to the
    # thumb's CMC joint over the thenar eminence.
    p = verts[palm]
    mcp = np.array([skel.digits[f][0].start for f in FINGERS])
    axes = np.array([skel.digits[f][0].a for f in FINGERS])
    lateral = np.abs(np.einsum('vkc,kc->vk', p[:, None] - mcp[None], np.cross(axes, -DORSAL)))
    nearest = lateral.argmin(1)
    to_finger = _blend(np.einsum('vc,vc->v', p - mcp[nearest], axes[nearest]), 0.0, _MCP_BLEND)
    mc = skel.digits['thumb'][0]
    tau = np.clip((p - mc.start) @ mc.a, 0.0, mc.length)
    off = np.linalg.norm(p - mc.start - tau[:, None] * mc.a, axis=1)
    radius = np.interp(tau, [0.0, mc.length], [max(mc.w[0], mc.h[0]), max(mc.w[1], mc.h[1])])
    to_thumb = (1 - _smoothstep((off - 0.8 * radius) / (1.2 * radius))) * _smoothstep(tau / (0.5 * mc.length))
    to_thumb = np.minimum(to_thumb, 1 - to_finger)
    weights[palm, 0] = 1 - to_finger - to_thumb
    weights[palm, [FINGER_JOINTS[FINGERS[k]][0] for k in nearest]] += to_finger
    weights[palm, FINGER_JOINTS['thumb'][0]] += to_thumb
    # Digits: by position along the digit, handing over at each joint.
    for k, name in enumerate(FINGERS + ('thumb',)):
        if name == 'thumb':
            ids = np.concatenate(topo.thumb_rings + [[topo.tips[name]]])
        else:
            ids = np.concatenate([topo.finger_first_ring(k)] + topo.finger_rings[name] + [[topo.tips[name]]])
        bones = skel.digits[name]
        joint_t = np.cumsum([0.0] + [b.length for b in bones[:2]])
        widths = (0.014, 0.010, 0.009) if name == 'thumb' else (_MCP_BLEND, 0.009, 0.008)
        if name == 'thumb':   # the tube starts half-way along the metacarpal: hand over there
            joint_t[0] = 0.4 * bones[0].length
        parts = [_blend(along[ids], t, w) for t, w in zip(joint_t, widths)]
        weights[ids, 0] = 1 - parts[0]
        for i, j in enumerate(FINGER_JOINTS[name]):
            weights[ids, j] += parts[i] - (parts[i + 1] if i < 2 else 0.0)
    for _ in range(3):
        weights = 0.5 * weights + 0.5 * (adj @ weights)
    return weights / weights.sum(1, keepdims=True)


def _joint_regressor(verts: np.ndarray, skel: Skeleton) -> np.ndarray:
    """(16, V): each joint as a non-negative, affine combination of the vertices in a slab of
    the mesh across its bone, reproducing the joint's position."""
    from scipy.optimize import nnls
    reg = np.zeros((NUM_JOINTS, len(verts)))
    axes = np.tile(DISTAL, (NUM_JOINTS, 1))
    radius = np.full(NUM_JOINTS, 0.05)
    for name, ids in FINGER_JOINTS.items():
        for j, b in zip(ids, skel.digits[name]):
            axes[j], radius[j] = b.a, 2.2 * max(b.w[0], b.h[0])
    radius[FINGER_JOINTS['thumb'][0]] = 0.03   # the CMC joint lies deep in the thenar
    for j, joint in enumerate(skel.joints):
        d = verts - joint
        t = d @ axes[j]
        off = np.linalg.norm(d - t[:, None] * axes[j], axis=1)
        half = 0.004
        while True:   # widen the slab until it has vertices all around, on both sides
            near = np.flatnonzero((np.abs(t) < half) & (off < radius[j]))
            if (t[near] > 0).sum() >= 6 and (t[near] < 0).sum() >= 6:
                break
            half *= 1.5
        # Closest to equal weights such that the weighted mean is the joint: least squares with
        # the (heavily weighted) exact conditions on top, weights >= 0. Centimetres keep the
        # position rows comparable to the sum-to-one row.
        exact = np.vstack([verts[near].T * 100.0, np.ones(len(near))])
        target = np.concatenate([joint * 100.0, [1.0]])
        w = nnls(np.vstack([1e4 * exact, np.eye(len(near))]),
                 np.concatenate([1e4 * target, np.full(len(near), 1.0 / len(near))]))[0]
        reg[j, near] = w / w.sum()
    return reg


# ----------------------------------------------------------------------------------------------
# Pose space: the relaxed mean and the synergies (axis-angle of joints 1-15, rest frames)

OPPOSED_RING = (0.95, 1.15, 0.65)    # ring flexion (MCP, PIP, DIP) at which the thumb meets it
_PALM_CLEARANCE = 0.038              # the opposed thumb's MCP and IP joints stay this far in front
# Relaxed flexion (MCP, PIP, DIP), radians; spread at the MCP (+: toward the thumb); the thumb a
# quarter of the way to opposition.
_MEAN_FLEX = {'index': (0.30, 0.45, 0.20), 'middle': (0.36, 0.52, 0.24),
              'ring': (0.42, 0.58, 0.28), 'pinky': (0.48, 0.62, 0.30)}
_MEAN_SPREAD = {'index': 0.09, 'middle': 0.0, 'ring': -0.06, 'pinky': -0.14}
_MEAN_THUMB = 0.25
_SPREAD = {'index': 0.07, 'middle': 0.0, 'ring': -0.045, 'pinky': -0.10}   # 'spread' at +2 sigma


def _chain(bones: list[Bone], rots: list) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A digit posed with its joints' local rotations ``rots`` (scipy Rotations): its joint
    positions, and the centre and normal of its distal phalanx's pad."""
    pos, glob, joints = bones[0].start, None, []
    for b, r in zip(bones, rots):
        glob = r if glob is None else glob * r
        joints.append(pos)
        pos = pos + glob.apply(b.end - b.start)
    last = bones[-1]
    n = glob.apply(last.n)
    return joints, joints[-1] + glob.apply(0.6 * last.length * last.a) + last.h[1] * n, n


def _opposition(skel: Skeleton) -> np.ndarray:
    """(5,) full thumb opposition: CMC rotation vector, MCP and IP flexion (radians), bringing
    the thumb's pad onto the pad of the ring finger flexed by OPPOSED_RING, pads facing each
    other, the thumb passing in front of the palm, with as little rotation as that allows."""
    from scipy.optimize import minimize
    from scipy.spatial.transform import Rotation
    thumb, ring = skel.digits['thumb'], skel.digits['ring']
    _, ring_pad, ring_n = _chain(ring, [Rotation.from_rotvec(b.l * a) for b, a in zip(ring, OPPOSED_RING)])

    def cost(x: np.ndarray) -> float:
        rots = [Rotation.from_rotvec(x[:3]), Rotation.from_rotvec(thumb[1].l * x[3]),
                Rotation.from_rotvec(thumb[2].l * x[4])]
        joints, pad, n = _chain(thumb, rots)
        behind = np.array([max(0.0, _PALM_CLEARANCE + j @ DORSAL) for j in joints[1:]])
        return (float(np.sum((pad - ring_pad) ** 2)) / 0.005 ** 2 + 2.0 * (1.0 + n @ ring_n)
                + float(behind @ behind) / 0.002 ** 2 + 0.5 * float(x @ x))

    start = np.concatenate([_unit(np.cross(thumb[0].a, -DORSAL)) * 0.8, [0.3, 0.3]])
    return minimize(cost, start, method='L-BFGS-B', bounds=[(-2.0, 2.0)] * 3 + [(0.0, 1.2)] * 2).x


class _PoseSpace:
    """Builds (45,) pose vectors for one skeleton: finger flexion and spread, thumb poses."""

    def __init__(self, skel: Skeleton):
        self.skel = skel
        self.full_opposition = _opposition(skel)

    @staticmethod
    def vector(*parts: dict[int, np.ndarray]) -> np.ndarray:
        """(45,) sum of {joint: rotation vector} parts."""
        v = np.zeros(45)
        for part in parts:
            for j, rot in part.items():
                v[3 * (j - 1):3 * j] += rot
        return v

    def flex(self, angles: tuple[float, float, float], names=FINGERS) -> dict[int, np.ndarray]:
        """Flexion of the named long fingers' (MCP, PIP, DIP) joints."""
        out = {}
        for name in names:
            for j, b, angle in zip(FINGER_JOINTS[name], self.skel.digits[name], angles):
                out[j] = b.l * angle
        return out

    def spread(self, angles: dict[str, float]) -> dict[int, np.ndarray]:
        """Rotation of the named fingers' MCP joints about the back-of-hand axis (+: toward the
        thumb)."""
        return {FINGER_JOINTS[f][0]: DORSAL * a for f, a in angles.items()}

    def thumb(self, opposition: float, mcp: float = 0.0, ip: float = 0.0) -> dict[int, np.ndarray]:
        """A fraction of full opposition (see :func:`_opposition`), plus MCP and IP flexion."""
        full = self.full_opposition
        cmc, j_mcp, j_ip = FINGER_JOINTS['thumb']
        bones = self.skel.digits['thumb']
        return {cmc: full[:3] * opposition, j_mcp: bones[1].l * (full[3] * opposition + mcp),
                j_ip: bones[2].l * (full[4] * opposition + ip)}

    def mean(self) -> np.ndarray:
        flex = [self.flex(_MEAN_FLEX[f], (f,)) for f in FINGERS]
        return self.vector(*flex, self.spread(_MEAN_SPREAD), self.thumb(_MEAN_THUMB))

    def synergies(self) -> np.ndarray:
        """(10, 45) the synergies of the module docstring, each at its natural +2 sigma."""
        v, flex = self.vector, self.flex
        cmc = FINGER_JOINTS['thumb'][0]
        metacarpal = self.skel.digits['thumb'][0]
        return np.stack([
            v(flex((0.45, 0.48, 0.28), ('index', 'middle')), flex((0.50, 0.50, 0.30), ('ring', 'pinky')),
              self.thumb(0.10)),                                                    # close
            v(self.thumb(0.75)),                                                    # opposition
            v(self.spread(_SPREAD), {cmc: DORSAL * 0.15}),                          # spread
            v(flex((0.40, 0.40, 0.25), ('index',))),                                # index
            v(flex((0.35, 0.40, 0.25), ('ring',)), flex((0.40, 0.40, 0.25), ('pinky',))),
            v(flex((0.40, -0.25, -0.15))),                                          # knuckles
            v(self.thumb(0.0, 0.40, 0.45)),                                         # thumb curl
            v({cmc: metacarpal.a * 0.25}),                                          # thumb roll
            v({cmc: _unit(np.cross(metacarpal.a, -DORSAL)) * 0.30}),                # thumb lift
            v(flex((0.0, 0.0, 0.25))),                                              # distal joints
        ])


def _pose_basis(synergies: np.ndarray) -> np.ndarray:
    """(45, 45) orthonormal rows: the synergies (Gram-Schmidt in order), then the unit vectors
    that complete the basis."""
    rows: list[np.ndarray] = []
    for v in list(synergies) + list(np.eye(45)):
        for _ in range(2):   # twice, so that rounding errors do not accumulate
            for r in rows:
                v = v - (v @ r) * r
        if np.linalg.norm(v) > 1e-6 and len(rows) < 45:
            rows.append(v / np.linalg.norm(v))
    return np.array(rows)


# ----------------------------------------------------------------------------------------------
# Assembly, cache, MANO-format pickle

class _Builder:
    """What all shapes share: the topology and faces, the adjacency, the default skeleton."""

    def __init__(self):
        self.skel = make_skeleton(HandParams())
        surf = HandSurface(self.skel)
        topo = _make_topology(self.skel)
        rough = _place(_layout(self.skel, topo, surf), surf)
        # The hole around the thumb's root turns counter-clockwise about the thumb, and the
        # thumb's first rings start at the angle of the hole's first vertex.
        tau = 0.5 * self.skel.digits['thumb'][0].length
        _, a, _ = _thumb_frame(self.skel.digits['thumb'], np.array([tau]))
        loop = rough[topo.hole] - rough[topo.hole].mean(0)
        if np.cross(loop, np.roll(loop, -1, 0)).sum(0) @ a[0] < 0:
            topo.hole = topo.hole[::-1].copy()
        topo.thumb_phase = float(_thumb_angle(self.skel, rough[topo.hole[:1]], tau)[0])
        topo.faces = _connect(topo, _place(_layout(self.skel, topo, surf), surf), self.skel, surf)
        self.topo = topo
        self.adj = _neighbours(topo.faces, topo.num_verts)
        self.fixed = np.zeros(topo.num_verts, bool)
        self.fixed[topo.palm_rows[0]] = True
        self.fixed[list(topo.tips.values())] = True

    def vertices(self, params: HandParams) -> tuple[np.ndarray, np.ndarray]:
        """(V, 3) vertices (construction order) of the hand with ``params``, and each vertex's
        distance along its digit (NaN on the palm)."""
        skel = make_skeleton(params)
        surf = HandSurface(skel)
        rays = _layout(skel, self.topo, surf)
        return _relax(_place(rays, surf), self.adj, self.fixed, surf), rays.along

    def file_order(self) -> np.ndarray:
        """Construction ids in file order: construction order, the fingertips moved to MANO's
        fingertip indices."""
        tip_at = {TIP_VERTS[name]: vid for name, vid in self.topo.tips.items()}
        rest = iter(sorted(set(range(self.topo.num_verts)) - set(tip_at.values())))
        return np.array([tip_at[i] if i in tip_at else next(rest) for i in range(self.topo.num_verts)])


def _build() -> dict[str, np.ndarray]:
    """All arrays of the built-in hand (see the module docstring)."""
    b = _Builder()
    v0, along = b.vertices(HandParams())
    dirs: list[np.ndarray] = []
    for _, field, sigma in SHAPE_DIRECTIONS:
        d = (b.vertices(replace(HandParams(), **{field: 1.0 + sigma}))[0] - v0).ravel()
        for prev in dirs:
            d = d - (d @ prev) / (prev @ prev) * prev
        dirs.append(d)
    order = b.file_order()
    poses = _PoseSpace(b.skel)
    parents = np.array(PARENTS, dtype=np.int64)
    parents[0] = 4294967295   # MANO's "no parent"
    arrays = {
        'v_template': v0[order],
        'f': np.argsort(order)[b.topo.faces].astype(np.uint32),
        'shapedirs': np.stack(dirs, 1).reshape(-1, 3, len(dirs))[order],
        'posedirs': np.zeros((NUM_VERTS, 3, 9 * (NUM_JOINTS - 1))),
        'J_regressor': _joint_regressor(v0, b.skel)[:, order],
        'weights': _skin_weights(v0, along, b.skel, b.topo, b.adj)[order],
        'kintree_table': np.stack([parents, np.arange(NUM_JOINTS, dtype=np.int64)]),
        'hands_components': _pose_basis(poses.synergies()),
        'hands_mean': poses.mean(),
        'J': b.skel.joints.copy(),
    }
    # Rounded, so that machines whose floating-point details differ in the last bits build the
    # same arrays (and the same model hash in checkpoints).
    return {k: np.round(v, 12) if v.dtype.kind == 'f' else v for k, v in arrays.items()}


_memo: dict[str, dict[str, np.ndarray]] = {}
# The code that builds the arrays, as loaded (hashing the file later could name a newer version).
_VERSION = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]


def _cache_file() -> Path:
    folder = os.environ.get('INTERACTHAND_CACHE') or Path.home() / '.cache' / 'interacthand'
    return Path(folder) / f'proxy_hand_{_VERSION}.npz'


def build_proxy_model() -> dict[str, np.ndarray]:
    """The built-in right hand as a dict of numpy arrays under MANO's key names, plus ``J``, the
    (16, 3) rest joints. Built once per version of this file, then read from the cache (memory,
    then disk); each call returns fresh copies."""
    path = _cache_file()
    if str(path) not in _memo:
        arrays = None
        if path.is_file():
            try:
                with np.load(path) as data:
                    arrays = {k: data[k] for k in data.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):
                arrays = None   # a damaged cache file is rebuilt
        if arrays is None:
            arrays = _build()
            try:
                write_atomically(path, lambda tmp: np.savez(tmp, **arrays))
                for old in path.parent.glob('proxy_hand_*.npz'):   # other versions' arrays
                    if old != path:
                        old.unlink(missing_ok=True)
            except OSError as err:
                log.debug(f'could not cache the built-in hand model in {path}: {err}')
        _memo[str(path)] = arrays
    return {k: v.copy() for k, v in _memo[str(path)].items()}


def write_proxy_pickle(path: str | Path) -> Path:
    """Write the built-in hand as a MANO-format pickle (protocol 2) that MANO tools can read.

    Arrays are plain numpy arrays, except ``J_regressor``, which is a ``scipy.sparse`` CSC matrix
    as in the official files (manopth calls its ``toarray()``; smplx and :mod:`utils.mano` read
    either).
    """
    from scipy import sparse
    model = build_proxy_model()
    model['J_regressor'] = sparse.csc_matrix(model['J_regressor'])
    model['bs_style'], model['bs_type'] = 'lbs', 'lrotmin'
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as fh:
        pickle.dump(model, fh, protocol=2)
    return path
