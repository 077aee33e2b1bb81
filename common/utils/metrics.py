"""Hand-pose evaluation metrics in the HO3D challenge's definitions (numpy, metres in and out).

The definitions follow the challenge's evaluation script, ``eval.py`` of shreyashampali/ho3d
(``align_w_scale``, ``align_sc_tr``, ``calculate_fscore``), and the ``EvalUtil`` class it imports
(FreiHAND's ``utils/eval_util.py``, called as ``get_measures(0.0, 0.05, 100)``):

* MPJPE: mean Euclidean distance between predicted and ground-truth joints, no alignment.
* PA-MPJPE / PA-MPVPE: the same after aligning the prediction to the ground truth with the
  least-squares similarity transform (:func:`procrustes_align`), estimated separately on the joints
  and on the vertices.
* ST-MPJPE: the same after :func:`scale_translation_align` (scale from the wrist to middle-MCP bone,
  translation of the wrist).
* F@5 mm, F@15 mm: F-scores of the Procrustes-aligned vertices (:func:`f_score`).
* AUC: area under the PCK curve of the Procrustes-aligned joints, 100 thresholds over 0-50 mm,
  normalised to 0..1 (:func:`pck_auc`).

Joints are in the code's order, ``utils.mano.JOINT_NAMES``; every metric except ST-MPJPE is
independent of joint order, and ST-MPJPE picks the same two joints the challenge does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from utils.mano import JOINT_NAMES, NUM_JOINTS, NUM_VERTS
from utils.preprocessing import HAND, IGNORE_LABEL

WRIST = JOINT_NAMES.index('wrist')
MIDDLE_MCP = JOINT_NAMES.index('middle1')
PCK_THRESHOLDS = np.linspace(0.0, 0.05, 100)  # metres: the challenge's 100 thresholds over 0-50 mm
F_THRESHOLDS = {'f5': 0.005, 'f15': 0.015}    # metres
SUMMARY_KEYS = ('mpjpe', 'pa_mpjpe', 'pa_mpvpe', 'st_mpjpe', 'f5', 'f15', 'auc')
OCCLUSION_BUCKETS = (('0-20%', 0.0, 0.2), ('20-40%', 0.2, 0.4), ('>40%', 0.4, np.inf))


def _points(x: npt.ArrayLike, name: str) -> np.ndarray:
    """``x`` as a float64 array of shape (..., N, 3); torch CPU tensors are accepted too."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != 3:
        raise ValueError(f'{name} must have shape (..., N, 3), got {a.shape}')
    return a


def _pair(pred: npt.ArrayLike, gt: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _points(pred, 'pred'), _points(gt, 'gt')
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} must have the same shape')
    return pred, gt


# ----------------------------------------------------------------------------------------------
# Alignment

