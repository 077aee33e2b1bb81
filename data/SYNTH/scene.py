"""SYNTH scenes: a hand, one to three objects in contact with it, lights and a camera.

Each frame's scene comes from its own random generator, derived from (seed, split, index), so a
data set does not depend on how frames are shared among worker processes.

Objects touch the hand in one of three ways:

* ``surface``: an object rests against a point of the hand (palm, finger pad, fingertip or back),
  pushed out along that point's normal until it just touches (found by bisection on the
  object's signed distance at the hand's vertices);
* ``pinch``: an object sits between the thumb tip and another fingertip, grown until it touches;
* ``grasp``: an object sits in the hollow of the hand (palm and fingertips), grown until it
  touches, cylinders and capsules lying across the palm.

"Touches" means the deepest hand vertex is :data:`CONTACT` inside the object: a little contact,
no gross interpenetration. Objects do not cut into each other by more than :data:`CONTACT` either.
How much of the hand the objects hide is steered by placing them on the camera's side of the hand
(``front``) or away from it, and by their size; :func:`place_objects` searches until the
occlusion estimate falls in the wanted band.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from SYNTH.hand import Hand, HandRig, srgb_to_linear
from SYNTH.objects import PlacedObject, Shape, random_color, random_rotation, sample_shape, sample_texture
from utils.mano import FINGERTIP_VERTS, JOINT_NAMES
from utils.transforms import intrinsics

WIDTH, HEIGHT = 640, 480
# HO3D's camera (v3, e.g. sequence ABF10), pixels; each frame jitters it slightly.
FOCAL, PRINCPT = (614.627, 614.101), (320.262, 238.469)
SPLITS = ('train', 'evaluation')
CONTACT = 0.001                                  # penetration at the contact point, metres
OcclusionEstimator = Callable[[list[PlacedObject]], float]
MAX_OCCLUSION = 0.62                             # most of the hand objects may hide
TOLERANCE = 0.08                                 # accepted distance from the target occlusion
PLAN_TRIES, SIZE_STEPS = 3, 3                    # occlusion search: plans x sizes per plan
MAX_RADIUS = 0.12                                # largest object: fits in a 24 cm ball


@dataclass
class Light:
    """A directional light: direction of travel (camera axes), intensity, linear RGB colour."""
    direction: np.ndarray
    intensity: float
    color: np.ndarray


@dataclass
class Scene:
    """Everything that makes one frame: camera, hand, objects, skin, lights."""
    focal: tuple[float, float]
    princpt: tuple[float, float]
    hand: Hand
    skin: np.ndarray                 # (778, 3) linear RGB vertex colours
    skin_roughness: float
    objects: list[PlacedObject]
    ambient: float
    lights: list[Light]

    @property
    def K(self) -> np.ndarray:
        """(3, 3) camera matrix."""
        return intrinsics(self.focal, self.princpt)


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one frame, from (seed, split, index) only."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


def sample_camera(rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float]]:
    """HO3D-like intrinsics: focal lengths within 2 %, principal point within 6 px of HO3D's."""
    f = rng.uniform(0.98, 1.02)
    focal = (FOCAL[0] * f, FOCAL[1] * f)
    princpt = (PRINCPT[0] + rng.uniform(-6, 6), PRINCPT[1] + rng.uniform(-6, 6))
    return focal, princpt


def sample_lights(rng: np.random.Generator) -> tuple[float, list[Light]]:
    """Ambient level and one to three directional lights: a key light from the camera's side,
    and weaker fill or rim lights from anywhere in front of the scene, tinted warm or cool."""
    lights = []
    for i in range(int(rng.integers(1, 4))):
        if i == 0:
            d = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.6), 1.0])
            intensity = rng.uniform(1.8, 3.8)
        else:
            d = rng.normal(size=3)
            d[2] = abs(d[2]) - 0.3
            intensity = rng.uniform(0.4, 1.6)
        warmth = rng.uniform(-0.15, 0.15)
        color = np.clip(np.array([1 + warmth, 1.0, 1 - warmth]), 0, None)
        lights.append(Light(d / np.linalg.norm(d), float(intensity), color))
    return float(rng.uniform(0.1, 0.45)), lights


# ----------------------------------------------------------------------------------------------
# Objects in contact with the hand

def _bisect(f: Callable[[float], float], lo: float, hi: float, steps: int = 14) -> float:
    """A root of the increasing-or-decreasing ``f`` between ``lo`` and ``hi`` (sign change)."""
    f_lo = f(lo)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if (f(mid) > 0) == (f_lo > 0):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _clear_of(obj: PlacedObject, others: list[PlacedObject]) -> bool:
    """``obj`` cuts into none of ``others`` deeper than :data:`CONTACT` (checked at its vertices)."""
    if not others:
        return True
    pts, _ = obj.mesh()
    return all(o.sdf(pts).min() > -CONTACT for o in others)


