"""Fingertips as each dataset defines them: HO3D's vertices (744, 333, 444, 555, 672) for HO3D,
manopth's (745, 317, 444, 556, 673) for the others; the training set picks the network's, the
snapshot records it, and the tester scores and submits the test set's."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from checkpoints import save_checkpoint
from config import DATASETS, SCHEDULES, Config
from errors import UserError
from inference import load_model
from model import get_model
from registry import DATASET_CLASSES, build_dataset
from runtime import Runtime
import testing
from utils.mano import FINGERTIPS, JOINT_NAMES, ManoLayer

TIP_NAMES = ('thumb4', 'index4', 'middle4', 'ring4', 'pinky4')


def test_the_two_definitions_are_ho3d_s_and_manopth_s():
    assert FINGERTIPS == {'ho3d': (744, 333, 444, 555, 672), 'manopth': (745, 317, 444, 556, 673)}


@pytest.mark.parametrize('tips', ['ho3d', 'manopth'])
def test_the_layer_takes_its_tip_joints_from_the_named_vertices(tips):
    layer = ManoLayer(fingertips=tips, dtype=torch.float64)
    pose = torch.randn(3, 48, dtype=torch.float64) * 0.3
    verts, joints = layer(pose, torch.randn(3, 10, dtype=torch.float64))
    for name, vertex in zip(TIP_NAMES, FINGERTIPS[tips]):
        assert torch.equal(joints[:, JOINT_NAMES.index(name)], verts[:, vertex])
    with pytest.raises(ValueError, match='fingertips'):
        ManoLayer(fingertips='freihand')


@pytest.mark.parametrize('name', DATASETS)
def test_each_training_set_picks_its_own_tips(name):
    assert Config(trainset=name).fingertips == DATASET_CLASSES[name].fingertips == SCHEDULES[name]['fingertips']
    assert DATASET_CLASSES['HO3D'].fingertips == 'ho3d' and DATASET_CLASSES['DEX_YCB'].fingertips == 'manopth'
    assert Config().update(trainset=name, fingertips='manopth').fingertips == 'manopth'   # --set wins


def test_the_snapshot_records_the_tips_it_was_trained_with(tmp_path):
    conf = Config().update(preset='cpu', trainset='HO3D', output_dir=str(tmp_path))
    model = get_model(conf, 'test')
    assert model.mano_layer.fingertips == 'ho3d'
    path = tmp_path / 'snapshot_1.pth.tar'
    save_checkpoint({'epoch': 1, 'network': model.state_dict(), 'config': conf.to_dict(), 'preset': 'cpu',
                     'hand_model': model.hand_model_id}, path)
    loaded, loaded_conf = load_model(path, trainset='SYNTH', testset='DEX_YCB')   # SYNTH's would be manopth
    assert loaded_conf.fingertips == 'ho3d' and loaded.mano_layer.fingertips == 'ho3d'


def test_training_with_other_tips_than_the_set_s_is_warned_about(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger('interacthand'), 'propagate', True)
    conf = Config().update(trainset='HO3D', fingertips='manopth', ho3d_root=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger='interacthand'), pytest.raises(UserError):
        build_dataset('HO3D', lambda x: x, 'train', conf)      # no files there: only the warning matters
    assert any("'ho3d' fingertips" in r.getMessage() and 'fingertips=manopth' in r.getMessage()
               for r in caplog.records)


def test_the_tester_takes_the_test_set_s_tips_from_the_predicted_mesh():
    """Whatever tips the network was trained with, the joints scored and submitted for a test
    set are its mesh's vertices at that set's tips (and the other joints are left alone)."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, inputs, targets=None, meta_info=None, mode='test'):
            b = len(inputs['img'])
            g = torch.Generator().manual_seed(0)
            return {'joints_coord_cam': torch.randn(b, 21, 3, generator=g),
                    'mesh_coord_cam': torch.randn(b, 778, 3, generator=g),
                    'joints_coord_img': torch.rand(b, 21, 2, generator=g),
                    'mano_pose': torch.zeros(b, 48), 'mano_shape': torch.zeros(b, 10)}

    class Set(torch.utils.data.Dataset):
        has_gt, data_split = False, 'test'

        def __init__(self, tips):
            self.fingertips = tips

        def __len__(self):
            return 2

        def __getitem__(self, i):
            meta = {'root_joint_cam': np.zeros(3, np.float32), 'flip': 0, 'occlusion': np.float32(-1),
                    'idx': i, 'focal': np.ones(2, np.float32), 'princpt': np.zeros(2, np.float32),
                    'img2crop': np.eye(3, dtype=np.float32)[:2]}
            return {'img': torch.zeros(3, 64, 64)}, {}, meta

    conf = Config().update(preset='cpu', num_thread=0)
    cpu = Runtime(torch.device('cpu'), [])
    raw = Net()({'img': torch.zeros(2)})
    for tips in ('ho3d', 'manopth'):
        result = testing.Tester(conf, cpu, Net(), dataset=Set(tips)).run(progress=False)
        tip_idx = [JOINT_NAMES.index(n) for n in TIP_NAMES]
        np.testing.assert_array_equal(result.joints[:, tip_idx], result.verts[:, list(FINGERTIPS[tips])])
        body = [k for k in range(21) if k not in tip_idx]
        np.testing.assert_array_equal(result.joints[:, body], raw['joints_coord_cam'].numpy()[:, body])
