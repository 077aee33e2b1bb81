"""Hands for SYNTH scenes: natural poses, shapes, views and placement in the camera, and skin.

Finger poses are sampled in the model's PCA pose space (``hands_components``) with the
per-component standard deviations of :data:`builtin_hand.anatomy.PCA_STD`, clipped at two sigma. The
global rotation shows the palm or the back of the hand to the camera, tilted by at most 65 degrees
(no edge-on views) and turned in the image plane at random. The hand is then moved to a random
depth (0.35-0.8 m, or further where it would not fit in the frame there) and image position with
every vertex inside the frame.
"""
from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from utils.mano import JOINT_NAMES, ManoLayer
from builtin_hand.anatomy import PCA_STD
from utils.rotation import axis_angle_to_matrix, matrix_to_axis_angle

DEPTH_RANGE = (0.35, 0.8)   # depth (z) of the wrist, metres
MAX_TILT = np.deg2rad(65)   # largest angle between the palm's normal and the viewing axis
MARGIN = 8                  # pixels kept free around the hand

# MANO's 16 joints: 0 wrist, then index, middle, pinky, ring, thumb, three each (base to tip);
# these are the last joint of each finger, which moves its tip segment.
_DISTAL_JOINTS = (3, 6, 9, 12, 15)

# Skin tones, sRGB, light to dark (roughly the Fitzpatrick range), and the lighter palm tint.
SKIN_TONES = np.array([[246, 214, 192], [236, 192, 164], [224, 172, 138], [200, 146, 110],
                       [172, 118, 84], [140, 92, 62], [108, 70, 48], [78, 52, 38]]) / 255.0