@dataclass
class _Plan:
    """How one object will touch the hand. A ``surface`` plan is pushed out from ``anchor`` along
    ``direction`` at whatever size the occlusion search picks; a pinch or grasp plan is ``fitted``
    once (its size is what fits the hand)."""
    shape: Shape
    rotation: np.ndarray
    anchor: np.ndarray | None = None
    direction: np.ndarray | None = None
    fitted: PlacedObject | None = None

    def realize(self, hand: Hand, scale: float) -> PlacedObject:
        """The object at ``scale`` times the planned size (capped at :data:`MAX_RADIUS`)."""
        if self.fitted is not None:
            return self.fitted
        self.shape.mesh()  # built once at the planned size; scaled copies share it
        obj = PlacedObject(self.shape.scaled(min(scale, MAX_RADIUS / self.shape.radius)),
                           self.rotation, self.anchor.copy())

        def depth_at(t: float) -> float:
            obj.centre = self.anchor + t * self.direction
            return obj.sdf(hand.verts).min() + CONTACT

        obj.centre = self.anchor + _bisect(depth_at, 0.0, 0.4) * self.direction
        return obj


def _surface_plan(rng: np.random.Generator, hand: Hand, rig: HandRig, shape: Shape,
                  front: bool) -> _Plan | None:
    """A plan to rest ``shape`` against a random vertex of the palm, a finger pad, a fingertip or
    the back of the hand whose normal faces the camera (``front``: the object is pushed out
    partly toward the camera, so it covers more of the hand as it grows) or faces away."""
    region = rig.regions[str(rng.choice(['palm', 'pad', 'tip', 'back'], p=[0.35, 0.25, 0.2, 0.2]))]
    v, n = hand.verts, hand.normals
    to_camera = -v / np.linalg.norm(v, axis=1, keepdims=True)
    facing = (n * to_camera).sum(1)                            # > 0: the normal points at the camera
    fits = facing > 0.45 if front else facing < 0.0
    pick = region[fits[region]]
    if len(pick) == 0:  # the region is turned the wrong way: any part of the hand will do
        pick = np.flatnonzero(fits)
    if len(pick) == 0:
        return None
    a = int(rng.choice(pick))
    direction = n[a] + (rng.uniform(0.3, 1.0) * to_camera[a] if front else 0) + rng.normal(0, 0.2, 3)
    return _Plan(shape, random_rotation(rng), v[a], direction / np.linalg.norm(direction))


def _fitted_plan(rng: np.random.Generator, hand: Hand, rig: HandRig, shape: Shape,
                 mode: str) -> _Plan | None:
    """A shape centred between the thumb and a fingertip (``pinch``) or in the hollow of the hand
    (``grasp``), scaled until it just touches; None where no size fits (open hand, closed fist)."""
    tips = hand.verts[list(FINGERTIP_VERTS)]
    rotation = random_rotation(rng)
    if mode == 'pinch':
        centre = 0.5 * (tips[0] + tips[int(rng.integers(1, 3))])
    else:
        palm = hand.verts[rig.regions['palm']].mean(axis=0)
        centre = 0.4 * palm + 0.6 * tips[1:4].mean(axis=0)
        if shape.kind in ('cylinder', 'capsule'):  # axis across the palm, toward the thumb
            side = hand.joints[JOINT_NAMES.index('index1')] - hand.joints[JOINT_NAMES.index('pinky1')]
            axis = side / np.linalg.norm(side) + rng.normal(0, 0.15, 3)
            axis /= np.linalg.norm(axis)
            x = np.cross(axis, rng.normal(size=3))
            x /= np.linalg.norm(x)
            rotation = np.stack([x, np.cross(axis, x), axis], axis=1)
    obj = PlacedObject(shape, rotation, centre)
    local = obj.to_local(hand.verts)

    def depth_at(s: float) -> float:
        return shape.scaled(s).sdf(local).min() + CONTACT

    lo, hi = 0.15, 2.5
    if depth_at(lo) < 0 or depth_at(hi) > 0:
        return None
    obj.shape = shape.scaled(_bisect(depth_at, lo, hi))
    return _Plan(shape, rotation, fitted=obj) if 0.008 < obj.shape.radius < MAX_RADIUS else None


