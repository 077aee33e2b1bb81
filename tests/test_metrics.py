"""Metrics in the HO3D challenge's definitions, checked against independent computations."""
import numpy as np
import pytest
from scipy.spatial import procrustes as scipy_procrustes
from scipy.spatial.transform import Rotation

from utils.mano import JOINT_NAMES
from utils.metrics import (PCK_THRESHOLDS, SUMMARY_KEYS, HandMetrics, IoUCounts, f_score, mpjpe,
                           pa_mpjpe, pa_mpjpe_by_bucket, pa_mpvpe, pck_auc, pck_curve,
                           procrustes_align, scale_translation_align, seg_iou, st_mpjpe)

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def fresh_rng():
    """Each test draws its data from a fresh generator: the same data whichever tests ran before."""
    global RNG
    RNG = np.random.default_rng(7)


def hands(n: int, points: int) -> np.ndarray:
    """Random point sets of hand size (a few cm), metres, away from the origin like camera data."""
    return RNG.normal(scale=0.03, size=(n, points, 3)) + np.array([0.02, -0.05, 0.6])


def similarity_copy(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """x (B,N,3) rotated, scaled and shifted per sample: returns copy, rotations, scale, shifts."""
    rots = Rotation.random(len(x), random_state=seed).as_matrix()       # (B,3,3), proper rotations
    scale = 1.3
    shift = RNG.normal(scale=0.1, size=(len(x), 1, 3))
    return scale * np.einsum('bij,bnj->bni', rots, x) + shift, rots, scale, shift


def loop_mean_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample mean Euclidean distance, written with explicit loops."""
    out = []
    for pa, pb in zip(a, b):
        out.append(sum(float(np.sqrt(((p - q) ** 2).sum())) for p, q in zip(pa, pb)) / len(pa))
    return np.array(out)


def umeyama_reference(pred: np.ndarray, gt: np.ndarray, allow_reflection: bool) -> np.ndarray:
    """Least-squares similarity alignment of one (N,3) set in column-vector form (Umeyama 1991)."""
    mp, mg = pred.mean(0), gt.mean(0)
    P, G = (pred - mp).T, (gt - mg).T                   # (3,N)
    cov = G @ P.T / P.shape[1]
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if not allow_reflection and np.linalg.det(U @ Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var_p = (P ** 2).sum() / P.shape[1]
    s = np.trace(np.diag(S) @ D) / var_p
    return (s * R @ P).T + mg


# ----------------------------------------------------------------------------------------------
# Procrustes

def test_procrustes_matches_scipy_and_umeyama_on_random_data():
    pred, gt = hands(6, 21), hands(6, 21)
    aligned = procrustes_align(pred, gt)
    for i in range(len(pred)):
        std_gt, std_pred, _ = scipy_procrustes(gt[i], pred[i])   # both centred, unit Frobenius norm
        ref = std_pred * np.linalg.norm(gt[i] - gt[i].mean(0)) + gt[i].mean(0)
        np.testing.assert_allclose(aligned[i], ref, atol=1e-12)
        np.testing.assert_allclose(aligned[i], umeyama_reference(pred[i], gt[i], True), atol=1e-12)


def test_procrustes_undoes_rotation_scale_shift_and_batches_like_single_samples():
    gt = hands(5, 21)
    pred, _, _, _ = similarity_copy(gt, seed=1)
    aligned = procrustes_align(pred, gt)
    np.testing.assert_allclose(aligned, gt, atol=1e-12)
    for i in range(len(gt)):
        np.testing.assert_allclose(procrustes_align(pred[i], gt[i]), aligned[i], atol=1e-14)


def test_procrustes_allows_reflection_like_the_challenge():
    gt = hands(3, 21)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert np.all(pa_mpjpe(mirrored, gt) < 1e-12)
    # a rotation-only alignment cannot undo a mirror: the reference without reflections leaves error
    proper = umeyama_reference(mirrored[0], gt[0], allow_reflection=False)
    assert np.linalg.norm(proper - gt[0], axis=-1).mean() > 1e-3


def test_procrustes_of_collapsed_prediction_is_gt_centroid():
    gt = hands(1, 21)[0]
    pred = np.tile(np.array([0.1, 0.2, 0.3]), (21, 1))
    np.testing.assert_allclose(procrustes_align(pred, gt), np.tile(gt.mean(0), (21, 1)), atol=1e-15)


def test_procrustes_result_is_optimal_against_perturbed_transforms():
    pred, gt = hands(1, 21)[0], hands(1, 21)[0]
    best = np.sum((procrustes_align(pred, gt) - gt) ** 2)
    for seed in range(20):
        jitter = Rotation.from_rotvec(np.random.default_rng(seed).normal(scale=0.05, size=3))
        moved = 1.02 * jitter.apply(procrustes_align(pred, gt) - gt.mean(0)) + gt.mean(0) + 0.001
        assert np.sum((moved - gt) ** 2) > best


# ----------------------------------------------------------------------------------------------
# Position errors

def test_errors_of_identity_are_zero():
    gt = hands(4, 21)
    for fn in (mpjpe, pa_mpjpe, pa_mpvpe, st_mpjpe):
        assert np.all(np.abs(fn(gt.copy(), gt)) < 1e-12)


def test_errors_before_and_after_alignment():
    gt = hands(4, 21)
    pred, _, _, _ = similarity_copy(gt, seed=3)
    np.testing.assert_allclose(mpjpe(pred, gt), loop_mean_error(pred, gt), rtol=1e-12)
    assert np.all(mpjpe(pred, gt) > 0.01)
    assert np.all(pa_mpjpe(pred, gt) < 1e-12)
    shift = np.array([0.003, -0.004, 0.012])                 # |shift| = 13 mm exactly
    np.testing.assert_allclose(mpjpe(gt + shift, gt), 0.013, rtol=1e-12)


def test_scale_translation_alignment_undoes_scale_and_shift_not_rotation():
    gt = hands(4, 21)
    scaled = 0.7 * gt + np.array([0.05, -0.02, 0.1])
    np.testing.assert_allclose(scale_translation_align(scaled, gt), gt, atol=1e-12)
    assert np.all(st_mpjpe(scaled, gt) < 1e-12)
    # rotating about the wrist keeps the wrist and the wrist-middle-MCP bone length, so the
    # alignment changes nothing and the error is that of the rotated copy itself
    wrist = gt[:, JOINT_NAMES.index('wrist'), None]
    rots = Rotation.random(len(gt), random_state=5).as_matrix()
    rotated = np.einsum('bij,bnj->bni', rots, gt - wrist) + wrist
    np.testing.assert_allclose(st_mpjpe(rotated, gt), loop_mean_error(rotated, gt), rtol=1e-10)
    assert np.all(st_mpjpe(rotated, gt) > 1e-3)


def test_scale_translation_uses_wrist_and_middle_mcp():
    gt = hands(1, 21)[0]
    pred = gt.copy()
    middle = JOINT_NAMES.index('middle1')
    pred[middle] = gt[0] + 2.0 * (gt[middle] - gt[0])         # that bone twice as long -> scale 1/2
    expected = 0.5 * (pred - pred[0]) + gt[0]
    np.testing.assert_allclose(scale_translation_align(pred, gt), expected, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# F-score

def test_f_score_with_known_distances_and_asymmetry():
    # gt points 10 cm apart; each prediction sits at a known distance from its own gt point, so
    # every nearest neighbour is the partner point; three extra predictions lie 1 m away
    gt = np.stack([np.array([i, 0, 0]) * 0.1 for i in range(5)]).astype(float)
    offsets_mm = np.array([1.0, 3.0, 7.0, 12.0, 20.0])
    direction = np.array([0.0, 0.6, 0.8])
    pred = np.concatenate([gt + offsets_mm[:, None] * 1e-3 * direction,
                           np.array([[0, 1.0, 0], [0, 1.1, 0], [0, 1.2, 0]])])
    for th_mm in (5.0, 15.0):
        close = np.sum(offsets_mm < th_mm)
        precision, recall = close / 8, close / 5
        res = f_score(pred, gt, th_mm * 1e-3)
        assert res.precision == pytest.approx(precision)
        assert res.recall == pytest.approx(recall)
        assert res.f == pytest.approx(2 * precision * recall / (precision + recall))
    swapped = f_score(gt, pred, 0.005)                         # roles swap precision and recall
    assert swapped.precision == pytest.approx(2 / 5) and swapped.recall == pytest.approx(2 / 8)
    assert f_score(pred + 5.0, gt, 0.005).f == 0.0             # nothing close: F = 0, no NaN


def test_f_score_matches_brute_force_and_batches():
    gt = hands(3, 60)
    pred = gt + RNG.normal(scale=0.006, size=gt.shape)
    res = f_score(pred, gt, [0.005, 0.015])
    assert res.f.shape == (3, 2)
    for i in range(3):
        dist = np.linalg.norm(pred[i][:, None] - gt[i][None], axis=-1)   # (pred, gt)
        for k, th in enumerate((0.005, 0.015)):
            p = np.mean(dist.min(1) < th)
            r = np.mean(dist.min(0) < th)
            assert res.precision[i, k] == pytest.approx(p)
            assert res.recall[i, k] == pytest.approx(r)
            assert float(f_score(pred[i], gt[i], th).f) == pytest.approx(res.f[i, k])


# ----------------------------------------------------------------------------------------------
# PCK and AUC

def loop_auc(errors: np.ndarray, thresholds: np.ndarray) -> float:
    """AUC by explicit trapezoids over the PCK at each threshold."""
    pck = [np.mean(errors <= t) for t in thresholds]
    area = sum((pck[i] + pck[i + 1]) / 2 * (thresholds[i + 1] - thresholds[i])
               for i in range(len(thresholds) - 1))
    return area / (thresholds[-1] - thresholds[0])


def test_pck_auc_known_cases():
    assert len(PCK_THRESHOLDS) == 100 and PCK_THRESHOLDS[0] == 0.0 and PCK_THRESHOLDS[-1] == 0.05
    assert pck_auc(np.zeros(10)) == pytest.approx(1.0)
    assert pck_auc(np.full(10, 0.06)) == 0.0
    # every error equal to threshold k: PCK steps from 0 to 1 there (<= counts as correct), so the
    # trapezoids give half a step plus the rest of the range
    k = 40
    step = PCK_THRESHOLDS[1] - PCK_THRESHOLDS[0]
    expected = (PCK_THRESHOLDS[-1] - PCK_THRESHOLDS[k] + step / 2) / PCK_THRESHOLDS[-1]
    assert pck_auc(np.full(7, PCK_THRESHOLDS[k])) == pytest.approx(expected, rel=1e-12)


def test_pck_auc_matches_independent_computation():
    errors = np.abs(RNG.normal(scale=0.02, size=(50, 21)))
    assert pck_auc(errors) == pytest.approx(loop_auc(errors.ravel(), PCK_THRESHOLDS), rel=1e-12)
    # the challenge averages per-keypoint AUCs; equal to the pooled AUC with equal counts
    per_kp = np.mean([loop_auc(errors[:, j], PCK_THRESHOLDS) for j in range(21)])
    assert pck_auc(errors) == pytest.approx(per_kp, rel=1e-12)
    curve = pck_curve(errors)
    assert np.all(np.diff(curve) >= 0) and curve.shape == (100,)


# ----------------------------------------------------------------------------------------------
# Accumulator, buckets, segmentation IoU

def test_hand_metrics_identity_and_keys():
    joints, verts = hands(3, 21), hands(3, 778)
    m = HandMetrics()
    m.update(joints, joints.copy(), verts, verts.copy())
    s = m.summary()
    assert tuple(s) == SUMMARY_KEYS
    assert set(s) == {'mpjpe', 'pa_mpjpe', 'pa_mpvpe', 'st_mpjpe', 'f5', 'f15', 'auc'}
    for key in ('mpjpe', 'pa_mpjpe', 'pa_mpvpe', 'st_mpjpe'):
        assert s[key] == pytest.approx(0.0, abs=1e-9)
    assert s['f5'] == 1.0 and s['f15'] == 1.0
    # rounding noise of the alignment misses only the 0 mm threshold (half a trapezoid step)
    assert 1.0 - 0.5 / 99 <= s['auc'] <= 1.0


def test_hand_metrics_batches_and_units():
    joints, verts = hands(6, 21), hands(6, 778)
    jp = joints + RNG.normal(scale=0.01, size=joints.shape)
    vp, _, _, _ = similarity_copy(verts + RNG.normal(scale=0.004, size=verts.shape), seed=9)
    whole, parts = HandMetrics(), HandMetrics()
    whole.update(jp, joints, vp, verts)
    parts.update(jp[:2], joints[:2], vp[:2], verts[:2])
    parts.update(jp[2:], joints[2:], vp[2:], verts[2:])
    assert len(parts) == 6
    for key, value in whole.summary().items():
        assert parts.summary()[key] == pytest.approx(value, rel=1e-12)
    s = whole.summary()
    assert s['mpjpe'] == pytest.approx(1000 * loop_mean_error(jp, joints).mean(), rel=1e-10)
    assert s['pa_mpvpe'] == pytest.approx(1000 * pa_mpvpe(vp, verts).mean(), rel=1e-12)
    aligned = procrustes_align(vp, verts)
    assert s['f5'] == pytest.approx(f_score(aligned, verts, 0.005).f.mean())
    errors = np.linalg.norm(procrustes_align(jp, joints) - joints, axis=-1)
    assert s['auc'] == pytest.approx(loop_auc(errors.ravel(), PCK_THRESHOLDS), rel=1e-12)


def test_hand_metrics_rejects_bad_shapes():
    m = HandMetrics()
    with pytest.raises(ValueError, match='joints'):
        m.update(hands(2, 20), hands(2, 20), hands(2, 778), hands(2, 778))
    with pytest.raises(ValueError, match='verts'):
        m.update(hands(2, 21), hands(2, 21), hands(3, 778), hands(3, 778))
    with pytest.raises(ValueError, match='no samples'):
        m.summary()


def test_pa_mpjpe_by_bucket():
    errors = np.array([0.001, 0.002, 0.004, 0.010, 0.020])
    occlusion = np.array([0.0, 0.19, 0.2, 0.39, 0.4])
    out = pa_mpjpe_by_bucket(errors, occlusion)
    assert list(out) == ['0-20%', '20-40%', '>40%']
    assert out['0-20%'] == {'count': 2, 'pa_mpjpe': pytest.approx(1.5)}
    assert out['20-40%'] == {'count': 2, 'pa_mpjpe': pytest.approx(7.0)}
    assert out['>40%'] == {'count': 1, 'pa_mpjpe': pytest.approx(20.0)}
    assert pa_mpjpe_by_bucket(errors[:2], occlusion[:2])['>40%'] == {'count': 0, 'pa_mpjpe': None}
    with pytest.raises(ValueError):
        pa_mpjpe_by_bucket(errors, occlusion * 100)


def test_seg_iou_counts_and_accumulation():
    gt = np.array([[1, 1, 0, 2], [1, 255, 255, 0]])
    pred = np.array([[1, 0, 1, 1], [1, 1, 0, 0]])
    # valid pixels exclude the two 255s; hand in gt at (0,0),(0,1),(1,0); in pred at
    # (0,0),(0,2),(0,3),(1,0) [(1,1) is ignored]: intersection 2, union 5
    counts = seg_iou(pred, gt)
    assert counts == IoUCounts(2, 5) and counts.iou == pytest.approx(0.4)
    assert seg_iou(pred, gt, cls=2) == IoUCounts(0, 1)
    total = sum([seg_iou(pred[:1], gt[:1]), seg_iou(pred[1:], gt[1:])], IoUCounts())
    assert total == counts
    assert np.isnan(seg_iou(np.zeros((2, 2)), np.zeros((2, 2))).iou)
