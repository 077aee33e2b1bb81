"""Rendering SYNTH scenes into frames: image, segmentation, occlusion ratio and annotation.

Labels come from two depth renders of the same geometry: the full scene (hand and objects,
rendered in colour) and the hand alone. A pixel is visible hand where the hand alone reaches it
at the full scene's depth, object where something else is in front, background where nothing is.
The occlusion ratio is hidden hand pixels / all hand-silhouette pixels.
"""
from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass
from typing import Callable

import numpy as np

from SYNTH.background import compose, sample_background
from SYNTH.hand import Hand, HandRig
from SYNTH.objects import PlacedObject
from SYNTH.scene import HEIGHT, WIDTH, Scene, frame_rng, sample_scene
from utils.files import rounded
from utils.preprocessing import BACKGROUND, HAND, OBJECT
from utils.render import MeshRenderer, RenderMesh
from utils.transforms import cam2pixel

LOW_RES = 4          # occlusion estimates while placing objects use 1/4 of the resolution
DEPTH_TOL = 1e-5     # relative depth tolerance for "the hand is the front surface here"



@dataclass
class Frame:
    """One rendered frame: ``image`` (480, 640, 3) uint8 RGB, ``seg`` (480, 640) uint8 labels
    (0 background, 1 visible hand, 2 visible object), the scene, the hand's silhouette box
    [x, y, w, h] and the occlusion ratio."""
    image: np.ndarray
    seg: np.ndarray
    scene: Scene
    bbox: list[float]
    occlusion: float

    def annotation(self) -> dict:
        """The frame's ground truth in the SYNTH annotation schema (without ids and file names)."""
        s, hand = self.scene, self.scene.hand
        joints = hand.joints
        uv = cam2pixel(joints, s.focal, s.princpt)
        return {
            'cam_param': {'focal': rounded(s.focal, 4), 'princpt': rounded(s.princpt, 4)},
            'joints_coord_cam': rounded(joints, 7),
            'joints_img': rounded(uv, 4),
            'mano_param': {'pose': rounded(hand.pose, 7), 'shape': rounded(hand.shape, 7),
                           'trans': rounded(hand.trans, 7)},
            'hand_type': 'right',
            'bbox': self.bbox,
            'root_joint_cam': rounded(joints[0], 7),
            'occlusion': round(self.occlusion, 6),
            'num_objects': len(s.objects),
        }


def hand_mesh(scene: Scene) -> RenderMesh:
    """The scene's hand as a render mesh with its skin."""
    h = scene.hand
    return RenderMesh(h.verts, h.faces, normals=h.normals, vertex_colors=scene.skin,
                      color=(1.0, 1.0, 1.0, 1.0), roughness=scene.skin_roughness)


def object_mesh(obj: PlacedObject) -> RenderMesh:
    """A placed object as a render mesh with its colour, texture and material."""
    surf = obj.surface()
    return RenderMesh(surf['verts'], surf['faces'], color=(*obj.color, 1.0), normals=surf['normals'],
                      uv=surf['uv'], texture=obj.texture, roughness=obj.roughness,
                      metallic=obj.metallic)


def labels(full_depth: np.ndarray, hand_depth: np.ndarray) -> tuple[np.ndarray, float]:
    """Depth of the full scene and of the hand alone, (H, W) metres (0 = empty) ->
    segmentation (H, W) uint8 and the occlusion ratio (0 when the hand is not seen at all)."""
    silhouette = hand_depth > 0
    visible = silhouette & (full_depth >= hand_depth * (1 - DEPTH_TOL))
    seg = np.where(full_depth > 0, OBJECT, BACKGROUND).astype(np.uint8)
    seg[visible] = HAND
    total = int(silhouette.sum())
    return seg, (1.0 - visible.sum() / total) if total else 0.0


class FrameMaker:
    """Makes SYNTH frames; holds the hand model and two off-screen renderers (full and low
    resolution), so make one per process and reuse it. ``mano_path``: as for
    :class:`SYNTH.hand.HandRig`."""

    def __init__(self, mano_path: str | Path | None = None):
        self.rig = HandRig(mano_path)
        self.renderer = MeshRenderer(WIDTH, HEIGHT)
        self.small = MeshRenderer(WIDTH // LOW_RES, HEIGHT // LOW_RES)

    def close(self) -> None:
        self.renderer.close()
        self.small.close()

    def _occlusion_estimator(self, hand: Hand, K: np.ndarray) -> Callable[[list[PlacedObject]], float]:
        """A quick low-resolution estimate of the occlusion ratio for a list of objects."""
        K_small = K.copy()
        K_small[:2] /= LOW_RES
        mesh = RenderMesh(hand.verts, hand.faces)
        hand_depth = self.small.depth([mesh], K_small)

        def estimate(objects: list[PlacedObject]) -> float:
            meshes = [RenderMesh(*obj.mesh()) for obj in objects]
            return labels(self.small.depth([mesh, *meshes], K_small), hand_depth)[1]
        return estimate

    def make(self, seed: int, split: str, index: int) -> Frame:
        """Frame ``index`` of ``split`` for ``seed``; the same arguments give the same frame."""
        rng = frame_rng(seed, split, index)
        scene = sample_scene(rng, self.rig, self._occlusion_estimator)
        K = scene.K
        hand = hand_mesh(scene)
        rgba, depth = self.renderer.render([hand, *map(object_mesh, scene.objects)], K,
                                           ambient=scene.ambient,
                                           lights=[(l.direction, l.intensity, l.color) for l in scene.lights])
        hand_depth = self.renderer.depth([hand], K)
        seg, occlusion = labels(depth, hand_depth)
        ys, xs = np.nonzero(hand_depth > 0)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                float(ys.max() - ys.min() + 1)]
        image = compose(rgba, sample_background(rng, HEIGHT, WIDTH), rng)
        return Frame(image, seg, scene, bbox, float(occlusion))