def _plan_objects(rng: np.random.Generator, hand: Hand, rig: HandRig, front_prob: float,
                  mode_probs: tuple[float, float, float]) -> list[_Plan]:
    """Plans for one to three objects, each resting on the hand (on the camera's side with
    ``front_prob``), pinched or grasped with probabilities ``mode_probs``. With ``front_prob``
    above one half the first object always rests on the camera's side, so that growing it hides
    more of the hand."""
    plans = []
    for i in range(int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))):
        if i == 0 and front_prob > 0.5:
            plan = _surface_plan(rng, hand, rig, sample_shape(rng), front=True)
            if plan is not None:
                plans.append(plan)
                continue
        mode = str(rng.choice(['surface', 'pinch', 'grasp'], p=mode_probs))
        shape = sample_shape(rng)
        plan = None
        if mode != 'surface':
            plan = _fitted_plan(rng, hand, rig, shape, mode)
        if plan is None:
            plan = _surface_plan(rng, hand, rig, shape, front=rng.random() < front_prob)
        if plan is not None:
            plans.append(plan)
    return plans


def _realize(plans: list[_Plan], hand: Hand, scale: float) -> list[PlacedObject]:
    """The planned objects at ``scale``, leaving out any that would cut into an earlier one or
    come within 5 cm of the camera."""
    objects: list[PlacedObject] = []
    for plan in plans:
        obj = plan.realize(hand, scale)
        if obj.centre[2] - obj.shape.radius > 0.05 and _clear_of(obj, objects):
            objects.append(obj)
    return objects


def place_objects(rng: np.random.Generator, hand: Hand, rig: HandRig,
                  occlusion_of: OcclusionEstimator) -> list[PlacedObject]:
    """One to three objects touching ``hand`` and hiding a share of it within :data:`TOLERANCE` of a
    target drawn uniformly from 0 to :data:`MAX_OCCLUSION` - 0.02 (``occlusion_of`` estimates the
    hidden share of the hand's silhouette). Higher targets put more objects on the camera's side,
    larger, and resting rather than pinched or grasped. For a set of plans the size of the
    surface objects is searched (hidden area grows about with the square of the size); after
    :data:`SIZE_STEPS` sizes new plans are drawn, up to :data:`PLAN_TRIES` times. Returns the
    objects whose occlusion came closest to the target band, each with a random look."""
    target = rng.uniform(0, MAX_OCCLUSION - 0.02)
    lo, hi = max(target - TOLERANCE, 0.0), min(target + TOLERANCE, MAX_OCCLUSION)
    w = target / (MAX_OCCLUSION - 0.02)
    front_prob, start = 0.15 + 0.75 * w, 0.8 + 0.5 * w
    modes = tuple((1 - w) * np.array([0.5, 0.2, 0.3]) + w * np.array([0.8, 0.05, 0.15]))
    best, best_miss = [], np.inf
    for _ in range(PLAN_TRIES):
        plans = _plan_objects(rng, hand, rig, front_prob, modes)
        scale, last = start, -1.0
        for _ in range(SIZE_STEPS if any(p.fitted is None for p in plans) else 1):
            objects = _realize(plans, hand, scale)
            occ = occlusion_of(objects) if objects else 0.0
            miss = max(lo - occ, occ - hi, 0.0)
            if objects and miss < best_miss:
                best, best_miss = objects, miss
            if miss == 0 or (occ < lo and occ < last + 0.01):  # in the band, or growing is futile
                break
            last = occ
            scale *= float(np.clip(np.sqrt((0.5 * (lo + hi)) / max(occ, 0.02)), 0.6, 1.7))
        if best_miss == 0:
            break
    for obj in best:
        _dress(rng, obj)
    return best


def _dress(rng: np.random.Generator, obj: PlacedObject) -> None:
    """Give an object a random colour, texture and material."""
    obj.color = srgb_to_linear(random_color(rng)) if rng.random() < 0.4 else np.ones(3)
    obj.texture = sample_texture(rng) if rng.random() < 0.8 else None
    obj.texture_scale = float(rng.uniform(0.02, 0.12))
    obj.roughness = float(rng.uniform(0.25, 0.95))
    obj.metallic = float(rng.choice([0.0, rng.uniform(0, 0.6)], p=[0.8, 0.2]))


def sample_scene(rng: np.random.Generator, rig: HandRig,
                 estimator: Callable[[Hand, np.ndarray], OcclusionEstimator]) -> Scene:
    """A full random scene. ``estimator(hand, K)`` returns a function that estimates the share of
    the hand's silhouette a list of objects hides (e.g. a quick low-resolution render)."""
    focal, princpt = sample_camera(rng)
    K = intrinsics(focal, princpt)
    hand = rig.sample(rng, K, WIDTH, HEIGHT, grasp=float(rng.random() < 0.4))
    objects = place_objects(rng, hand, rig, estimator(hand, K))
    ambient, lights = sample_lights(rng)
    return Scene(focal, princpt, hand, rig.skin_colors(rng), float(rng.uniform(0.45, 0.8)),
                 objects, ambient, lights)
