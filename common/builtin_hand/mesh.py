"""The mesh of the built-in hand: vertex rings along the palm, fingers and thumb and their
triangles (the same for every shape), where each vertex lies on the surface, and relaxation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builtin_hand.anatomy import DORSAL, FINGERS, PALM_S, RADIAL, Bone, Skeleton, smoothstep, unit
from builtin_hand.surface import HandSurface, finger_profile, thumb_caps

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
class Topology:
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


def make_topology(skel: Skeleton) -> Topology:
    """Vertex ids, ring by ring: palm rows, the fingers' first ring, each finger's own rings and
    tip, the thumb's rings and tip. The faces follow in :func:`connect`."""
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
        counts[name] = _shaft_counts(bones, _WEB_T * bones[0].length, finger_profile(bones).end,
                                     _FINGER_OWN_RINGS[name] - len(_TIP_ANGLES))
        rings[name] = [np.array([next(ids) for _ in range(8)]) for _ in range(_FINGER_OWN_RINGS[name])]
        tips[name] = next(ids)
    thumb = [np.array([next(ids) for _ in range(size)]) for size in _THUMB_RING_SIZES]
    tips['thumb'] = next(ids)
    r0, c0 = _HOLE_ROW, _HOLE_SLOT
    loop = ([(r0, c0 + i) for i in range(n)] + [(r0 + i, c0 + n) for i in range(n)]
            + [(r0 + n, c0 + n - i) for i in range(n)] + [(r0 + n - i, c0) for i in range(n)])
    hole = np.array([rows[r][c % 36] for r, c in loop])
    return Topology(rows, split, rings, thumb, hole, tips, hole_cells, counts, next(ids))


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
        self.direction[ids] = unit(direction)
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


def thumb_frame(bones: list[Bone], tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point on the thumb's bone polyline at arc length tau (K,), and a tangent and pad normal
    that turn smoothly across the joints: each (K, 3)."""
    ends = np.cumsum([b.length for b in bones])
    seg = np.minimum(np.searchsorted(ends, tau), 2)
    starts = np.concatenate([[0.0], ends[:-1]])
    centre = np.array([bones[i].start + (t - starts[i]) * bones[i].a for i, t in zip(seg, tau)])
    a = np.repeat(bones[0].a[None], len(tau), 0)
    n = np.repeat(bones[0].n[None], len(tau), 0)
    for j in range(2):
        beta = smoothstep((tau - ends[j] + 0.008) / 0.016)[:, None]
        a = (1 - beta) * a + beta * bones[j + 1].a
        n = (1 - beta) * n + beta * bones[j + 1].n
    a = unit(a)
    return centre, a, unit(n - (n * a).sum(1, keepdims=True) * a)


def _thumb_ring_angles(topo: Topology, i: int) -> np.ndarray:
    """Angles of thumb ring i's vertices about the thumb; rings of other than 8 vertices start
    at the angle of the hole's first vertex."""
    size = _THUMB_RING_SIZES[i]
    return _RING8 if size == 8 else topo.thumb_phase + 2 * np.pi * np.arange(size) / size


def layout(skel: Skeleton, topo: Topology, surf: HandSurface) -> _Rays:
    """The rays that place every vertex of the hand with skeleton ``skel``."""
    rays = _Rays(topo.num_verts)
    scale = skel.palm['s'][-1] / PALM_S[-1]
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
    cap = thumb_caps(bones)[2][1]
    end = lmc + lpp + bones[2].length - cap
    taus = np.array([0.5 * lmc, 0.78 * lmc, lmc, lmc + lpp / 3, lmc + 2 * lpp / 3, lmc + lpp,
                     0.5 * (lmc + lpp + end), end, end, end])
    centre, a, n = thumb_frame(bones, taus)
    l, m = np.cross(a, n), -n
    side = unit(0.8 * RADIAL - 0.6 * DORSAL)     # outward normal of the palm around the hole
    for i, tilt in enumerate(_THUMB_RING_TILT):
        a_tilt = unit(a[i] + tilt * side)
        l[i] = unit(l[i] - (l[i] @ a_tilt) * a_tilt)
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


def place(rays: _Rays, surf: HandSurface) -> np.ndarray:
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


def thumb_angle(skel: Skeleton, pts: np.ndarray, tau: float) -> np.ndarray:
    """Angle of points about the thumb's axis at arc length tau (0: away from the fingers)."""
    centre, a, n = thumb_frame(skel.digits['thumb'], np.array([tau]))
    d = pts - centre
    return np.arctan2(d @ -n[0], d @ np.cross(a[0], n[0]))


def connect(topo: Topology, verts: np.ndarray, skel: Skeleton, surf: HandSurface) -> np.ndarray:
    """(F, 3) triangles of the rings of :func:`make_topology`; the default hand's vertices
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
    tris += _stitch(topo.hole, first, thumb_angle(skel, verts[topo.hole], tau),
                    thumb_angle(skel, verts[first], tau))
    for i, (a_ids, b_ids) in enumerate(zip(topo.thumb_rings[:-1], topo.thumb_rings[1:])):
        if len(a_ids) == len(b_ids):
            tris += _quads(a_ids, b_ids)
        else:
            tris += _stitch(a_ids, b_ids, _thumb_ring_angles(topo, i), _thumb_ring_angles(topo, i + 1))
    last = topo.thumb_rings[-1]
    tris += [(last[i], last[(i + 1) % 8], topo.tips['thumb']) for i in range(8)]
    return np.array(tris, dtype=np.int64)


def neighbours(faces: np.ndarray, num_verts: int):
    """Row-normalised vertex adjacency as a scipy sparse matrix: ``A @ x`` is the mean of each
    vertex's neighbours."""
    from scipy import sparse
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    adj = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_verts, num_verts)).tocsr()
    adj.data[:] = 1.0
    return sparse.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj


def relax(verts: np.ndarray, adj, fixed: np.ndarray, surf: HandSurface, rounds: int = 5,
           step: float = 0.5) -> np.ndarray:
    """Even out the vertex spacing: Laplacian steps, each followed by projection back onto the
    surface; ``fixed`` vertices (the wrist opening, the fingertips) stay."""
    free = ~fixed
    for _ in range(rounds):
        moved = verts + step * (adj @ verts - verts)
        verts = verts.copy()
        verts[free] = surf.project(moved[free])
    return verts


