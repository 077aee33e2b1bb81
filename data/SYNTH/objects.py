"""Primitive objects for SYNTH scenes: shapes with an exact (or near-exact) signed distance, their
meshes, and procedural textures.

Every shape lives in its own frame (centred at the origin) and is placed by a rotation and a centre.
The signed distance function (SDF; negative inside) is what places objects in contact with the hand
without gross interpenetration: it is evaluated at the hand's vertices. Low-frequency bumps
displace the surface along its normal and are subtracted from the SDF, so mesh and SDF agree to
first order. Units are metres.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import trimesh

KINDS = ('box', 'ellipsoid', 'cylinder', 'capsule', 'torus')


@dataclass
class Bumps:
    """A smooth displacement field: ``amplitude * mean_i sin(freqs_i . p + phases_i)``."""
    amplitude: float
    freqs: np.ndarray    # (3, 3) rad / m
    phases: np.ndarray   # (3,)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """(N, 3) local points -> (N,) outward displacement in metres."""
        return self.amplitude * np.sin(p @ self.freqs.T + self.phases).mean(axis=1)


@dataclass
class Shape:
    """A solid in its own frame. ``size`` (3,), metres, means per kind:
    box: half extents; ellipsoid: radii; cylinder: radius, half height along z, unused;
    capsule: radius, half length of the axis segment along z, unused; torus (a ring or handle,
    in the xy-plane): major radius, tube radius, unused."""
    kind: str
    size: np.ndarray
    bumps: Bumps | None = None
    _mesh: tuple | None = field(default=None, repr=False, compare=False)

    def scaled(self, s: float) -> 'Shape':
        """The same shape ``s`` times larger (bumps included; a built mesh is scaled along)."""
        bumps = None
        if self.bumps is not None:
            bumps = Bumps(self.bumps.amplitude * s, self.bumps.freqs / s, self.bumps.phases)
        mesh = None if self._mesh is None else (self._mesh[0] * s, self._mesh[1])
        return Shape(self.kind, self.size * s, bumps, mesh)

    @property
    def radius(self) -> float:
        """Radius of a ball around the origin that holds the whole shape."""
        a, b, _ = self.size
        extra = self.bumps.amplitude if self.bumps is not None else 0.0
        r = {'box': np.linalg.norm(self.size), 'ellipsoid': self.size.max(),
             'cylinder': np.hypot(a, b), 'capsule': a + b, 'torus': a + b}[self.kind]
        return float(r + extra)

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """(N, 3) local points -> (N,) signed distance, metres (negative inside)."""
        a, b, _ = self.size
        if self.kind == 'box':
            q = np.abs(p) - self.size
            d = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
        elif self.kind == 'ellipsoid':  # the usual first-order bound, exact for a sphere
            k0 = np.linalg.norm(p / self.size, axis=1)
            k1 = np.maximum(np.linalg.norm(p / self.size ** 2, axis=1), 1e-12)
            d = k0 * (k0 - 1) / k1
        elif self.kind == 'cylinder':
            q = np.stack([np.linalg.norm(p[:, :2], axis=1) - a, np.abs(p[:, 2]) - b], axis=1)
            d = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
        elif self.kind == 'capsule':
            axis_point = np.zeros_like(p)
            axis_point[:, 2] = np.clip(p[:, 2], -b, b)
            d = np.linalg.norm(p - axis_point, axis=1) - a
        elif self.kind == 'torus':
            q = np.stack([np.linalg.norm(p[:, :2], axis=1) - a, p[:, 2]], axis=1)
            d = np.linalg.norm(q, axis=1) - b
        else:
            raise ValueError(f'unknown shape kind {self.kind!r}; allowed: {", ".join(KINDS)}')
        return d - self.bumps(p) if self.bumps is not None else d

    def gradient(self, p: np.ndarray, eps: float = 1e-5) -> np.ndarray:
        """(N, 3) local points -> (N, 3) unit SDF gradients (outward normals), central differences."""
        g = np.stack([self.sdf(p + e) - self.sdf(p - e) for e in np.eye(3) * eps], axis=1)
        return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Triangle mesh of the surface in the local frame: verts (V, 3), faces (F, 3); built once."""
        if self._mesh is None:
            self._mesh = self._build_mesh()
        return self._mesh

    def _build_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        a, b, _ = self.size
        if self.kind == 'box':
            m = trimesh.creation.box(extents=2 * self.size)
        elif self.kind == 'ellipsoid':
            m = trimesh.creation.icosphere(subdivisions=3)
            m.vertices = m.vertices * self.size
        elif self.kind == 'cylinder':
            m = trimesh.creation.cylinder(radius=a, height=2 * b, sections=40)
        elif self.kind == 'capsule':
            m = trimesh.creation.capsule(height=2 * b, radius=a, count=[20, 20])
        else:
            m = trimesh.creation.torus(major_radius=a, minor_radius=b, major_sections=40,
                                       minor_sections=14)
        verts, faces = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces)
        if self.bumps is not None:
            base = Shape(self.kind, self.size)
            verts = verts + base.gradient(verts) * self.bumps(verts)[:, None]
        return verts, faces


