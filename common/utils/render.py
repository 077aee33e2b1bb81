"""Headless mesh rendering with pyrender (EGL, or OSMesa as the fallback).

Everything here uses the camera convention of the code: camera axes x right, y down, z forward,
pinhole intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels. pyrender's OpenGL
camera looks down -z with y up, so meshes are turned 180 degrees about x on the way in.
"""
from __future__ import annotations

import ctypes.util
import os
from dataclasses import dataclass

import numpy as np

from errors import UserError


def _choose_platform() -> None:
    """Pick PyOpenGL's headless platform before pyrender is imported (EGL first, then OSMesa)."""
    if 'PYOPENGL_PLATFORM' in os.environ:
        return
    if ctypes.util.find_library('EGL'):
        os.environ['PYOPENGL_PLATFORM'] = 'egl'
    elif ctypes.util.find_library('OSMesa'):
        os.environ['PYOPENGL_PLATFORM'] = 'osmesa'


_choose_platform()
import pyrender  # noqa: E402  (must follow the platform choice)
import trimesh  # noqa: E402

_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes x right, y down, z forward -> OpenGL


@dataclass
class RenderMesh:
    """A triangle mesh in camera coordinates (metres) with one RGBA colour."""
    verts: np.ndarray          # (V, 3)
    faces: np.ndarray          # (F, 3)
    color: tuple = (0.75, 0.6, 0.5, 1.0)
    smooth: bool = True


class MeshRenderer:
    """An off-screen renderer of fixed image size; reuse one for many frames (creating the GL
    context is the slow part)."""

    def __init__(self, width: int, height: int):
        self.width, self.height = int(width), int(height)
        try:
            self._r = pyrender.OffscreenRenderer(self.width, self.height)
        except Exception as err:  # no usable GL platform: the user must install Mesa
            raise UserError(f'cannot open a headless OpenGL context ({err}); install Mesa EGL or '
                            'OSMesa (run make install, or apt-get install libegl1 libegl-mesa0 '
                            'libgl1-mesa-dri libosmesa6)') from None

    def close(self) -> None:
        self._r.delete()

    def _scene(self, meshes: list[RenderMesh], K: np.ndarray, ambient: float,
               lights: list[tuple[np.ndarray, float]]) -> tuple[pyrender.Scene, list]:
        scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[ambient] * 3)
        nodes = []
        for m in meshes:
            tm = trimesh.Trimesh(m.verts, m.faces, process=False)
            mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=m.color, metallicFactor=0.0,
                                                     roughnessFactor=0.7,
                                                     alphaMode='BLEND' if m.color[3] < 1 else 'OPAQUE')
            mesh = pyrender.Mesh.from_trimesh(tm, material=mat, smooth=m.smooth)
            nodes.append(scene.add(mesh, pose=_CV_TO_GL))
        cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2],
                                        znear=0.01, zfar=20.0)
        scene.add(cam, pose=np.eye(4))
        for direction, intensity in lights:
            scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=intensity),
                      pose=_light_pose(direction))
        return scene, nodes

    def render(self, meshes: list[RenderMesh], K: np.ndarray, ambient: float = 0.35,
               lights: list[tuple[np.ndarray, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Shaded colour (H, W, 4) uint8 with alpha = coverage, and depth (H, W) in metres (0 = empty).

        ``lights``: (direction the light travels, in camera axes; intensity) pairs; the default is
        one light shining from slightly above the camera into the scene.
        """
        lights = lights if lights is not None else [(np.array([0.0, 0.3, 1.0]), 3.0)]
        scene, _ = self._scene(meshes, K, ambient, lights)
        color, depth = self._r.render(scene, flags=pyrender.RenderFlags.RGBA)
        return color, depth

    def depth(self, meshes: list[RenderMesh], K: np.ndarray) -> np.ndarray:
        """Depth (H, W) in metres, 0 where no mesh is; faster than :meth:`render`."""
        scene, _ = self._scene(meshes, K, 0.0, [])
        return self._r.render(scene, flags=pyrender.RenderFlags.DEPTH_ONLY)


def _light_pose(direction: np.ndarray) -> np.ndarray:
    """Pose (OpenGL axes) of a directional light travelling along ``direction`` (camera axes)."""
    d = np.asarray(direction, dtype=np.float64)
    d = -(_CV_TO_GL[:3, :3] @ d) / np.linalg.norm(d)  # the light's +z; it shines along its -z
    up = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(up, d)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(d, x), d], axis=1)
    return pose


def overlay_mesh(img: np.ndarray, verts: np.ndarray, faces: np.ndarray, K: np.ndarray,
                 color: tuple = (0.55, 0.75, 1.0), alpha: float = 0.7,
                 renderer: MeshRenderer | None = None) -> np.ndarray:
    """The mesh (camera coordinates, metres) rendered shaded and semi-transparent onto ``img``
    (H, W, 3) uint8 RGB; returns a new uint8 image."""
    h, w = img.shape[:2]
    r = renderer or MeshRenderer(w, h)
    try:
        rgba, _ = r.render([RenderMesh(verts, faces, (*color, 1.0))], K)
    finally:
        if renderer is None:
            r.close()
    a = (rgba[..., 3:4].astype(np.float32) / 255.0) * alpha
    out = img.astype(np.float32) * (1 - a) + rgba[..., :3].astype(np.float32) * a
    return np.clip(out, 0, 255).astype(np.uint8)


def intrinsics(focal: tuple[float, float], princpt: tuple[float, float]) -> np.ndarray:
    """(3, 3) pinhole matrix from focal lengths and principal point in pixels."""
    return np.array([[focal[0], 0, princpt[0]], [0, focal[1], princpt[1]], [0, 0, 1]], dtype=np.float64)
