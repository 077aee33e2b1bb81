"""The tester (common/testing.py) end to end on a DexYCB-format test set with left and right hands:
a perfect network, one that returns the ground truth of the crop it is given, must score 0 mm in
the original frame. Left hands reach the network mirrored (x -> -x), so its outputs must be
mirrored back per sample; PA-MPJPE and the F-scores allow reflections and would not notice a
missing mirror-back, MPJPE and the positions checked here do."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms

import test_data_helpers as fx
from config import Config
from DEX_YCB.DEX_YCB import DEX_YCB
from runtime import Runtime
import testing
from utils.render import MeshRenderer

CPU = Runtime(torch.device('cpu'), [])
SIDES = ('left', 'right', 'left', 'right', 'left')   # batches of 3: [L R L] [R L]
MIRROR = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope='module')
def dex_test(tmp_path_factory):
    """A DexYCB-format test split of five frames, left and right hands (seeded)."""
    rng = np.random.default_rng(24)
    renderer = MeshRenderer(fx.W, fx.H)
    frames = [fx.make_frame(rng, renderer, side) for side in SIDES]
    renderer.close()
    root = tmp_path_factory.mktemp('dex_lr')
    fx.write_dexycb(root, frames, 'test')
    return root


def _truth(ann: dict) -> tuple[np.ndarray, np.ndarray]:
    """Absolute joints (21, 3) of the annotation and the mesh (778, 3) of its own side's hand
    model placed at the annotated wrist, metres, original frame (float64, not via the loader)."""
    joints = np.array(ann['joints_coord_cam'])
    with torch.no_grad():
        v, j = fx.layer(ann['hand_type'])(torch.tensor([ann['mano_param']['pose']], dtype=torch.float64),
                                          torch.tensor([ann['mano_param']['shape']], dtype=torch.float64))
    return joints, (v[0] - j[0, 0]).numpy() + joints[0]


class CropOracle(nn.Module):
    """Stands in for a perfect network: for each crop it is given, the ground truth as the network
    sees it (root-relative, in the crop's frame: mirrored for a left hand). Crops are recognised
    by their pixels."""

    def __init__(self, answers: dict[bytes, tuple[np.ndarray, np.ndarray]]):
        super().__init__()
        self.answers = answers
        self.anchor = nn.Parameter(torch.zeros(1))   # a parameter, as a network has
        self.seen = 0

    def forward(self, inputs, targets=None, meta_info=None, mode='test'):
        assert mode == 'test'
        found = [self.answers[img.numpy().tobytes()] for img in inputs['img']]
        self.seen += len(found)
        b = len(found)
        return {'joints_coord_cam': torch.tensor(np.stack([j for j, _ in found]), dtype=torch.float32),
                'mesh_coord_cam': torch.tensor(np.stack([v for _, v in found]), dtype=torch.float32),
                'joints_coord_img': torch.full((b, 21, 2), 0.5),
                'mano_pose': torch.zeros(b, 48), 'mano_shape': torch.zeros(b, 10)}


def test_left_hands_are_mirrored_back_and_a_perfect_network_scores_zero(dex_test):
    conf = Config().update(preset='cpu', testset='DEX_YCB', dexycb_root=str(dex_test), num_thread=0,
                           test_batch_size=3)
    ds = DEX_YCB(transforms.ToTensor(), 'test', dex_test, conf.input_img_shape[0])
    with open(ds.annot_path) as fh:
        anns = {a['image_id']: a for a in json.load(fh)['annotations']}
    anns = [anns[e.image_id] for e in ds.entries]
    assert [a['hand_type'] for a in anns] == list(SIDES)

    answers, truths = {}, []
    for idx, ann in enumerate(anns):
        joints, verts = _truth(ann)
        truths.append((joints, verts))
        flip = MIRROR if ann['hand_type'] == 'left' else np.ones(3)
        key = ds[idx][0]['img'].numpy().tobytes()
        answers[key] = ((joints - joints[0]) * flip, (verts - joints[0]) * flip)   # the crop's frame
    assert len(answers) == len(anns)                                     # every crop is told apart

    oracle = CropOracle(answers)
    result = testing.Tester(conf, CPU, oracle, dataset=ds).run(progress=False)
    assert oracle.seen == len(anns)

    for i, (joints, verts) in enumerate(truths):       # the original frame, each sample on its own
        np.testing.assert_allclose(result.root_joint_cam[i], joints[0], atol=1e-6)
        np.testing.assert_allclose(result.joints[i] + result.root_joint_cam[i], joints, atol=1e-6)
        np.testing.assert_allclose(result.verts[i] + result.root_joint_cam[i], verts, atol=1e-6)
    summary = result.summary()
    for key in ('mpjpe', 'st_mpjpe', 'pa_mpjpe', 'pa_mpvpe'):
        assert summary[key] < 1e-3, (key, summary[key])                # millimetres
    assert summary['f5'] == summary['f15'] == 1.0
    per_sample = result.metrics.per_sample()['mpjpe']
    assert per_sample.shape == (len(anns),) and per_sample.max() < 1e-6   # metres
