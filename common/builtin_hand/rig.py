"""The rig of the built-in hand: skinning weights, the joint regressor, and the pose space (the
relaxed mean hand and the synergies that become ``hands_components``)."""
from __future__ import annotations

import numpy as np

from builtin_hand.anatomy import DISTAL, DORSAL, FINGER_JOINTS, FINGERS, NUM_JOINTS, Bone, Skeleton, smoothstep, unit
from builtin_hand.mesh import Topology

# ----------------------------------------------------------------------------------------------
# Skinning weights and joint regressor

_MCP_BLEND = 0.016   # half-width (metres) of the hand-over from the palm to a finger


def _blend(t: np.ndarray, t_joint: float, half_width: float) -> np.ndarray:
    """0 well before a joint, 1 well after it, smooth across ``t_joint +- half_width``."""
    return smoothstep((t - t_joint + half_width) / (2 * half_width))


def skin_weights(verts: np.ndarray, along: np.ndarray, skel: Skeleton, topo: Topology,
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
    to_thumb = (1 - smoothstep((off - 0.8 * radius) / (1.2 * radius))) * smoothstep(tau / (0.5 * mc.length))
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


def joint_regressor(verts: np.ndarray, skel: Skeleton) -> np.ndarray:
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

    start = np.concatenate([unit(np.cross(thumb[0].a, -DORSAL)) * 0.8, [0.3, 0.3]])
    return minimize(cost, start, method='L-BFGS-B', bounds=[(-2.0, 2.0)] * 3 + [(0.0, 1.2)] * 2).x


class PoseSpace:
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
            v({cmc: unit(np.cross(metacarpal.a, -DORSAL)) * 0.30}),                # thumb lift
            v(flex((0.0, 0.0, 0.25))),                                              # distal joints
        ])


def pose_basis(synergies: np.ndarray) -> np.ndarray:
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