@dataclass
class PlacedObject:
    """A shape at a pose in camera coordinates, with its look.

    ``rotation`` (3, 3) columns are the shape's axes in camera coordinates; ``centre`` (3,) metres.
    """
    shape: Shape
    rotation: np.ndarray
    centre: np.ndarray
    color: np.ndarray = field(default_factory=lambda: np.ones(3))   # linear RGB multiplier
    texture: np.ndarray | None = None                               # (h, w, 3) uint8 sRGB
    texture_scale: float = 0.05                                     # metres per texture tile
    roughness: float = 0.6
    metallic: float = 0.0

    def to_local(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) camera points -> (N, 3) points in the shape's frame."""
        return (x - self.centre) @ self.rotation

    def sdf(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) camera points -> (N,) signed distance to the object, metres."""
        return self.shape.sdf(self.to_local(x))

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """The surface in camera coordinates: verts (V, 3), faces (F, 3)."""
        verts, faces = self.shape.mesh()
        return verts @ self.rotation.T + self.centre, faces

    def surface(self) -> dict[str, np.ndarray]:
        """Render-ready arrays with one vertex per face corner (so texture seams and creases stay
        sharp): verts (3F, 3) camera coordinates, faces (F, 3), normals (3F, 3), uv (3F, 2).

        Corner normals are SDF gradients at the corner nudged 2 % towards its face centre, which
        gives smooth normals on curved parts and sharp ones across edges (box, cylinder rims).
        """
        verts, faces = self.shape.mesh()
        corners = verts[faces]                                          # (F, 3, 3)
        centre = corners.mean(axis=1, keepdims=True)
        normals = self.shape.gradient((corners + 0.02 * (centre - corners)).reshape(-1, 3))
        # Box-projected texture coordinates: each face uses the two axes its normal is not along.
        fn = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        axis = np.abs(fn).argmax(axis=1)
        keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]                 # (F, 2)
        uv = np.take_along_axis(corners, np.repeat(keep[:, None, :], 3, axis=1), axis=2)
        uv = uv.reshape(-1, 2) / self.texture_scale
        flat = corners.reshape(-1, 3)
        return {'verts': flat @ self.rotation.T + self.centre,
                'faces': np.arange(len(flat)).reshape(-1, 3),
                'normals': normals @ self.rotation.T,
                'uv': uv}


# ----------------------------------------------------------------------------------------------
# Sampling shapes and looks

def sample_shape(rng: np.random.Generator) -> Shape:
    """A random shape of a typical hand-held size (2-12 cm across)."""
    kind = str(rng.choice(KINDS, p=[0.28, 0.2, 0.24, 0.18, 0.1]))
    if kind == 'box':
        size = rng.uniform(0.012, 0.055, 3)
    elif kind == 'ellipsoid':
        size = rng.uniform(0.018, 0.045) * rng.uniform(0.7, 1.3, 3)
    elif kind == 'cylinder':
        size = np.array([rng.uniform(0.012, 0.04), rng.uniform(0.02, 0.07), 0.0])
    elif kind == 'capsule':
        size = np.array([rng.uniform(0.008, 0.025), rng.uniform(0.015, 0.05), 0.0])
    else:
        size = np.array([rng.uniform(0.025, 0.045), rng.uniform(0.006, 0.012), 0.0])
    bumps = None
    if kind in ('ellipsoid', 'capsule', 'cylinder') and rng.random() < 0.5:
        extent = float(size[:2].min())
        freqs = rng.normal(size=(3, 3))
        freqs *= rng.uniform(1.0, 2.5, (3, 1)) / (extent * np.linalg.norm(freqs, axis=1, keepdims=True))
        bumps = Bumps(min(0.003, 0.12 * extent) * rng.uniform(0.4, 1.0), freqs,
                      rng.uniform(0, 2 * np.pi, 3))
    return Shape(kind, size, bumps)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random (3, 3) rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_color(rng: np.random.Generator, max_saturation: int = 255) -> np.ndarray:
    """A random sRGB colour in 0..1 (any hue, mixed saturation up to ``max_saturation`` of 255,
    mixed brightness)."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(30, max_saturation + 1),
                      rng.integers(60, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0


def sample_texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A procedural (size, size, 3) uint8 sRGB texture that tiles: plain with grain, stripes,
    checker, dots or smooth noise, in random colours."""
    c1, c2 = random_color(rng), random_color(rng)
    u, v = np.meshgrid(np.arange(size) / size, np.arange(size) / size)
    kind = rng.choice(['plain', 'stripes', 'checker', 'dots', 'noise'], p=[0.3, 0.2, 0.15, 0.15, 0.2])
    if kind == 'plain':
        t = np.zeros_like(u)
    elif kind == 'stripes':
        k = rng.integers(1, 5, 2) * rng.choice([-1, 1], 2) * [1, rng.integers(0, 2)]
        t = (np.sin(2 * np.pi * (k[0] * u + k[1] * v)) > rng.uniform(-0.5, 0.5)).astype(float)
    elif kind == 'checker':
        n = rng.integers(2, 6)
        t = ((np.floor(u * n) + np.floor(v * n)) % 2).astype(float)
    elif kind == 'dots':
        n = rng.integers(2, 6)
        du, dv = (u * n) % 1 - 0.5, (v * n) % 1 - 0.5
        t = (np.hypot(du, dv) < rng.uniform(0.15, 0.4)).astype(float)
    else:  # a sum of waves with whole periods per tile, so the pattern tiles seamlessly
        k = rng.integers(-3, 4, (4, 2))
        t = sum(np.sin(2 * np.pi * (a * u + b * v) + rng.uniform(0, 2 * np.pi)) for a, b in k)
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    img = img * (1 + rng.normal(0, 0.04, (size, size, 1)))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
