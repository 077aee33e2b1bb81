"""The training losses (common/nets/loss.py and Model.forward in 'train' mode): every term equals
its own weight times its own definition, computed here independently (float64 numpy, scipy
rotations, the MANO layer in float64); the weights are all different, so a swapped weight or key
shows."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from config import Config
from model import get_model
from nets.loss import LOSS_KEYS, compute_losses, loss_weights
from test_model import SIZE, consistent_samples, one_thread  # noqa: F401  (autouse: one thread)
from test_nets import _reference_seg_loss
from utils.mano import ManoLayer
from utils.preprocessing import IGNORE_LABEL

# all different, none 1, so that each term is tied to its own weight
WEIGHTS = dict(lambda_mano_verts=2.0, lambda_mano_joints=3.0, lambda_mano_pose=5.0,
               lambda_mano_shape=7.0, lambda_joints_img=11.0, lambda_seg=13.0, lambda_loc=17.0)


def mse(a, b) -> float:
    """Mean squared error over every element, in float64."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float((d * d).sum() / d.size)


def reference_localiser_loss(out, boxes) -> float:
    """The hand localiser's loss as nets/loss.py defines it, cell by cell in float64: on the
    Gaussian around the box centre (sigma 0.15 of the box's mean side, at least half a cell),
    CenterNet's penalty-reduced focal loss (alpha 2, beta 4; the peak cell is the positive)
    summed over cells and averaged over frames, plus the mean L1 errors of log(w, h) and of the
    centre's offset within its cell, read at the cell holding the true centre. out (B, 5, n, n),
    boxes (B, 4) x, y, w, h in 0..1."""
    out, boxes = np.asarray(out, dtype=np.float64), np.asarray(boxes, dtype=np.float64)
    b, _, n, _ = out.shape
    focal, l1, offset = 0.0, [], []
    for k in range(b):
        x, y, w, h = boxes[k]
        cx, cy = x + w / 2, y + h / 2
        sigma = max(0.15 * (w + h) / 2, 0.5 / n)
        target = np.array([[math.exp(-((j + 0.5) / n - cx) ** 2 / (2 * sigma ** 2))
                            * math.exp(-((i + 0.5) / n - cy) ** 2 / (2 * sigma ** 2))
                            for j in range(n)] for i in range(n)])
        for i in range(n):
            for j in range(n):
                p = min(max(1 / (1 + math.exp(-out[k, 0, i, j])), 1e-4), 1 - 1e-4)
                if target[i, j] >= target.max() - 1e-6:
                    focal -= (1 - p) ** 2 * math.log(p)
                else:
                    focal -= (1 - target[i, j]) ** 4 * p ** 2 * math.log(1 - p)
        i, j = min(int(cy * n), n - 1), min(int(cx * n), n - 1)
        l1 += [abs(out[k, 1, i, j] - math.log(w)), abs(out[k, 2, i, j] - math.log(h))]
        offset += [abs(out[k, 3, i, j] - (cx * n - j)), abs(out[k, 4, i, j] - (cy * n - i))]
    return focal / b + float(np.mean(l1)) + float(np.mean(offset))


def test_loss_weights_come_from_the_matching_config_fields():
    conf = Config(**WEIGHTS)
    assert loss_weights(conf) == {'mano_verts': 2.0, 'mano_joints': 3.0, 'mano_pose': 5.0,
                                  'mano_shape': 7.0, 'joints_img': 11.0, 'seg': 13.0, 'loc': 17.0}
    assert set(LOSS_KEYS) == set(loss_weights(conf))


def test_each_term_is_its_weight_times_its_definition():
    g = torch.Generator().manual_seed(24)
    b = 2

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    pred = {'verts': rand(b, 778, 3) * 0.05, 'joints': rand(b, 21, 3) * 0.05, 'rotmat': rand(b, 16, 3, 3),
            'shape': rand(b, 10), 'joints_img': torch.rand(b, 21, 2, generator=g),
            'seg': torch.zeros(b, 3, 2, 2), 'frame_heat': rand(b, 5, 8, 8)}
    gt = {'verts': rand(b, 778, 3) * 0.05, 'joints': rand(b, 21, 3) * 0.05, 'rotmat': rand(b, 16, 3, 3),
          'shape': rand(b, 10), 'joints_img': torch.rand(b, 21, 2, generator=g),
          'seg': torch.tensor([[[1, 1], [1, 1]], [[IGNORE_LABEL] * 2] * 2]),
          'frame_box': torch.tensor([[0.2, 0.3, 0.25, 0.4], [0.55, 0.1, 0.3, 0.2]])}
    weights = loss_weights(Config(**WEIGHTS))
    losses = compute_losses(pred, gt, weights)
    assert set(losses) == set(LOSS_KEYS)
    for key, name in (('mano_verts', 'verts'), ('mano_joints', 'joints'), ('mano_pose', 'rotmat'),
                      ('mano_shape', 'shape'), ('joints_img', 'joints_img')):
        expected = weights[key] * mse(pred[name], gt[name])
        assert losses[key].item() == pytest.approx(expected, rel=1e-5), key
    # Segmentation, worked out by hand: zero logits give every class 1/3. Sample 0 (4 hand pixels):
    # cross-entropy ln 3; Dice 1 - (2 * 4/3 + 1) / (4/3 + 4 + 1) = 8/19. Sample 1 is unlabelled
    # and adds nothing.
    assert losses['seg'].item() == pytest.approx(13.0 * (math.log(3) + 8 / 19), rel=1e-6)
    assert losses['loc'].item() == pytest.approx(17.0 * reference_localiser_loss(pred['frame_heat'], gt['frame_box']),
                                                 rel=1e-5)
    # without a segmentation or a localiser prediction there is no such term
    fewer = compute_losses({k: v for k, v in pred.items() if k not in ('seg', 'frame_heat')}, gt, weights)
    assert set(fewer) == set(LOSS_KEYS) - {'seg', 'loc'}


