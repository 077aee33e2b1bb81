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
_open_renderers: set[int] = set()            # ids of the MeshRenderers open in this process


@dataclass
class RenderMesh:
    """A triangle mesh in camera coordinates (metres) with one RGBA colour.

    Optional appearance: ``normals`` (V, 3) given per vertex instead of computed, ``vertex_colors``
    (V, 3) linear-RGB multipliers in 0..1, ``uv`` (V, 2) with ``texture`` (h, w, 3) uint8 sRGB
    (wrapped), and the PBR ``roughness``/``metallic`` factors. Colours in ``color`` are linear RGB.
    """
    verts: np.ndarray          # (V, 3)
    faces: np.ndarray          # (F, 3)
    color: tuple = (0.75, 0.6, 0.5, 1.0)
    smooth: bool = True
    normals: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    roughness: float = 0.7
    metallic: float = 0.0

    def to_pyrender(self, shaded: bool = True) -> pyrender.Mesh:
        """The pyrender mesh with this appearance; ``shaded=False`` gives bare geometry (enough
        for depth renders, and faster: no normals, colours or textures)."""
        if not shaded:
            return pyrender.Mesh([pyrender.Primitive(positions=self.verts, indices=self.faces)])
        texture = None
        if self.texture is not None:
            texture = pyrender.Texture(source=self.texture, source_channels='RGB')
        mat = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=self.color, metallicFactor=self.metallic,
            roughnessFactor=self.roughness, baseColorTexture=texture,
            alphaMode='BLEND' if self.color[3] < 1 else 'OPAQUE')
        if self.normals is None and self.vertex_colors is None and self.uv is None:
            tm = trimesh.Trimesh(self.verts, self.faces, process=False)
            return pyrender.Mesh.from_trimesh(tm, material=mat, smooth=self.smooth)
        normals = self.normals
        if normals is None:
            normals = trimesh.Trimesh(self.verts, self.faces, process=False).vertex_normals
        colors = None
        if self.vertex_colors is not None:
            colors = np.concatenate([self.vertex_colors, np.ones((len(self.verts), 1))], axis=1)
        prim = pyrender.Primitive(positions=self.verts, normals=normals, texcoord_0=self.uv,
                                  color_0=colors, indices=self.faces, material=mat)
        return pyrender.Mesh(primitives=[prim])


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
        _open_renderers.add(id(self))

    def close(self) -> None:
        """Free the GL resources. All EGL renderers of a process share one EGL display, which
        pyrender ends (eglTerminate) when a renderer is deleted; so while other renderers are
        open only this one's context is destroyed, and the last one to close ends the display."""
        if self._r is None:
            return
        _open_renderers.discard(id(self))
        platform = self._r._platform
        if _open_renderers and type(platform).__name__ == 'EGLPlatform':
            from OpenGL.EGL import eglDestroyContext
            platform.make_current()
            self._r._renderer.delete()
            eglDestroyContext(platform._egl_display, platform._egl_context)
            platform._egl_context = platform._egl_display = None
        else:
            self._r.delete()
        self._r = None

    def _scene(self, meshes: list[RenderMesh], K: np.ndarray, ambient: float,
               lights: list[tuple], shaded: bool = True) -> tuple[pyrender.Scene, list]:
        scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[ambient] * 3)
        nodes = [_Node(i, mesh=m.to_pyrender(shaded), matrix=_CV_TO_GL) for i, m in enumerate(meshes)]
        cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2],
                                        znear=0.01, zfar=20.0)
        extra = [_Node(len(nodes), camera=cam, matrix=np.eye(4))]
        for i, (direction, intensity, *color) in enumerate(lights, start=len(nodes) + 1):
            rgb = np.asarray(color[0], dtype=np.float64) if color else np.ones(3)
            light = pyrender.DirectionalLight(color=rgb, intensity=intensity)
            extra.append(_Node(i, light=light, matrix=_light_pose(direction)))
        for node in nodes + extra:
            scene.add_node(node)
        return scene, nodes

    def render(self, meshes: list[RenderMesh], K: np.ndarray, ambient: float = 0.35,
               lights: list[tuple] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Shaded colour (H, W, 4) uint8 with alpha = coverage, and depth (H, W) in metres (0 = empty).

        ``lights``: (direction the light travels, in camera axes; intensity) pairs, optionally with
        a third item, the light's linear RGB colour; the default is one white light shining from
        slightly above the camera into the scene. Colour at partly covered edge pixels is
        premultiplied by the coverage (alpha).
        """
        lights = lights if lights is not None else [(np.array([0.0, 0.3, 1.0]), 3.0)]
        scene, _ = self._scene(meshes, K, ambient, lights)
        color, depth = self._r.render(scene, flags=pyrender.RenderFlags.RGBA)
        return color, depth

    def depth(self, meshes: list[RenderMesh], K: np.ndarray) -> np.ndarray:
        """Depth (H, W) in metres, 0 where no mesh is; faster than :meth:`render`."""
        scene, _ = self._scene(meshes, K, 0.0, [], shaded=False)
        return self._r.render(scene, flags=pyrender.RenderFlags.DEPTH_ONLY)


class _Node(pyrender.Node):
    """A scene node hashed by its index in the scene. pyrender keeps nodes in sets and draws
    meshes and sums lights in the sets' iteration order; with the default (address) hashes that
    order, and so the last bit of some pixels, changes from run to run."""

    def __init__(self, index: int, **kwargs):
        super().__init__(**kwargs)
        self._index = index

    def __hash__(self) -> int:
        return self._index


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


class OverlayRenderer:
    """Meshes drawn over images of any size, one off-screen renderer per image size, reused."""

    def __init__(self, faces: np.ndarray):
        self.faces = faces                                          # (F, 3) 0-based
        self.renderers: dict[tuple[int, int], MeshRenderer] = {}    # by image (width, height)

    def render(self, img: np.ndarray, verts: np.ndarray | None, K: np.ndarray | None) -> np.ndarray:
        """img (H, W, 3) uint8 RGB with the mesh ``verts`` (V, 3, camera coordinates) seen by the
        pinhole ``K`` drawn over it (:func:`overlay_mesh`); a copy of img when verts is None."""
        if verts is None:
            return img.copy()
        size = (img.shape[1], img.shape[0])
        if size not in self.renderers:
            self.renderers[size] = MeshRenderer(*size)
        return overlay_mesh(img, verts, self.faces, K, renderer=self.renderers[size])

    def close(self) -> None:
        for renderer in self.renderers.values():
            renderer.close()
        self.renderers = {}
