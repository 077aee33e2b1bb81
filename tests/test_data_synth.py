"""SYNTH through data/SYNTH/SYNTH.py: the 50-frame set made once per session by the generator's
command line (conftest.synth_set: 40 train + 10 evaluation), checked like the HO3D/DexYCB fixtures: 2D joints,
MANO parameters and segmentation under augmentation, and the labels against the GT silhouette."""
import json

import numpy as np
import pytest
import torch
from torchvision import transforms

import test_data_helpers as fx
from SYNTH.SYNTH import SYNTH
from utils.mano import ManoLayer
from utils.preprocessing import label_affine, warp_labels
from utils.render import MeshRenderer, RenderMesh
from utils.transforms import cam2pixel

TO_TENSOR = transforms.ToTensor()
SIZE = 256   # crop side


@pytest.fixture(scope='module')
def synth(synth_set):
    return {split: SYNTH(TO_TENSOR, split, synth_set, SIZE) for split in ('train', 'test')}


@pytest.fixture(scope='module')
def gt(synth):
    """Per split: the raw annotations and the rendered GT silhouette (H, W) bool of each entry,
    from ManoLayer(pose, shape, trans) as the schema promises."""
    layer = ManoLayer(dtype=torch.float64)
    renderer = MeshRenderer(fx.W, fx.H)
    out = {}
    for split, ds in synth.items():
        with open(ds.annot_path) as fh:
            anns = {a['image_id']: a for a in json.load(fh)['annotations']}
        anns = [anns[e.image_id] for e in ds.entries]
        sils = []
        for a in anns:
            m = a['mano_param']
            with torch.no_grad():
                v, j = layer(*(torch.tensor(m[k], dtype=torch.float64)[None]
                               for k in ('pose', 'shape', 'trans')))
            np.testing.assert_allclose(j[0].numpy(), a['joints_coord_cam'], atol=1e-3)
            k = np.array([[*a['cam_param']['focal'][:1], 0, a['cam_param']['princpt'][0]],
                          [0, a['cam_param']['focal'][1], a['cam_param']['princpt'][1]], [0, 0, 1]])
            sils.append(renderer.depth([RenderMesh(v[0].numpy(), layer.faces.numpy())], k) > 0)
        out[split] = (anns, sils)
    renderer.close()
    return out


def test_both_splits_load_with_ground_truth(synth):
    assert len(synth['train']) == 40 and len(synth['test']) == 10
    assert synth['train'].has_gt and synth['test'].has_gt and synth['test'].data_split == 'test'


def test_joints_and_mano_params_stay_consistent_under_augmentation(synth, gt):
    ds, (anns, _) = synth['train'], gt['train']
    size = SIZE
    for seed in range(2):
        for idx, a in enumerate(anns):
            np.random.seed(seed * 100 + idx)
            _, targets, meta = ds[idx]
            cam = a['cam_param']
            uv = cam2pixel(np.array(a['joints_coord_cam']), cam['focal'], cam['princpt'])
            np.testing.assert_allclose(uv, a['joints_img'], atol=0.05)
            aff = meta['img2crop'].astype(np.float64)
            np.testing.assert_allclose(targets['joints_img'] * size, uv @ aff[:, :2].T + aff[:, 2],
                                       atol=1e-2)
            mano = fx.mano_joints_rel(targets['mano_pose'], targets['mano_shape'])
            assert np.abs(mano - targets['joints_coord_cam']).max() < 1e-3
            assert meta['occlusion'] == pytest.approx(a['occlusion'], abs=1e-6)


def test_seg_files_match_the_rendered_hand_silhouette(synth, gt):
    """On the written PNGs: hand pixels lie on the GT silhouette, and the silhouette is hand or
    object (an object in front hides the hand); the occlusion ratio is the hidden share."""
    for split, ds in synth.items():
        anns, sils = gt[split]
        for e, a, sil in zip(ds.entries, anns, sils):
            labels = ds.read_mask(e.mask_path)
            assert set(np.unique(labels)) <= {0, 1, 2}
            hand = labels == 1
            assert (sil[hand]).mean() > 0.98
            assert np.isin(labels[sil], (1, 2)).mean() > 0.97
            assert (labels[sil] == 2).mean() == pytest.approx(a['occlusion'], abs=0.03)


def test_seg_targets_stay_aligned_with_the_silhouette_under_augmentation(synth, gt):
    ds, (_, sils) = synth['train'], gt['train']
    small = SIZE // 4
    for idx, sil in enumerate(sils):
        np.random.seed(idx)
        _, targets, meta = ds[idx]
        a = np.vstack([meta['img2crop'], [0, 0, 1]]).astype(np.float64)
        sil_small = warp_labels(sil.astype(np.uint8), label_affine(a, sil.shape, sil.shape), small) > 0
        seg = targets['seg']
        if sil_small.sum() < 20:
            continue
        assert sil_small[seg == 1].mean() > 0.95
        assert np.isin(seg[sil_small], (1, 2)).mean() > 0.93


def test_test_items_carry_root_relative_mesh_and_joints(synth, gt):
    ds, (anns, _) = synth['test'], gt['test']
    layer = ManoLayer(dtype=torch.float64)
    for idx, a in enumerate(anns):
        _, targets, meta = ds[idx]
        joints = np.array(a['joints_coord_cam'])
        np.testing.assert_allclose(targets['joints_coord_cam'], joints - joints[0], atol=1e-6)
        np.testing.assert_allclose(meta['root_joint_cam'], a['root_joint_cam'], atol=1e-4)
        with torch.no_grad():
            v, j = layer(torch.tensor(a['mano_param']['pose'])[None].double(),
                         torch.tensor(a['mano_param']['shape'])[None].double())
        np.testing.assert_allclose(targets['mesh_coord_cam'], (v - j[:, :1])[0].numpy(), atol=1e-5)
        assert meta['flip'] == 0