def procrustes_align(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """Align ``pred`` to ``gt`` by the least-squares similarity transform (the challenge's
    ``align_w_scale``).

    Finds the orthogonal matrix R, scale s and translation t minimising
    ``sum_i |s R p_i + t - g_i|^2`` over corresponding points, in closed form: with centred point
    sets P, G and the SVD ``P^T G = U S V^T``, ``R = (U V^T)^T``, ``s = trace(S) / |P|_F^2`` and
    ``t = mean(g) - s R mean(p)``.

    Reflections: like the challenge (which uses ``scipy.linalg.orthogonal_procrustes``), R is any
    orthogonal matrix, so a mirrored prediction is aligned by a reflection (det R = -1) and is not
    penalised; no sign correction of the smallest singular vector is made. A prediction whose points
    all coincide gets s = 0, i.e. every point moves to the centroid of ``gt``. (The challenge adds
    1e-8 to the norms it divides by; that shifts results by about 1e-8 relative and is left out.)

    Args:
        pred, gt: (..., N, 3) corresponding points, metres.
    Returns:
        (..., N, 3) the aligned prediction, metres.
    """
    pred, gt = _pair(pred, gt)
    mu_p, mu_g = pred.mean(-2, keepdims=True), gt.mean(-2, keepdims=True)
    p, g = pred - mu_p, gt - mu_g
    u, sv, vt = np.linalg.svd(np.swapaxes(p, -1, -2) @ g)        # (..., 3, 3)
    rot = u @ vt                                                  # row vectors: p @ rot ~ g
    norm2 = np.sum(p * p, axis=(-2, -1))
    scale = np.divide(sv.sum(-1), norm2, out=np.zeros_like(norm2), where=norm2 > 0)
    return scale[..., None, None] * (p @ rot) + mu_g


def scale_translation_align(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """Align joints by scale and translation only (the challenge's ``align_sc_tr``).

    The prediction is scaled so that its wrist-to-middle-MCP bone has the ground truth's length, then
    shifted so that its wrist lands on the ground-truth wrist. No rotation. As in the challenge, a
    prediction whose bone has zero length is not normalised (only multiplied by the ground truth's
    bone length).

    Args:
        pred, gt: (..., 21, 3) joints in ``JOINT_NAMES`` order, metres.
    Returns:
        (..., 21, 3) aligned prediction, metres.
    """
    pred, gt = _pair(pred, gt)
    if pred.shape[-2] != NUM_JOINTS:
        raise ValueError(f'scale_translation_align needs {NUM_JOINTS} joints, got {pred.shape[-2]}')
    bone_p = np.linalg.norm(pred[..., MIDDLE_MCP, :] - pred[..., WRIST, :], axis=-1)
    bone_g = np.linalg.norm(gt[..., MIDDLE_MCP, :] - gt[..., WRIST, :], axis=-1)
    scale = bone_g / np.where(bone_p > 0, bone_p, 1.0)
    rel = pred - pred[..., WRIST:WRIST + 1, :]
    return scale[..., None, None] * rel + gt[..., WRIST:WRIST + 1, :]


# ----------------------------------------------------------------------------------------------
# Position errors (one value per sample: mean over points, metres)

def point_errors(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """(..., N, 3), (..., N, 3) -> (..., N) Euclidean distance of each point, metres."""
    pred, gt = _pair(pred, gt)
    return np.linalg.norm(pred - gt, axis=-1)


def mpjpe(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """Mean per-joint position error without alignment: (..., N, 3) x2 -> (...,) metres."""
    return point_errors(pred, gt).mean(-1)


def pa_mpjpe(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """Mean per-joint error after :func:`procrustes_align`: (..., N, 3) x2 -> (...,) metres."""
    return point_errors(procrustes_align(pred, gt), gt).mean(-1)


def pa_mpvpe(pred_verts: npt.ArrayLike, gt_verts: npt.ArrayLike) -> np.ndarray:
    """Mean per-vertex error after :func:`procrustes_align` estimated on the vertices themselves
    (as the challenge does for MANO-topology meshes): (..., 778, 3) x2 -> (...,) metres."""
    return pa_mpjpe(pred_verts, gt_verts)


def st_mpjpe(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """Mean per-joint error after :func:`scale_translation_align`:
    (..., 21, 3) x2 -> (...,) metres."""
    return point_errors(scale_translation_align(pred, gt), gt).mean(-1)


# ----------------------------------------------------------------------------------------------
# F-score

class FScore(NamedTuple):
    """F-score with its precision and recall, each of shape batch + threshold shape."""
    f: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def nearest_distances(src: np.ndarray, dst: np.ndarray, upper_bound: float = np.inf) -> np.ndarray:
    """Distance from each point of ``src`` (M,3) to its nearest point of ``dst`` (K,3), by KD-tree.

    Distances of ``upper_bound`` or more may be returned as ``inf`` (faster; exact below the bound).
    Returns (M,) metres.
    """
    dist, _ = cKDTree(dst).query(src, k=1, distance_upper_bound=upper_bound)
    return dist


def f_score(pred_verts: npt.ArrayLike, gt_verts: npt.ArrayLike, threshold: float | Sequence[float]) -> FScore:
    """F-score between two point sets from nearest-neighbour distances both ways.

    precision = share of predicted points whose nearest ground-truth point is closer than
    ``threshold``; recall = share of ground-truth points whose nearest predicted point is closer than
    ``threshold`` (strict ``<``, as the challenge); F = 2PR / (P + R), 0 when P + R = 0. The
    challenge's script names these two shares the other way round; F is the same either way.

    Args:
        pred_verts: (V, 3) or (B, V, 3) metres.
        gt_verts: (W, 3) or (B, W, 3) metres; V and W may differ, batch shapes must match.
        threshold: metres, a number or a sequence of T numbers.
    Returns:
        :class:`FScore` of arrays shaped batch shape + threshold shape (floats for one sample and
        one threshold are 0-d arrays).
    """
    pred, gt = _points(pred_verts, 'pred_verts'), _points(gt_verts, 'gt_verts')
    if pred.shape[:-2] != gt.shape[:-2]:
        raise ValueError(f'batch shapes differ: pred {pred.shape} and gt {gt.shape}')
    th = np.asarray(threshold, dtype=np.float64)
    batch = pred.shape[:-2]
    pred = pred.reshape(-1, *pred.shape[-2:])
    gt = gt.reshape(-1, *gt.shape[-2:])
    flat_th = th.reshape(-1)
    bound = float(flat_th.max())
    precision = np.empty((len(pred), flat_th.size))
    recall = np.empty_like(precision)
    for i in range(len(pred)):
        precision[i] = (nearest_distances(pred[i], gt[i], bound)[:, None] < flat_th).mean(0)
        recall[i] = (nearest_distances(gt[i], pred[i], bound)[:, None] < flat_th).mean(0)
    total = precision + recall
    f = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    shape = batch + th.shape
    return FScore(f.reshape(shape), precision.reshape(shape), recall.reshape(shape))


# ----------------------------------------------------------------------------------------------
# PCK curve and its AUC

def pck_curve(errors: npt.ArrayLike, thresholds: np.ndarray = PCK_THRESHOLDS) -> np.ndarray:
    """Percentage of correct keypoints: share of ``errors`` (any shape, metres) that are ``<=`` each
    threshold (T,) -> (T,) in 0..1."""
    e = np.sort(np.asarray(errors, dtype=np.float64).reshape(-1))
    if e.size == 0:
        raise ValueError('pck_curve needs at least one error')
    return np.searchsorted(e, thresholds, side='right') / e.size


def pck_auc(errors: npt.ArrayLike, thresholds: np.ndarray = PCK_THRESHOLDS) -> float:
    """Area under :func:`pck_curve` by the trapezoidal rule, divided by the threshold range, so a
    perfect prediction scores 1. With the default thresholds (100 evenly spaced over 0-50 mm) this is
    the challenge's AUC: it averages per-keypoint AUCs, which equals the AUC of the pooled errors
    because every keypoint has the same number of samples. The first threshold is 0, so a point
    counts there only if its error is exactly 0: an aligned identity prediction, whose errors are
    rounding noise (~1e-16 m), scores up to 1/198 below 1, as it does in the challenge's script."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    curve = pck_curve(errors, thresholds)
    return float(np.trapezoid(curve, thresholds) / (thresholds[-1] - thresholds[0]))


# ----------------------------------------------------------------------------------------------
# Accumulation over a test set

class HandMetrics:
    """Accumulates per-sample errors over batches and summarises them in the challenge's terms.

    Usage: ``m = HandMetrics(); m.update(jp, jg, vp, vg) ...; m.summary()``.
    """

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}

    def __len__(self) -> int:
        return sum(len(a) for a in self._parts.get('mpjpe', []))

    def update(self, joints_pred: npt.ArrayLike, joints_gt: npt.ArrayLike, verts_pred: npt.ArrayLike,
               verts_gt: npt.ArrayLike) -> None:
        """Add one batch.

        Args:
            joints_pred, joints_gt: (B, 21, 3) metres, ``JOINT_NAMES`` order, same camera frame.
            verts_pred, verts_gt: (B, 778, 3) metres.
        """
        jp, jg = _pair(joints_pred, joints_gt)
        vp, vg = _pair(verts_pred, verts_gt)
        if jp.ndim != 3 or jp.shape[1] != NUM_JOINTS:
            raise ValueError(f'joints must have shape (B, {NUM_JOINTS}, 3), got {jp.shape}')
        if vp.ndim != 3 or vp.shape[1] != NUM_VERTS or len(vp) != len(jp):
            raise ValueError(f'verts must have shape ({len(jp)}, {NUM_VERTS}, 3), got {vp.shape}')
        vp_aligned = procrustes_align(vp, vg)
        fs = f_score(vp_aligned, vg, list(F_THRESHOLDS.values())).f        # (B, 2)
        pa_joint = point_errors(procrustes_align(jp, jg), jg)              # (B, 21)
        batch = {
            'mpjpe': mpjpe(jp, jg),
            'pa_mpjpe': pa_joint.mean(-1),
            'pa_mpvpe': point_errors(vp_aligned, vg).mean(-1),
            'st_mpjpe': st_mpjpe(jp, jg),
            'pa_joint_errors': pa_joint,
            **{key: fs[:, k] for k, key in enumerate(F_THRESHOLDS)},
        }
        for key, value in batch.items():
            self._parts.setdefault(key, []).append(value)

    def per_sample(self) -> dict[str, np.ndarray]:
        """Per-sample values so far: ``mpjpe``, ``pa_mpjpe``, ``pa_mpvpe``, ``st_mpjpe`` (N,) metres,
        ``f5``, ``f15`` (N,) 0..1, ``pa_joint_errors`` (N, 21) metres."""
        if not self._parts:
            raise ValueError('HandMetrics has no samples yet; call update() first')
        return {key: np.concatenate(parts) for key, parts in self._parts.items()}

    def summary(self) -> dict[str, float]:
        """The keys of :data:`SUMMARY_KEYS`: position errors in millimetres (means over samples),
        ``f5``/``f15`` mean F-scores and ``auc`` the PCK AUC of the aligned joints, both 0..1."""
        s = self.per_sample()
        out = {key: float(s[key].mean() * 1000.0)
               for key in ('mpjpe', 'pa_mpjpe', 'pa_mpvpe', 'st_mpjpe')}
        out.update({key: float(s[key].mean()) for key in F_THRESHOLDS})
        out['auc'] = pck_auc(s['pa_joint_errors'])
        return out


def pa_mpjpe_by_bucket(per_sample_pa_mpjpe: npt.ArrayLike, occlusion: npt.ArrayLike) -> dict[str, dict]:
    """PA-MPJPE per occlusion bucket (0-20 %, 20-40 %, over 40 %).

    Args:
        per_sample_pa_mpjpe: (N,) metres, e.g. ``HandMetrics.per_sample()['pa_mpjpe']``.
        occlusion: (N,) occluded share of the hand in each sample, 0..1; a bucket holds
            ``low <= occlusion < high`` (the last one everything from 0.4 up).
    Returns:
        ``{'0-20%': {'count': n, 'pa_mpjpe': mm, or None when empty}, '20-40%': ..., '>40%': ...}``.
    """
    err = np.asarray(per_sample_pa_mpjpe, dtype=np.float64).reshape(-1)
    occ = np.asarray(occlusion, dtype=np.float64).reshape(-1)
    if err.shape != occ.shape:
        raise ValueError(f'{err.size} errors but {occ.size} occlusion values')
    if np.any(~np.isfinite(occ)) or np.any((occ < 0) | (occ > 1)):
        raise ValueError('occlusion values must be shares between 0 and 1')
    out = {}
    for name, low, high in OCCLUSION_BUCKETS:
        sel = (occ >= low) & (occ < high)
        n = int(sel.sum())
        out[name] = {'count': n, 'pa_mpjpe': float(err[sel].mean() * 1000.0) if n else None}
    return out


# ----------------------------------------------------------------------------------------------
# Segmentation

@dataclass(frozen=True)
class IoUCounts:
    """Pixel counts for one class's intersection-over-union; add them up over batches."""
    intersection: int = 0
    union: int = 0

    def __add__(self, other: 'IoUCounts') -> 'IoUCounts':
        return IoUCounts(self.intersection + other.intersection, self.union + other.union)

    @property
    def iou(self) -> float:
        """intersection / union; NaN when the class appears in neither prediction nor ground truth."""
        return self.intersection / self.union if self.union else float('nan')


def seg_iou(pred_labels: npt.ArrayLike, gt_labels: npt.ArrayLike, cls: int = HAND,
            ignore: int = IGNORE_LABEL) -> IoUCounts:
    """Intersection and union of class ``cls`` between label maps, skipping ``ignore`` pixels of gt.

    Args:
        pred_labels, gt_labels: integer label maps of the same shape, e.g. (B, H, W)
            (0 background, 1 hand, 2 object; 255 unknown in gt).
    Returns:
        :class:`IoUCounts`; ``sum(batches, IoUCounts()).iou`` is the IoU over a whole test set.
    """
    pred, gt = np.asarray(pred_labels), np.asarray(gt_labels)
    if pred.shape != gt.shape:
        raise ValueError(f'label maps differ in shape: pred {pred.shape}, gt {gt.shape}')
    valid = gt != ignore
    p, g = (pred == cls) & valid, (gt == cls) & valid
    return IoUCounts(int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g)))