PALM_TINT = np.array([236, 178, 160]) / 255.0


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB colour in 0..1 -> linear RGB (the renderer's colour space)."""
    return np.asarray(c, dtype=np.float64) ** 2.2


@dataclass
class Hand:
    """A posed hand in camera coordinates (metres).

    pose (48,) axis-angle, camera frame, finger part relative to hands_mean; shape (10,); trans (3,)
    such that ``ManoLayer()(pose, shape, trans)`` gives ``verts`` (778, 3) and ``joints`` (21, 3);
    ``normals`` (778, 3) are unit vertex normals; ``faces`` (1538, 3) the model's triangles.
    """
    pose: np.ndarray
    shape: np.ndarray
    trans: np.ndarray
    verts: np.ndarray
    joints: np.ndarray
    normals: np.ndarray
    faces: np.ndarray


class HandRig:
    """The hand model plus what scenes need to know about it: vertex regions (palm side, back,
    finger pads, fingertips, from the rest pose and the skinning weights) and a per-vertex palm
    weight for skin colour.

    Args:
        mano_path: MANO file or folder (None: the default folder); the built-in hand without MANO.
    """

    def __init__(self, mano_path: str | Path | None = None):
        self.layer = ManoLayer(mano_path)
        self.faces = self.layer.faces.numpy()
        self.components = self.layer.hands_components.double().numpy()    # (45, 45)
        zero = torch.zeros(1, self.layer.pose_dim)
        verts, joints = self.layer(zero, torch.zeros(1, self.layer.num_betas))
        verts, joints = verts[0].double().numpy(), joints[0].double().numpy()
        rest_normals = trimesh.Trimesh(verts, self.faces, process=False).vertex_normals
        facing = rest_normals @ palm_frame(joints)[0]                      # +1 palm side, -1 back
        bone = self.layer.weights.numpy().argmax(axis=1)
        tip = np.isin(bone, _DISTAL_JOINTS)
        self.regions = {
            'palm': np.flatnonzero((bone == 0) & (facing > 0.5)),
            'back': np.flatnonzero(facing < -0.5),
            'pad': np.flatnonzero((bone > 0) & (facing > 0.3)),
            'tip': np.flatnonzero(tip & (facing > -0.2)),
        }
        self.palm_weight = np.clip((facing - 0.1) / 0.6, 0, 1)              # (778,)

    def forward(self, pose: np.ndarray, shape: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(48,), (10,), (3,) -> verts (778, 3), joints (21, 3) through the layer, float64 arrays."""
        verts, joints = self.layer(torch.as_tensor(pose[None], dtype=torch.float32),
                                   torch.as_tensor(shape[None], dtype=torch.float32),
                                   torch.as_tensor(trans[None], dtype=torch.float32))
        return verts[0].double().numpy(), joints[0].double().numpy()

    def sample(self, rng: np.random.Generator, K: np.ndarray, width: int, height: int,
               grasp: float = 0.0) -> Hand:
        """A random hand seen by the camera ``K`` (3, 3), fully inside the ``width`` x ``height``
        frame. ``grasp`` in 0..1 shifts the first synergy (closing the hand) toward a grasp."""
        coeffs = np.clip(rng.normal(size=len(PCA_STD)), -2, 2)
        coeffs[0] = np.clip(coeffs[0] + 1.5 * grasp, -2, 2)
        fingers = (coeffs * PCA_STD) @ self.components
        shape = np.clip(rng.normal(size=self.layer.num_betas), -2, 2)
        pose = np.concatenate([np.zeros(3), fingers])
        verts, joints = self.forward(pose, shape, np.zeros(3))
        rot = _sample_view(rng, joints)
        pose[:3] = matrix_to_axis_angle(torch.as_tensor(rot)).numpy()
        # The global rotation turns the hand about the wrist joint (MANO's root), which stays put,
        # so the wrist ends at its rest position + trans.
        wrist = joints[0]
        trans = _place_in_frame(rng, (verts - wrist) @ rot.T, K, width, height) - wrist
        verts, joints = self.forward(pose, shape, trans)
        normals = trimesh.Trimesh(verts, self.faces, process=False).vertex_normals
        return Hand(pose, shape, trans, verts, joints, np.asarray(normals), self.faces)

    def skin_colors(self, rng: np.random.Generator) -> np.ndarray:
        """(778, 3) linear-RGB vertex colours: a random tone between two neighbouring palette
        entries, a lighter palm, and faint mottling."""
        i = rng.uniform(0, len(SKIN_TONES) - 1)
        lo = int(i)
        tone = SKIN_TONES[lo] + (i - lo) * (SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[lo])
        tone = tone * rng.uniform(0.8, 0.95) * rng.uniform(0.97, 1.03, 3)  # albedo below the look
        palm = tone + (PALM_TINT - tone) * rng.uniform(0.2, 0.5) * (1 - tone.mean())
        colors = tone + self.palm_weight[:, None] * (palm - tone)
        blotch = rng.normal(0, 0.03, (len(colors), 1))
        return srgb_to_linear(np.clip(colors * (1 + blotch), 0, 1))


def palm_frame(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(21, 3) joints (JOINT_NAMES order) of a right hand -> unit palm normal (out of the palm),
    finger direction (wrist to middle knuckle, made orthogonal to the normal), and the thumb-side
    direction completing the frame."""
    idx = {name: i for i, name in enumerate(JOINT_NAMES)}
    finger = joints[idx['middle1']] - joints[idx['wrist']]
    side = joints[idx['index1']] - joints[idx['pinky1']]
    normal = np.cross(side, finger)
    normal /= np.linalg.norm(normal)
    finger = finger - (finger @ normal) * normal
    finger /= np.linalg.norm(finger)
    return normal, finger, np.cross(finger, normal)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about ``axis``."""
    aa = torch.as_tensor(np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis) * angle)
    return axis_angle_to_matrix(aa).numpy()


def _sample_view(rng: np.random.Generator, joints: np.ndarray) -> np.ndarray:
    """Global rotation (3, 3) for a hand with rest-orientation ``joints`` (21, 3): palm (60 %) or
    back (40 %) toward the camera, tilted up to :data:`MAX_TILT`, any roll in the image plane."""
    normal, finger, third = palm_frame(joints)
    # Canonical view: fingers up in the image (-y), palm toward the camera (-z).
    target = np.stack([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], axis=1)
    rot = target @ np.stack([finger, normal, third], axis=1).T
    if rng.random() < 0.4:
        rot = _rotation([0.0, 1.0, 0.0], np.pi) @ rot
    tilt_axis = np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a), 0.0])
    tilt = min(abs(rng.normal(0, 0.5)), MAX_TILT)
    roll = rng.uniform(-np.pi, np.pi)
    return _rotation([0.0, 0.0, 1.0], roll) @ _rotation(tilt_axis, tilt) @ rot


def _place_in_frame(rng: np.random.Generator, rel: np.ndarray, K: np.ndarray, width: int,
                    height: int) -> np.ndarray:
    """Position (3,) of the wrist so that every point of ``rel`` (N, 3, relative to the wrist)
    projects at least :data:`MARGIN` pixels inside the frame, at a random depth in
    :data:`DEPTH_RANGE`. For a fixed depth the constraint is linear in x and y, so the feasible
    interval of each is exact; the depth grows until both intervals are non-empty."""
    z = rng.uniform(*DEPTH_RANGE)
    u, v = rng.random(2)
    while True:
        depth = z + rel[:, 2]
        lo_x = ((MARGIN - K[0, 2]) * depth / K[0, 0] - rel[:, 0]).max()
        hi_x = ((width - 1 - MARGIN - K[0, 2]) * depth / K[0, 0] - rel[:, 0]).min()
        lo_y = ((MARGIN - K[1, 2]) * depth / K[1, 1] - rel[:, 1]).max()
        hi_y = ((height - 1 - MARGIN - K[1, 2]) * depth / K[1, 1] - rel[:, 1]).min()
        if lo_x <= hi_x and lo_y <= hi_y:
            return np.array([lo_x + u * (hi_x - lo_x), lo_y + v * (hi_y - lo_y), z])
        z += 0.02
