"""Using a trained InteractHand from your own code: load a snapshot, reconstruct the hand in an
image, place it in the camera.

    from inference import HandReconstructor, load_model
    model, conf = load_model('output/model_dump/snapshot_80.pth.tar', device='cuda')
    rec = HandReconstructor(model, conf)
    pred = rec.predict(image_rgb, box=(x, y, w, h))     # box None: found by the hand localiser
    placed = rec.place(pred, width, height, focal=600.0)  # pinhole fit of the translation

(with ``common/`` and ``main/`` on the import path, as ``main/bootstrap.py`` puts them).

Conventions: images are (H, W, 3) uint8 RGB; boxes are x, y, w, h in image pixels; 3D points are
metres in camera axes (x right, y down, z forward); the network sees right hands (mirror the
image of a left hand before passing it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from checkpoints import load_checkpoint, load_network, model_config_from
from config import Config
from errors import UserError
from model import Model, get_model
from nets.localiser import decode
from utils.files import rounded
from utils.fit import FitError, default_focal, fit_translation, fit_weak_perspective, image_center, reprojection_error
from utils.preprocessing import (FRAME_MIN_SIDE, HAND, SEG_STRIDE, AugParams, bbox_from_joints, crop_affine, label_affine,
                                 process_bbox, warp_image, whole_image_box)
from utils.transforms import apply_affine, intrinsics

log = logging.getLogger('interacthand')

BOX_EXPANSION = 1.5        # the crop is the hand box enlarged 1.5x, as in the data pipeline
MIN_REGION_FRACTION = 0.25  # hand regions smaller than this fraction of the largest are ignored
NOMINAL_DEPTH = 0.5        # metres: where the wrist of an unfitted mesh is put
WEAK_PERSPECTIVE_DEPTH = 5.0  # metres: camera distance that renders the weak-perspective placement
BOX_SOURCES = {'given': '--bbox', 'localiser': 'the hand localiser', 'mask': 'the predicted hand mask',
               'joints': 'the predicted 2D joints'}
MIN_HAND_SCORE = 0.2       # the hand localiser's peak below this: no hand in the image
REFINE_WINDOW = 4.0        # second look: a window this many times the first box's larger side
PLAUSIBLE_BETA = 3.0       # |shape parameter| beyond this is far outside the range hand models cover


def load_model(checkpoint: str | Path, device: str | torch.device = 'cpu',
               **overrides) -> tuple[Model, Config]:
    """The network of a snapshot, with its weights, in eval mode on ``device``, and its config.

    The architecture comes from the snapshot; ``overrides`` (config fields, values as Python
    values or as ``--set`` strings, plus ``preset=NAME``) are applied over it, the way the
    command line wins in ``test.py`` and the demo. A missing, damaged or non-fitting snapshot is a
    :class:`UserError`. The model's ``snapshot`` attribute holds ``{'path', 'epoch'}``.
    """
    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    preset = overrides.pop('preset', None)
    conf = Config().update(preset=preset, **{**model_config_from(ckpt), **overrides})
    model = get_model(conf, 'test')
    load_network(model, ckpt, path)
    model.to(device).eval()
    epoch = ckpt.get('epoch')
    model.snapshot = {'path': str(path), 'epoch': None if epoch is None else int(epoch)}
    return model, conf


class CudaGraphForward:
    """A network's test-mode forward replayed as CUDA graphs, one captured per input shape: a
    launch-bound pass (batch 1 runs several hundred small kernels) costs one graph launch.
    Called like the model, ``(inputs, targets, meta_info, 'test') -> outputs``; the outputs are
    copies, safe to keep across calls. Needs CUDA, a model in eval mode, and no gradients."""

    WARMUP = 3   # eager passes on a side stream before capture (cuDNN autotuning, allocations)

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, dict]] = {}

    @torch.no_grad()
    def _capture(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.CUDAGraph, dict]:
        static_in = img.clone()
        side = torch.cuda.Stream(img.device)
        side.wait_stream(torch.cuda.current_stream(img.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.model({'img': static_in}, None, None, 'test')
        torch.cuda.current_stream(img.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.model({'img': static_in}, None, None, 'test')
        return static_in, graph, static_out

    @torch.no_grad()
    def __call__(self, inputs: dict, targets: dict | None = None, meta_info: dict | None = None,
                 mode: str = 'test') -> dict[str, torch.Tensor]:
        img = inputs['img']
        key = (tuple(img.shape), img.dtype, img.device)
        if key not in self.graphs:
            self.graphs[key] = self._capture(img)
        static_in, graph, static_out = self.graphs[key]
        static_in.copy_(img)
        graph.replay()
        return {k: v.clone() for k, v in static_out.items()}


def inference_forward(model: Model, conf: Config, device: torch.device):
    """The callable that runs ``model`` in test mode: replayed CUDA graphs with
    ``conf.cuda_graphs`` on a CUDA device (:class:`CudaGraphForward`), else the model itself."""
    if not conf.cuda_graphs:
        return model
    if torch.device(device).type != 'cuda':
        log.warning('cuda_graphs=true needs a CUDA device; running the network eagerly')
        return model
    return CudaGraphForward(model)


@dataclass
class Prediction:
    """One reconstruction, mapped back to the image (V = 778 vertices, J = 21 joints)."""
    joints_rel: np.ndarray        # (J, 3) metres, wrist at the origin, camera axes
    verts_rel: np.ndarray         # (V, 3) metres, same frame
    joints_2d: np.ndarray         # (J, 2) image pixels
    pose: np.ndarray              # (48,) axis-angle, fingers relative to hands_mean
    shape: np.ndarray             # (10,)
    labels: np.ndarray | None     # (H, W) image labels 0 background, 1 hand, 2 object; None: no seg head
    crop_box: np.ndarray          # (4,) the square crop the network saw, x, y, w, h
    hand_box: np.ndarray | None = None   # (4,) the tight hand box the crop was grown from
    box_source: str = 'given'     # how hand_box was found: a key of BOX_SOURCES
    box_score: float | None = None  # the hand localiser's score of hand_box (0..1), when it found it


@dataclass
class Placement:
    """Where a predicted hand goes in the camera, and how it was placed."""
    verts: np.ndarray               # (V, 3) metres, camera axes: fitted, or wrist at (0, 0, NOMINAL_DEPTH)
    note: str                       # how ``verts`` are placed, one line
    render_verts: np.ndarray | None  # (V, 3) for drawing through the pinhole camera K; None: nothing to draw
    K: np.ndarray | None            # (3, 3) intrinsics of that camera
    info: dict = field(default_factory=dict)   # the numbers of the placement, JSON-ready
    message: str | None = None      # a line worth showing the user


class HandReconstructor:
    """A trained network and the crops it is run on.

    Args:
        model: a ``model.Model`` with its weights (``load_model``), in eval mode.
        conf: its config (``conf.input_img_shape`` is the crop size; ``conf.cuda_graphs`` replays
            the forward pass as a CUDA graph on a GPU).
    """

    def __init__(self, model: Model, conf: Config):
        self.model, self.size = model, int(conf.input_img_shape[0])
        self.device = next(model.parameters()).device
        self.forward = inference_forward(model, conf, self.device)

    @torch.no_grad()
    def predict_crop(self, img: np.ndarray, crop_box: np.ndarray) -> Prediction:
        """img (H, W, 3) uint8 RGB; crop_box (4,) x, y, w, h pixels (square) -> the network's
        prediction for that crop, in image coordinates."""
        s = self.size
        img2crop = crop_affine(crop_box, s, AugParams())
        crop = warp_image(img, img2crop, s).astype(np.float32) / 255.0
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].to(self.device)
        out = {k: v[0].float().cpu().numpy() for k, v in self.forward({'img': x}, {}, {}, 'test').items()}
        labels = seg_to_image(out['seg'], img2crop, img.shape[:2]) if 'seg' in out else None
        joints_2d = apply_affine(out['joints_coord_img'] * s, np.linalg.inv(img2crop))
        return Prediction(out['joints_coord_cam'].astype(np.float64), out['mesh_coord_cam'].astype(np.float64),
                          joints_2d, out['mano_pose'], out['mano_shape'], labels,
                          np.asarray(crop_box, dtype=np.float32))

    @torch.no_grad()
    def find_box(self, img: np.ndarray, min_score: float = MIN_HAND_SCORE, refine: float = REFINE_WINDOW,
                 mirror: bool = True) -> tuple[np.ndarray, str, float | None]:
        """The hand's tight box (4,) x, y, w, h in image pixels, how it was found (a key of
        BOX_SOURCES) and the hand localiser's score (0..1; None without a localiser).

        With the hand localiser (``localiser_size`` > 0): its box in the whole frame, letterboxed
        as in training (a score below ``min_score`` is a :class:`UserError`: no hand found); with
        ``refine`` > 0, a second look at a square window ``refine`` times that box's larger side
        around it. With ``mirror``, every look is also taken of the mirrored image, and the box is
        the mean of all looks' centres and log sizes (each look's error is partly its own: on the
        quickstart's frames the mean IoU with the true box rises from 0.60 to 0.635 with four,
        docs/RESULTS.md). Networks without a localiser (snapshots from before it existed): a first
        pass of the network over the whole frame, the box of its hand mask (or of its 2D joints)."""
        h, w = img.shape[:2]
        whole = whole_image_box(w, h)
        if self.model.localiser is None:
            first = self.predict_crop(img, whole)
            box = box_from_labels(first.labels) if first.labels is not None else None
            if box is not None:
                return box, 'mask', None
            return bbox_from_joints(first.joints_2d, expansion=1.0), 'joints', None
        flips = (False, True) if mirror else (False,)
        looks = [self._locate(img, whole, flip) for flip in flips]
        score = float(np.mean([s for _, s in looks]))
        if score < min_score:
            raise UserError(f'no hand found (the hand localiser\'s best score is {score:.2f}, below '
                            f'{min_score}); if there is one, give its box with --bbox X Y W H')
        boxes = [b for b, _ in looks]
        if refine > 0:
            first = mean_box(boxes)
            side = float(np.clip(refine * first[2:].max(), FRAME_MIN_SIDE * whole[2], whole[2]))
            window = np.array([*(first[:2] + first[2:] / 2 - side / 2), side, side], dtype=np.float32)
            boxes += [self._locate(img, window, flip)[0] for flip in flips]
        return mean_box(boxes), 'localiser', score

    def _locate(self, img: np.ndarray, window: np.ndarray, flip: bool = False) -> tuple[np.ndarray, float]:
        """The localiser's most likely hand box (4,) x, y, w, h in image pixels and its score, in the
        square ``window`` (x, y, s, s pixels) of ``img`` scaled to the localiser's size, mirrored
        left-right with ``flip`` (``crop_affine``'s flip)."""
        size = self.model.localiser_size
        img2frame = crop_affine(window, size, AugParams(), flip=flip, img_width=img.shape[1])
        frame = warp_image(img, img2frame, size).astype(np.float32) / 255.0
        out = self.model.locate(torch.from_numpy(frame).permute(2, 0, 1)[None].to(self.device))
        box, score = (v[0].cpu().numpy() for v in decode(out))
        corners = apply_affine(np.array([box[:2], box[:2] + box[2:]]) * size, np.linalg.inv(img2frame))
        low, high = corners.min(0), corners.max(0)          # a flip swaps the corners' x
        return np.array([*low, *(high - low)], dtype=np.float32), float(score)

    def predict(self, img: np.ndarray, box: np.ndarray | tuple | None = None) -> Prediction:
        """img (H, W, 3) uint8 RGB; box (4,) x, y, w, h around the hand in pixels, or None to find
        it (:meth:`find_box`) -> the prediction for the crop of the box grown to a square and
        enlarged :data:`BOX_EXPANSION` times (as the data pipeline crops test boxes)."""
        h, w = img.shape[:2]
        score = None
        if box is not None:
            hand_box, source = np.asarray(box, dtype=np.float32), 'given'
        else:
            hand_box, source, score = self.find_box(img)
        crop_box = process_bbox(hand_box, w, h, 1.0, expansion=BOX_EXPANSION)
        if crop_box is None:
            raise UserError(f'the hand box {rounded(hand_box, 1)} is empty or outside the {w}x{h} '
                            'image; give a box around the hand (x y w h in pixels)')
        pred = self.predict_crop(img, crop_box)
        pred.hand_box, pred.box_source, pred.box_score = hand_box, source, score
        return pred

    @staticmethod
    def place(pred: Prediction, width: int, height: int, focal: float | None = None,
              fit: bool = True) -> Placement:
        """Put the hand in the camera of a ``width`` x ``height`` image: with ``fit``,
        :func:`fitted_placement` (pinhole camera, ``focal`` in pixels); else
        :func:`weak_perspective_placement`."""
        return fitted_placement(pred, width, height, focal) if fit else weak_perspective_placement(pred, width, height)


def mean_box(boxes: list[np.ndarray]) -> np.ndarray:
    """The box (4,) whose centre is the mean of the boxes' (x, y, w, h) centres and whose size is
    their geometric mean size."""
    b = np.asarray(boxes, dtype=np.float64)
    centre, size = (b[:, :2] + b[:, 2:] / 2).mean(0), np.exp(np.log(b[:, 2:]).mean(0))
    return np.array([*(centre - size / 2), *size], dtype=np.float32)


def seg_to_image(probs: np.ndarray, img2crop: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """probs (3, S/4, S/4) class probabilities of a crop -> (H, W) uint8 labels of the image
    (bilinear in the probabilities, then the most likely class; background outside the crop)."""
    h, w = image_shape
    img2small = label_affine(img2crop, (h, w), (h, w), SEG_STRIDE)
    warped = cv2.warpAffine(np.ascontiguousarray(probs.transpose(1, 2, 0), dtype=np.float32),
                            img2small[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.argmax(-1).astype(np.uint8)


def box_from_labels(labels: np.ndarray) -> np.ndarray | None:
    """Tight box (4,) x, y, w, h around the centres of the hand pixels of labels (H, W): those of
    the largest connected hand region and of every region at least MIN_REGION_FRACTION of its
    size (an object across the hand splits it; specks are noise). None when there is no hand
    pixel, or they lie on one row or column."""
    count, regions, stats, _ = cv2.connectedComponentsWithStats((labels == HAND).astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= MIN_REGION_FRACTION * areas.max())
    ys, xs = np.nonzero(np.isin(regions, keep))
    box = np.array([xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()], dtype=np.float32)
    return box if box[2] > 0 and box[3] > 0 else None


def shape_warnings(shape: np.ndarray) -> list[str]:
    """A warning when the predicted shape parameters (10,) are implausible: an undertrained
    network often shrinks the hand with one extreme parameter, and the mesh then looks crumpled."""
    worst = float(np.abs(shape).max())
    if worst <= PLAUSIBLE_BETA:
        return []
    return [f'the predicted shape parameters reach |beta| = {worst:.1f}, far outside the usual range '
            f'(|beta| <= {PLAUSIBLE_BETA:g}); the mesh will look shrunken or distorted; the checkpoint '
            'is probably not trained enough']


def _error_stats(err: np.ndarray) -> dict:
    return {'mean': round(float(err.mean()), 3), 'max': round(float(err.max()), 3)}


def fitted_placement(pred: Prediction, width: int, height: int, focal: float | None) -> Placement:
    """The closed-form translation for a pinhole camera (focal in pixels, default
    ``utils.fit.default_focal``; principal point at the image centre), with the reprojection
    error. When no camera in front of the hand explains the 2D joints, the weak-perspective
    placement, with the reason in its info."""
    f = focal if focal is not None else default_focal(width, height)
    princpt = image_center(width, height)
    info = {'focal_px': [f, f], 'princpt_px': rounded(princpt, 2),
            'focal_source': '--focal' if focal is not None else "default: the image's larger side"}
    try:
        t = fit_translation(pred.joints_rel, pred.joints_2d, f, princpt)
    except FitError as err:
        fallback = weak_perspective_placement(pred, width, height)
        fallback.info = {**info, 'failed': str(err), 'used_instead': fallback.info}
        fallback.message = '; '.join(filter(None, [f'--fit failed: {err}; the overlay and the OBJ '
                                                   'file are not fitted', fallback.message]))
        return fallback
    joints_cam = pred.joints_rel + t
    err = reprojection_error(joints_cam, pred.joints_2d, f, princpt)
    message = (f'fitted translation {rounded(t, 4)} m, reprojection error {err.mean():.2f} px mean, '
               f'{err.max():.2f} px max')
    info.update({'translation_m': rounded(t, 6), 'joints_3d_camera_m': rounded(joints_cam, 6),
                 'reprojection_error_px': {**_error_stats(err), 'per_joint': rounded(err, 3)}})
    verts = pred.verts_rel + t
    note = f'fitted translation {rounded(t, 4)} m (focal {f:g} px, principal point at the image centre)'
    return Placement(verts, note, verts, intrinsics((f, f), tuple(princpt)), info, message)


def weak_perspective_placement(pred: Prediction, width: int, height: int) -> Placement:
    """The mesh wrist-relative at NOMINAL_DEPTH; for drawing, a weak-perspective fit u = s x + a,
    rendered by a pinhole camera WEAK_PERSPECTIVE_DEPTH away with focal s * depth, which projects
    the wrist's depth plane exactly as the weak-perspective model does."""
    scale, offset = fit_weak_perspective(pred.joints_rel, pred.joints_2d)
    err = np.linalg.norm(scale * pred.joints_rel[:, :2] + offset - pred.joints_2d, axis=1)
    info = {'model': 'weak perspective: u = s x + a', 'scale_px_per_m': round(scale, 3),
            'offset_px': rounded(offset, 3), 'error_px': _error_stats(err)}
    verts = pred.verts_rel + np.array([0.0, 0.0, NOMINAL_DEPTH])
    note = (f'root-relative mesh, the wrist put at a nominal (0, 0, {NOMINAL_DEPTH}) m; run the '
            'demo with --fit for the camera placement')
    c, d = image_center(width, height), WEAK_PERSPECTIVE_DEPTH
    if scale <= 0:
        return Placement(verts, note, None, None, info,
                         'the predicted 2D joints are a mirror image of the 3D joints (negative '
                         'weak-perspective scale); the overlay shows no mesh')
    t = np.array([*((offset - c) / scale), d])
    return Placement(verts, note, pred.verts_rel + t, intrinsics((scale * d, scale * d), tuple(c)), info)
