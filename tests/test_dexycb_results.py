"""Results the official scorers read, from converted raw releases (tests/raw_release_fixtures.py):
the DexYCB toolkit's results file (absolute joints placed by the closed-form fit, image ids of the
toolkit's split, millimetres) and the HO3D v3 submission over v3's own evaluation list with HO3D's
fingertips; test.py writes both."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms

import DEX_YCB.build_annotations as dex_build
import HO3D.build_annotations as ho3d_build
import raw_release_fixtures as rf
import testing
from checkpoints import save_checkpoint
from config import ROOT, Config
from DEX_YCB.DEX_YCB import DEX_YCB
from model import get_model
from runtime import Runtime
from utils.dexycb_results import place_joints, write_results
from utils.mano import JOINT_NAMES, ManoLayer
from utils.submission import read_submission

CPU = Runtime(torch.device('cpu'), [])
SIZE = 128
MIRROR = np.array([-1.0, 1.0, 1.0])
TEST_SEQUENCES = (4, 9)       # s0's test sequences among the fixture's 10 (i % 5 == 4)


@pytest.fixture(scope='module')
def mano(tmp_path_factory) -> Path:
    return rf.write_mano_folder(tmp_path_factory.mktemp('mano'))


@pytest.fixture(scope='module')
def dex(mano, tmp_path_factory):
    """Subject 03 only (the first of s0's test subjects), converted to s0; right hands in test
    sequence 4, left hands in 9."""
    release = rf.write_dexycb_release(tmp_path_factory.mktemp('dex'), mano, subjects=(2,))
    dex_build.convert(release.root, 's0', mano, release.root / 'annotations')
    return release


def _toolkit_ground_truth(dex) -> dict[int, np.ndarray]:
    """What hpe_eval.py scores against: image id (the index in the s0 test mapping: subject,
    sorted sequence, camera, frame) -> joint_3d in millimetres, for samples with a hand."""
    gt, index = {}, 0
    for i, name in enumerate(dex.sequences[2]):
        if i not in TEST_SEQUENCES:
            continue
        for serial in rf.DEX_SERIALS:
            for frame in range(dex.num_frames):
                with np.load(dex.root / rf.DEX_SUBJECTS[2] / name / serial / f'labels_{frame:06d}.npz') as lab:
                    joints = lab['joint_3d'].reshape(21, 3).astype(np.float64)
                if not np.all(joints == -1):
                    gt[index] = joints * 1000
                index += 1
    return gt


def _project(points: np.ndarray, focal: np.ndarray, princpt: np.ndarray) -> np.ndarray:
    return points[..., :2] / points[..., 2:] * focal[:, None] + princpt[:, None]


def test_place_joints_recovers_where_the_hand_was():
    rng = np.random.default_rng(3)
    n = 6
    rel = rng.normal(0, 0.04, (n, 21, 3))
    rel -= rel[:, :1]
    t = np.stack([rng.uniform(-0.1, 0.1, n), rng.uniform(-0.1, 0.1, n), rng.uniform(0.5, 1.0, n)], 1)
    focal = rng.uniform(580, 640, (n, 2))
    princpt = rng.uniform(300, 340, (n, 2))
    uv = _project(rel + t[:, None], focal, princpt)
    placed, failed = place_joints(rel, uv, focal, princpt)
    assert not failed.any()
    np.testing.assert_allclose(placed, rel + t[:, None], atol=1e-9)

    mirrored = uv.copy()        # 2D joints that no camera in front of the hand explains
    mirrored[:, :, 0] = 2 * uv[:, :1, 0] - uv[:, :, 0]
    mirrored[:, :, 1] = 2 * uv[:, :1, 1] - uv[:, :, 1]
    placed, failed = place_joints(rel, mirrored, focal, princpt)
    assert failed.all() and (placed[:, 0, 2] > 0).all()
    np.testing.assert_allclose(_project(placed[:, :1], focal, princpt), mirrored[:, :1], atol=1e-6)


def test_results_file_is_what_the_toolkit_reads(tmp_path):
    rng = np.random.default_rng(0)
    ids, joints = np.array([7, 3, 12]), rng.normal(0, 0.3, (3, 21, 3))
    path = tmp_path / 'dexycb_s0_test_5.txt'
    write_results(path, ids, joints)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    for line, i, j in zip(lines, ids, joints):   # as hpe_eval.py's _load_results parses it
        elems = line.split(',')
        assert len(elems) == 64 and int(elems[0]) == i
        np.testing.assert_allclose(np.array(elems[1:], dtype=np.float64).reshape(21, 3), j * 1000, atol=1e-4)


def test_2d_joints_are_mapped_back_to_the_original_image(dex, mano):
    """The tester's crop -> image mapping, applied to the ground-truth crop joints of test items
    (left hands mirrored into the crop), gives the annotated image joints back."""
    ds = DEX_YCB(transforms.ToTensor(), 'test', dex.root, SIZE, mano, setup='s0')
    assert {e.hand_type for e in ds.entries} == {'left', 'right'}
    for idx, e in enumerate(ds.entries):
        _, targets, meta = ds[idx]
        back = testing.joints_to_image(targets['joints_img'][None], meta['img2crop'][None].astype(np.float64), SIZE)
        np.testing.assert_allclose(back[0], e.joints_img, atol=2e-3)


class CropOracle(nn.Module):
    """A perfect network: for each crop (recognised by its pixels) the ground truth as the network
    sees it: root-relative joints and mesh in the crop's frame (mirrored for a left hand) and the
    2D joints in 0..1 of the crop."""

    def __init__(self, answers: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]]):
        super().__init__()
        self.answers = answers
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, inputs, targets=None, meta_info=None, mode='test'):
        found = [self.answers[img.numpy().tobytes()] for img in inputs['img']]
        b = len(found)
        return {'joints_coord_cam': torch.tensor(np.stack([f[0] for f in found]), dtype=torch.float32),
                'mesh_coord_cam': torch.tensor(np.stack([f[1] for f in found]), dtype=torch.float32),
                'joints_coord_img': torch.tensor(np.stack([f[2] for f in found]), dtype=torch.float32),
                'mano_pose': torch.zeros(b, 48), 'mano_shape': torch.zeros(b, 10)}


def test_a_perfect_network_gives_the_toolkit_its_own_ground_truth(dex, mano, tmp_path):
    """Tester -> placement -> results file, with a network that is right in every crop: each
    line is the sample's joint_3d in millimetres, for exactly the samples the toolkit scores (its
    image ids), left and right hands alike, so its absolute row would read 0 mm."""
    conf = Config().update(preset='cpu', input_img_shape=f'{SIZE},{SIZE}', testset='DEX_YCB',
                           dexycb_root=str(dex.root), mano_path=str(mano), num_thread=0, test_batch_size=5)
    ds = DEX_YCB(transforms.ToTensor(), 'test', dex.root, SIZE, mano, setup='s0')
    layers = {s: ManoLayer(mano, side=s, dtype=torch.float64) for s in ('right', 'left')}
    answers = {}
    for idx, e in enumerate(ds.entries):
        inputs, targets, _ = ds[idx]
        with torch.no_grad():
            v, j = layers[e.hand_type](torch.tensor(e.pose[None], dtype=torch.float64),
                                       torch.tensor(e.shape[None], dtype=torch.float64))
        flip = MIRROR if e.hand_type == 'left' else np.ones(3)
        rel = (e.joints_cam - e.joints_cam[0]) * flip
        answers[inputs['img'].numpy().tobytes()] = (rel, (v[0] - j[0, 0]).numpy() * flip, targets['joints_img'])
    assert len(answers) == len(ds)

    result = testing.Tester(conf, CPU, CropOracle(answers), dataset=ds).run(progress=False)
    placed, failed = place_joints(result.joints, result.joints_2d, result.focal, result.princpt)
    assert not failed.any()
    path = tmp_path / 'dexycb_s0_test_1.txt'
    write_results(path, result.image_ids, placed)

    truth = _toolkit_ground_truth(dex)
    lines = [line.split(',') for line in path.read_text().splitlines()]
    written = {int(e[0]): np.array(e[1:], dtype=np.float64).reshape(21, 3) for e in lines}
    assert sorted(written) == sorted(truth) and len(lines) == len(truth)
    for image_id, joints in written.items():
        np.testing.assert_allclose(joints, truth[image_id], atol=0.02)     # millimetres


# ----------------------------------------------------------------------------- test.py end to end

@pytest.fixture(scope='module')
def snapshot(mano, tmp_path_factory) -> Path:
    """An untrained cpu-preset network saved as a snapshot of a DexYCB training (manopth's
    fingertips: on HO3D, the tester must take HO3D's)."""
    out = tmp_path_factory.mktemp('out')
    conf = Config().update(preset='cpu', trainset='DEX_YCB', mano_path=str(mano), output_dir=str(out))
    assert conf.fingertips == 'manopth'
    torch.manual_seed(0)
    model = get_model(conf, 'test')
    path = out / 'model_dump' / 'snapshot_3.pth.tar'
    save_checkpoint({'epoch': 3, 'network': model.state_dict(), 'config': conf.to_dict(), 'preset': 'cpu',
                     'hand_model': model.hand_model_id}, path)
    return path


def _test_py(snapshot: Path, *sets: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / 'main' / 'test.py'), '--gpu', 'cpu', '--checkpoint',
                           str(snapshot), '--set', 'num_thread=0', *sets], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def test_test_py_writes_the_dexycb_results_file(dex, mano, snapshot, tmp_path):
    run = _test_py(snapshot, f'output_dir={tmp_path}', 'testset=DEX_YCB', f'dexycb_root={dex.root}',
                   f'mano_path={mano}')
    assert run.returncode == 0, run.stderr[-3000:]
    lines = (tmp_path / 'result' / 'dexycb_s0_test_3.txt').read_text().splitlines()
    ids = [img['id'] for img in json.loads((dex.root / 'annotations' / 'DEX_YCB_s0_test_data.json').read_text())['images']]
    assert [int(line.split(',')[0]) for line in lines] == ids
    written = np.array([line.split(',')[1:] for line in lines], dtype=np.float64).reshape(-1, 21, 3)
    scored = np.load(tmp_path / 'result' / 'predictions_DEX_YCB_3.npz')['joints']   # root-relative, metres
    np.testing.assert_allclose(written - written[:, :1], scored * 1000, atol=1e-2)
    assert (written[:, 0, 2] > 0).all()                     # every hand placed in front of its camera


def test_test_py_writes_a_v3_submission_with_ho3d_fingertips(mano, snapshot, tmp_path):
    release = rf.write_ho3d_release(tmp_path / 'ho3d', 'v3', mano, seed=2)
    ho3d_build.convert(release.root, 'v3', mano, release.root / 'annotations')
    run = _test_py(snapshot, f'output_dir={tmp_path / "out"}', 'testset=HO3D', 'ho3d_version=v3',
                   f'ho3d_root={release.root}', f'mano_path={mano}')
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'the submission has 3 frames' in run.stderr and '20137' in run.stderr
    joints, verts = read_submission(tmp_path / 'out' / 'result' / 'pred3.zip')
    assert len(joints) == len(release.evaluation)
    for k, name in enumerate(release.evaluation):          # in list order, placed at each wrist
        np.testing.assert_allclose(joints[k, 0], np.asarray(release.meta[name]['handJoints3D']) * [1, -1, -1],
                                   atol=1e-5)
    tips = [JOINT_NAMES.index(n) for n in ('thumb4', 'index4', 'middle4', 'ring4', 'pinky4')]
    np.testing.assert_allclose(joints[:, tips], verts[:, list(rf.HO3D_TIPS)], atol=2e-6)