def _captured_forward(model, inputs, targets) -> tuple[dict, dict, torch.Tensor]:
    """Losses of one 'train' pass, with the regressor's predictions, the segmentation logits and
    the localiser's output of that same pass (batch norm in training mode moves between passes)."""
    seen = {}
    hooks = [model.regressor.register_forward_hook(lambda m, a, out: seen.__setitem__('pred', out)),
             model.seg_head.register_forward_hook(lambda m, a, out: seen.__setitem__('seg', out)),
             model.localiser.register_forward_hook(lambda m, a, out: seen.__setitem__('loc', out))]
    try:
        with torch.no_grad():
            losses = model(inputs, targets, {}, 'train')
    finally:
        for h in hooks:
            h.remove()
    return losses, seen['pred'], seen['seg'], seen['loc']


def _rotations(pose: np.ndarray, hands_mean: np.ndarray) -> np.ndarray:
    """(B, 48) pose relative to hands_mean -> (B, 16, 3, 3) rotation matrices, by scipy."""
    full = pose + np.concatenate([np.zeros(3), hands_mean])
    return Rotation.from_rotvec(full.reshape(-1, 3)).as_matrix().reshape(len(pose), 16, 3, 3)


@pytest.mark.parametrize('gt_root', [False, True])
def test_model_losses_use_the_right_targets_and_weights(gt_root):
    """Model.forward('train'): each loss against the prediction of that pass and the target it
    must be compared with: vertices with the MANO mesh of the target pose and shape, joints with
    joints_coord_cam, rotations with those of the target pose, shape with the target shape, 2D
    joints with joints_img, segmentation with the labels, the localiser's heatmap with the frame's
    hand box. With mesh_loss_gt_root the predicted
    mesh is posed with the target's global rotation and the predicted fingers and shape."""
    torch.manual_seed(0)
    # SYNTH: the set whose joints use the default fingertip vertices, as the layers here do
    conf = Config().update(preset='cpu', trainset='SYNTH', mesh_loss_gt_root=gt_root, **WEIGHTS)
    model = get_model(conf, 'train')
    inputs, targets = consistent_samples(ManoLayer(), 3, SIZE, seed=5)
    g = torch.Generator().manual_seed(6)
    inputs['frame'] = torch.rand(3, 3, conf.localiser_size, conf.localiser_size, generator=g)
    targets['frame_box'] = torch.tensor([[0.1, 0.2, 0.3, 0.3], [0.4, 0.4, 0.5, 0.45], [0.6, 0.05, 0.2, 0.3]])
    losses, pred, seg_logits, loc_out = _captured_forward(model, inputs, targets)
    assert set(losses) == set(LOSS_KEYS)

    layer = ManoLayer(dtype=torch.float64)
    pose, shape = targets['mano_pose'].double(), targets['mano_shape'].double()
    with torch.no_grad():
        verts, joints = layer(pose, shape)
    gt_verts = (verts - joints[:, :1]).numpy()
    gt_rot = _rotations(pose.numpy(), layer.hands_mean.numpy())

    if gt_root:
        rot = pred['rotmat'].double().clone()
        rot[:, 0] = torch.from_numpy(gt_rot[:, 0])
        with torch.no_grad():
            out = layer.forward_rotmat(rot, pred['shape'].double())
        pred_verts = (out.verts - out.joints[:, :1]).numpy()
        pred_joints = (out.joints - out.joints[:, :1]).numpy()
        # the mesh the loss saw is not the prediction's own mesh (its global rotation is replaced)
        assert np.abs(pred_verts - pred['verts'].double().numpy()).max() > 1e-3
    else:
        pred_verts, pred_joints = pred['verts'].numpy(), pred['joints'].numpy()

    expected = {
        'mano_verts': WEIGHTS['lambda_mano_verts'] * mse(pred_verts, gt_verts),
        'mano_joints': WEIGHTS['lambda_mano_joints'] * mse(pred_joints, targets['joints_coord_cam']),
        'mano_pose': WEIGHTS['lambda_mano_pose'] * mse(pred['rotmat'], gt_rot),
        'mano_shape': WEIGHTS['lambda_mano_shape'] * mse(pred['shape'], targets['mano_shape']),
        'joints_img': WEIGHTS['lambda_joints_img'] * mse(pred['joints_img'], targets['joints_img']),
        'seg': WEIGHTS['lambda_seg'] * float(_reference_seg_loss(seg_logits.double(), targets['seg'])),
        'loc': WEIGHTS['lambda_loc'] * reference_localiser_loss(loc_out, targets['frame_box']),
    }
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-4), key
