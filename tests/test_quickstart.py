"""The quickstart's mean-hand baseline and demo input, on hand-made annotation files."""
import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from errors import UserError
from quickstart import demo_sample, mean_pose_errors
from utils.mano import ManoLayer


def _write(root, split, poses, shapes, joints):
    anns = [{'mano_param': {'pose': p.tolist(), 'shape': s.tolist()}, 'joints_coord_cam': j.tolist()}
            for p, s, j in zip(poses, shapes, joints)]
    path = root / 'annotations' / f'SYNTH_{split}_data.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'annotations': anns}))


@pytest.fixture
def one_hand():
    """A posed hand: pose (48,), shape (10,), joints (21, 3) in metres, wrist at (0.1, -0.05, 0.6)."""
    rng = np.random.default_rng(5)
    pose, shape = rng.normal(size=48) * 0.3, rng.normal(size=10) * 0.5
    with torch.no_grad():
        _, joints = ManoLayer()(torch.tensor(pose[None], dtype=torch.float32),
                                torch.tensor(shape[None], dtype=torch.float32))
    joints = joints[0].double().numpy()
    return pose, shape, joints - joints[0] + np.array([0.1, -0.05, 0.6])


def test_the_mean_hand_itself_scores_zero(tmp_path, one_hand):
    pose, shape, joints = one_hand
    _write(tmp_path, 'train', [pose] * 3, [shape] * 3, [joints] * 3)
    _write(tmp_path, 'evaluation', [pose] * 2, [shape] * 2, [joints, joints + 0.2])
    mpjpe, pa = mean_pose_errors(tmp_path)
    assert mpjpe < 1e-3 and pa < 1e-3                     # millimetres


def test_a_turned_hand_costs_mpjpe_but_not_pa_mpjpe(tmp_path, one_hand):
    """Evaluation hand = the mean hand turned 60 degrees about its wrist: MPJPE is the mean distance
    each joint moved, PA-MPJPE 0. The training rotations are symmetric about the hand's own, so
    their chordal mean is its rotation."""
    pose, shape, joints = one_hand
    base = Rotation.from_rotvec(pose[:3])
    train = []
    for turn in ([0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]):
        p = pose.copy()
        p[:3] = (base * Rotation.from_rotvec(turn)).as_rotvec()
        train.append(p)
    turned = (joints - joints[0]) @ Rotation.from_rotvec([0.0, np.pi / 3, 0.0]).as_matrix().T + joints[0]
    _write(tmp_path, 'train', train, [shape] * 2, [joints] * 2)
    _write(tmp_path, 'evaluation', [pose], [shape], [turned])
    mpjpe, pa = mean_pose_errors(tmp_path)
    moved = np.linalg.norm(turned - joints, axis=1).mean() * 1000
    assert moved > 10
    assert mpjpe == pytest.approx(moved, abs=1e-3)
    assert pa < 1e-3


def test_demo_sample_takes_the_first_images_own_box_and_focal(tmp_path):
    """Annotations listed in another order than the images: the first image's box and focal (the
    mean of fx and fy) come from the annotation with its image_id, in the demo's argument format;
    without one, a UserError says how to regenerate the set."""
    images = [{'id': 7, 'file_name': 'evaluation/rgb/000007.jpg'}, {'id': 3, 'file_name': 'evaluation/rgb/000003.jpg'}]
    anns = [{'image_id': 3, 'bbox': [1.0, 2.0, 3.0, 4.0], 'cam_param': {'focal': [500.0, 500.0]}},
            {'image_id': 7, 'bbox': [208.0, 240.5, 117.0, 180.0], 'cam_param': {'focal': [624.2, 623.6]}}]
    path = tmp_path / 'annotations' / 'SYNTH_evaluation_data.json'
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({'images': images, 'annotations': anns}))
    sample, box, focal = demo_sample(tmp_path)
    assert sample == tmp_path / 'evaluation' / 'rgb' / '000007.jpg'
    assert [float(v) for v in box] == [208.0, 240.5, 117.0, 180.0]
    assert float(focal) == pytest.approx(623.9, abs=0.05)
    path.write_text(json.dumps({'images': images, 'annotations': anns[:1]}))
    with pytest.raises(UserError, match='no annotation for its first image'):
        demo_sample(tmp_path)
