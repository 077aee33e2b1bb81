"""Anatomy of the built-in hand: its parameters and shape directions, the default hand's bones
(lengths, girths, rest directions) and the skeleton they make.

Rest frame, as in MANO's right hand: the flat hand lies in the x-z plane, the fingers point along
-x from the wrist, the thumb is on the +z side and the palm faces -y; the wrist joint is at the
origin. Lengths in metres; ``s`` is the distance from the wrist toward the fingers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.mano import FINGERTIP_VERTS, NUM_MANO_JOINTS

NUM_JOINTS = NUM_MANO_JOINTS
TIP_VERTS = dict(zip(('thumb', 'index', 'middle', 'ring', 'pinky'), FINGERTIP_VERTS))
FINGERS = ('index', 'middle', 'ring', 'pinky')                 # long fingers, thumb side first
# MANO joint index of each digit's three joints (MCP, PIP, DIP; thumb: CMC, MCP, IP).
FINGER_JOINTS = {'index': (1, 2, 3), 'middle': (4, 5, 6), 'pinky': (7, 8, 9),
                 'ring': (10, 11, 12), 'thumb': (13, 14, 15)}
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

# Standard deviation of each hands_components coefficient for sampling natural poses (see the
# module docstring): pose = hands_mean + (clip(N(0, 1), -2, 2) * PCA_STD) @ hands_components.
# Rows 0-9: half of each synergy's amplitude along its row (PoseSpace.synergies gives them at
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
PALM_S = np.array([-0.020, 0.000, 0.025, 0.050, 0.075, 0.095])
_PALM_W = np.array([0.0270, 0.0300, 0.0355, 0.0390, 0.0410, 0.0416])
_PALM_ZC = np.array([0.0000, -0.0012, -0.0035, -0.0048, -0.0055, -0.0056])
_PALM_T = np.array([0.0175, 0.0165, 0.0150, 0.0138, 0.0128, 0.0120])
_PALM_YC = np.array([-0.0010, -0.0015, -0.0020, -0.0020, -0.0015, -0.0010])
_PALM_P = np.array([2.2, 2.4, 2.8, 3.0, 3.0, 3.0])
_HYPOTHENAR = ((0.036, -0.0075, -0.031), (0.030, 0.0085, 0.0105))   # centre (s, y, z), radii


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def smoothstep(x: np.ndarray) -> np.ndarray:
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
        a = unit(np.cos(np.radians(tilt)) * a - np.sin(np.radians(tilt)) * DORSAL)
        n0 = unit(-DORSAL - (-DORSAL @ a) * a)     # toward the palm side
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
    wrist = np.interp(PALM_S, [0.0, 0.05], [p.wrist_size, 1.0])
    palm = {'s': PALM_S * p.scale, 'W': _PALM_W * width * wrist, 'zc': _PALM_ZC * width,
            'T': _PALM_T * thick * wrist, 'yc': _PALM_YC * thick, 'p': _PALM_P}
    (hs_, hy, hz), (rs, ry, rz) = _HYPOTHENAR
    hypothenar = (_at(hs_ * p.scale, hy * thick, hz * width),
                  np.array([rs * p.scale, ry * thick * p.thenar, rz * width * p.thenar]))
    return Skeleton(joints, digits, palm, hypothenar, p.thenar)


