"""The raw-release converters (data/HO3D/build_annotations.py, data/DEX_YCB/build_annotations.py)
on tiny releases written by tests/raw_release_fixtures.py: entries, order and ids, every
coordinate convention, the written MANO parameters reproducing the written joints through the
MANO layer, the loaders reading the files, the fingertip definitions, and the user-facing errors."""
from __future__ import annotations

import json
import logging
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torchvision import transforms

import DEX_YCB.build_annotations as dex_build
import HO3D.build_annotations as ho3d_build
import raw_release_fixtures as rf
from config import ROOT, Config
from errors import UserError
from registry import build_dataset
from utils.mano import JOINT_NAMES, ManoLayer

TO_TENSOR = transforms.ToTensor()
TOL = 1e-6          # metres: what the written MANO parameters must reproduce
TIP_NAMES = ('thumb4', 'index4', 'middle4', 'ring4', 'pinky4')
TIPS = [JOINT_NAMES.index(n) for n in TIP_NAMES]


@pytest.fixture(autouse=True)
def propagate(monkeypatch):
    """Let caplog see the project logger even if an earlier test configured it for a CLI."""
    monkeypatch.setattr(logging.getLogger('interacthand'), 'propagate', True)


@pytest.fixture(scope='module')
def mano(tmp_path_factory) -> Path:
    return rf.write_mano_folder(tmp_path_factory.mktemp('mano'))


def _joints(layer: ManoLayer, pose, shape) -> np.ndarray:
    """(21, 3) root-relative joints of the written parameters, float64."""
    with torch.no_grad():
        _, j = layer(torch.tensor([pose], dtype=torch.float64), torch.tensor([shape], dtype=torch.float64))
    j = j[0].numpy()
    return j - j[0]


def _rel(joints) -> np.ndarray:
    j = np.asarray(joints, dtype=np.float64)
    return j - j[0]


# ---------------------------------------------------------------------------------------- HO3D

@pytest.fixture(scope='module', params=['v2', 'v3'])
def ho3d(request, mano, tmp_path_factory):
    """(release, {list: (counts, path, data)}) of a converted HO3D release of each version."""
    version = request.param
    release = rf.write_ho3d_release(tmp_path_factory.mktemp(f'ho3d_{version}'), version, mano)
    done = ho3d_build.convert(release.root, version, mano, release.root / 'annotations')
    files = {c.name.split()[-1]: (c, p, json.loads(p.read_text())) for c, p in done}
    return release, files


def test_ho3d_files_keep_every_listed_frame_in_list_order(ho3d):
    release, files = ho3d
    tag = 'HO3D_v3' if release.version == 'v3' else 'HO3D'
    ext = '.jpg' if release.version == 'v3' else '.png'
    for name, frames in (('train', release.train), ('evaluation', release.evaluation)):
        counts, path, data = files[name]
        assert path == release.root / 'annotations' / f'{tag}_{name}_data.json'
        kept = [(i, f) for i, f in enumerate(frames) if f not in release.unannotated]
        assert [img['id'] for img in data['images']] == [i for i, _ in kept]    # id = line index
        assert [img['file_name'] for img in data['images']] == \
            [f"{f.split('/')[0]}/rgb/{f.split('/')[1]}{ext}" for _, f in kept]
        assert [(img['width'], img['height']) for img in data['images']] == [release.sizes[f] for _, f in kept]
        assert [(a['id'], a['image_id']) for a in data['annotations']] == [(i, i) for i, _ in kept]
        assert counts.seen == len(frames) and counts.written == len(kept)
    assert dict(files['train'][0].skipped) == ({ho3d_build.NO_HAND: 2} if release.version == 'v3' else {})
    assert len(files['evaluation'][2]['annotations']) == len(release.evaluation)   # never drops


def test_ho3d_train_joints_are_flipped_to_opencv_and_reordered(ho3d):
    release, files = ho3d
    _, _, data = files['train']
    order = [rf.HO3D_JOINT_NAMES.index(n) for n in JOINT_NAMES]     # by name, not by table
    for img, ann in zip(data['images'], data['annotations']):
        meta = release.meta[release.train[img['id']]]
        raw = np.asarray(meta['handJoints3D'], dtype=np.float64)
        want = np.stack([raw[k] * [1, -1, -1] for k in order])
        np.testing.assert_allclose(ann['joints_coord_cam'], want, atol=1e-7)
        assert (np.array(ann['joints_coord_cam'])[:, 2] > 0).all()            # in front of an OpenCV camera
        k = np.asarray(meta['camMat'], dtype=np.float64)
        np.testing.assert_allclose(ann['cam_param']['focal'], [k[0, 0], k[1, 1]], atol=1e-4)
        np.testing.assert_allclose(ann['cam_param']['princpt'], [k[0, 2], k[1, 2]], atol=1e-4)
        np.testing.assert_allclose(ann['mano_param']['shape'], meta['handBeta'], atol=1e-7)


def test_ho3d_pose_and_shape_reproduce_the_joints_with_ho3d_fingertips(ho3d, mano):
    """Through the project's MANO layer (poses relative to hands_mean, OpenCV axes), the written
    parameters give the written joints to 1e-6 m, with HO3D's fingertip vertices; manopth's
    fingertips miss HO3D's thumb, index, ring and little tips while the other joints agree."""
    _, files = ho3d
    _, _, data = files['train']
    ho3d_layer = ManoLayer(mano, fingertips='ho3d', dtype=torch.float64)
    manopth_layer = ManoLayer(mano, dtype=torch.float64)
    body = [k for k in range(21) if k not in TIPS]
    for ann in data['annotations']:
        pose, shape = ann['mano_param']['pose'], ann['mano_param']['shape']
        want = _rel(ann['joints_coord_cam'])
        assert np.abs(_joints(ho3d_layer, pose, shape) - want).max() < TOL
        other = _joints(manopth_layer, pose, shape)
        assert np.abs(other[body] - want[body]).max() < TOL
        moved = np.linalg.norm(other[TIPS] - want[TIPS], axis=1)   # thumb ... pinky
        assert moved[[0, 1, 3, 4]].min() > 1e-3 and moved[2] < TOL     # both use vertex 444 for the middle tip


def test_ho3d_evaluation_entries_hold_wrist_box_and_camera(ho3d):
    release, files = ho3d
    _, _, data = files['evaluation']
    for img, ann in zip(data['images'], data['annotations']):
        meta = release.meta[release.evaluation[img['id']]]
        np.testing.assert_allclose(ann['root_joint_cam'], np.asarray(meta['handJoints3D'], float) * [1, -1, -1],
                                   atol=1e-7)
        x1, y1, x2, y2 = np.asarray(meta['handBoundingBox'], dtype=np.float64)
        np.testing.assert_allclose(ann['bbox'], [x1, y1, x2 - x1, y2 - y1], atol=1e-3)
        assert set(ann) == {'id', 'image_id', 'root_joint_cam', 'bbox', 'cam_param'}


def test_loaders_read_the_converted_ho3d_files(ho3d, mano):
    release, files = ho3d
    conf = Config(ho3d_root=str(release.root), ho3d_version=release.version, mano_path=str(mano),
                  input_img_shape='128,128')
    train = build_dataset('HO3D', TO_TENSOR, 'train', conf)
    assert [e.image_id for e in train.entries] == [i['id'] for i in files['train'][2]['images']]
    assert all(e.img_path.is_file() for e in train.entries)
    test = build_dataset('HO3D', TO_TENSOR, 'test', conf)
    assert len(test) == len(release.evaluation) and not test.has_gt
    inputs, targets, _ = train[0]
    assert inputs['img'].shape == (3, 128, 128) and targets['joints_coord_cam'].shape == (21, 3)
    if release.version == 'v3':   # the masks: hand in blue, object in green
        for e in train.entries:
            frame = release.train[e.image_id]
            labels = train.read_mask(e.mask_path)
            hand, obj = release.hand_mask[frame], release.object_mask[frame]
            assert (labels[hand] == 1).all() and (labels[obj] == 2).all() and (labels[~hand & ~obj] == 0).all()


def test_ho3d_warns_when_the_evaluation_list_is_not_the_challenge_s(tmp_path, mano, caplog):
    """The challenge's evaluation lists have 11,524 (v2) and 20,137 (v3) frames; a shorter one
    would make a submission the server refuses."""
    release = rf.write_ho3d_release(tmp_path / 'ho3d', 'v3', mano, seed=1)
    with caplog.at_level(logging.WARNING, logger='interacthand'):
        ho3d_build.convert(release.root, 'v3', mano, tmp_path / 'out')
    assert any('3 frames' in r.getMessage() and '20137' in r.getMessage() for r in caplog.records)
    assert ho3d_build.EVALUATION_SIZES == {'v2': 11524, 'v3': 20137}


# ---------------------------------------------------------------------------------------- HO3D errors

@pytest.fixture
def ho3d_copy(ho3d, tmp_path):
    """A fresh copy of a release, to damage."""
    release, _ = ho3d
    shutil.copytree(release.root, tmp_path / 'raw', ignore=shutil.ignore_patterns('annotations'))
    return release, tmp_path / 'raw'


@pytest.mark.parametrize('damage, words', [
    (lambda raw: (raw / 'evaluation.txt').unlink(), ['evaluation.txt', 'does not exist']),
    (lambda raw: (raw / 'train' / 'MC1' / 'meta' / '0003.pkl').unlink(), ['0003.pkl', 'MC1/0003', 'does not exist']),
    (lambda raw: (raw / 'train' / 'SM2' / 'meta' / '0002.pkl').write_bytes(b'\x80\x02garbage'),
     ['0002.pkl', 'SM2/0002', 'cannot be read']),
    (lambda raw: (raw / 'train' / 'SM2' / 'meta' / '0002.pkl').write_bytes(pickle.dumps({'a': Path('/')})),
     ['0002.pkl', 'SM2/0002', 'cannot be read', 'pathlib']),
    (lambda raw: (raw / 'train.txt').write_text('MC1/0000\nMC1\n'), ['train.txt', 'line 2', 'SEQUENCE/FRAME']),
])
def test_ho3d_errors_name_the_file_and_frame(ho3d_copy, mano, damage, words):
    release, raw = ho3d_copy
    damage(raw)
    with pytest.raises(UserError) as err:
        ho3d_build.convert(raw, release.version, mano, raw / 'annotations')
    for word in words:
        assert word in str(err.value)


def test_ho3d_needs_the_right_mano_file(ho3d_copy, mano, tmp_path):
    release, raw = ho3d_copy
    only_left = tmp_path / 'only_left'
    only_left.mkdir()
    shutil.copy(mano / 'MANO_LEFT.pkl', only_left)
    with pytest.raises(UserError, match="no MANO_RIGHT.pkl.*hands_mean"):
        ho3d_build.convert(raw, release.version, only_left, raw / 'annotations')
    with pytest.raises(UserError, match='is a file'):
        ho3d_build.convert(raw, release.version, mano / 'MANO_RIGHT.pkl', raw / 'annotations')


def test_ho3d_wrong_version_points_at_the_version(ho3d_copy, mano):
    release, raw = ho3d_copy
    other = 'v2' if release.version == 'v3' else 'v3'
    with pytest.raises(UserError, match=f'does not exist.*--version {other} right'):
        ho3d_build.convert(raw, other, mano, raw / 'annotations')


# ---------------------------------------------------------------------------------------- DexYCB

SUBJECTS_PRESENT = (0, 2)        # the fixture's subjects; 1 and 3-9 are missing
ALL_SERIALS = tuple(range(8))
# Per setup and split, written out for the fixture's 10 sequences per subject (the toolkit's
# rules, dex_ycb_toolkit/dex_ycb.py): (subjects, cameras, sequence indices).
EXPECTED_SPLITS = {
    's0': {'train': ((0, 2), ALL_SERIALS, {0, 1, 2, 3, 5, 6, 7, 8}), 'val': ((0,), ALL_SERIALS, {4, 9}),
           'test': ((2,), ALL_SERIALS, {4, 9})},
    's1': {'train': ((0, 2), ALL_SERIALS, set(range(10))), 'val': ((), ALL_SERIALS, set()),
           'test': ((), ALL_SERIALS, set())},
    's2': {'train': ((0, 2), tuple(range(6)), set(range(10))), 'val': ((0, 2), (6,), set(range(10))),
           'test': ((0, 2), (7,), set(range(10)))},
    's3': {'train': ((0, 2), ALL_SERIALS, set(range(10))), 'val': ((), ALL_SERIALS, set()),
           'test': ((), ALL_SERIALS, set())},
}


@pytest.fixture(scope='module')
def dex(mano, tmp_path_factory):
    return rf.write_dexycb_release(tmp_path_factory.mktemp('dex'), mano, subjects=SUBJECTS_PRESENT)


@pytest.fixture(scope='module')
def dex_s0(dex, mano):
    """{split: (counts, path, data)} of the s0 conversion."""
    done = dex_build.convert(dex.root, 's0', mano, dex.root / 'annotations')
    return {c.name.split()[-1]: (c, p, json.loads(p.read_text())) for c, p in done}


def _mapping(dex, subjects, serials, sequences) -> list[tuple[str, str, int]]:
    """The toolkit's samples of a split, in its order: subject, sorted sequence, camera, frame."""
    return [(f'{rf.DEX_SUBJECTS[s]}/{name}', rf.DEX_SERIALS[c], f)
            for s in subjects for i, name in enumerate(dex.sequences[s]) if i in sequences
            for c in serials for f in range(dex.num_frames)]


@pytest.mark.parametrize('setup', ['s0', 's1', 's2', 's3'])
def test_dexycb_samples_ids_and_order_follow_the_toolkit(dex, mano, tmp_path, setup):
    done = dex_build.convert(dex.root, setup, mano, tmp_path)
    assert [p.name for _, p in done] == [f'DEX_YCB_{setup}_{s}_data.json' for s in ('train', 'val', 'test')]
    for counts, path in done:
        split = counts.name.split()[-1]
        samples = _mapping(dex, *EXPECTED_SPLITS[setup][split])
        kept = [(i, s) for i, s in enumerate(samples) if s not in dex.no_hand]
        data = json.loads(path.read_text())
        assert [img['id'] for img in data['images']] == [i for i, _ in kept]
        assert [img['file_name'] for img in data['images']] == [f'{q}/{c}/color_{f:06d}.jpg' for _, (q, c, f) in kept]
        assert [a['image_id'] for a in data['annotations']] == [i for i, _ in kept]
        assert counts.seen == len(samples) and counts.written == len(kept)
        assert sum(counts.skipped.values()) == len(samples) - len(kept)


def test_dexycb_annotations_copy_the_labels_calibration_and_side(dex, dex_s0):
    seen_sides = set()
    for split in ('train', 'test'):
        _, _, data = dex_s0[split]
        for img, ann in zip(data['images'], data['annotations']):
            folder, name = img['file_name'].rsplit('/', 1)
            seq, serial = folder.rsplit('/', 1)
            with np.load(dex.root / folder / name.replace('color_', 'labels_').replace('.jpg', '.npz')) as lab:
                np.testing.assert_allclose(ann['joints_coord_cam'], lab['joint_3d'][0], atol=1e-7)
                np.testing.assert_allclose(ann['joints_img'], lab['joint_2d'][0], atol=1e-4)
            fx, fy, cx, cy = dex.intrinsics[serial]
            assert ann['cam_param'] == {'focal': [fx, fy], 'princpt': [cx, cy]}
            assert ann['hand_type'] == dex.sides[seq]
            subject = seq.split('/')[0]
            betas = yaml.safe_load((dex.root / 'calibration' / f'mano_{subject}_{ann["hand_type"]}'
                                    / 'mano.yml').read_text())['betas']
            np.testing.assert_allclose(ann['mano_param']['shape'], betas, atol=1e-7)
            assert (img['width'], img['height']) == (640, 480)
            seen_sides.add(ann['hand_type'])
    assert seen_sides == {'left', 'right'}


def test_dexycb_pose_and_shape_reproduce_the_joints_with_the_hand_s_own_side(dex_s0, mano):
    """The PCA coefficients times the components of the hand's own side, relative to that side's
    hands_mean, reproduce joint_3d to 1e-6 m; the other side's model does not."""
    layers = {s: ManoLayer(mano, side=s, dtype=torch.float64) for s in ('right', 'left')}
    other = {'right': 'left', 'left': 'right'}
    for split in ('train', 'test'):
        for ann in dex_s0[split][2]['annotations']:
            pose, shape, side = ann['mano_param']['pose'], ann['mano_param']['shape'], ann['hand_type']
            want = _rel(ann['joints_coord_cam'])
            assert np.abs(_joints(layers[side], pose, shape) - want).max() < TOL
            assert np.abs(_joints(layers[other[side]], pose, shape) - want).max() > 1e-3


def test_loaders_read_the_converted_dexycb_files(dex, dex_s0, mano):
    conf = Config(dexycb_root=str(dex.root), dexycb_setup='s0', mano_path=str(mano), input_img_shape='128,128')
    for split, name in (('train', 'train'), ('test', 'test')):
        ds = build_dataset('DEX_YCB', TO_TENSOR, split, conf)
        assert [e.image_id for e in ds.entries] == [i['id'] for i in dex_s0[name][2]['images']]
        assert {e.hand_type for e in ds.entries} == {'left', 'right'}
    _, targets, meta = ds[0]
    e = ds.entries[0]
    np.testing.assert_allclose(targets['joints_coord_cam'], e.joints_cam - e.joints_cam[0], atol=1e-6)
    np.testing.assert_allclose(targets['mesh_coord_cam'].shape, (778, 3))
    assert meta['flip'] == int(e.hand_type == 'left')


# ---------------------------------------------------------------------------------------- DexYCB errors

@pytest.fixture
def dex_copy(dex, tmp_path):
    shutil.copytree(dex.root, tmp_path / 'raw', ignore=shutil.ignore_patterns('annotations', '*.jpg'))
    return tmp_path / 'raw'


def _first_sequence(raw: Path) -> Path:
    subject = raw / rf.DEX_SUBJECTS[0]
    return subject / min(p.name for p in subject.iterdir())


@pytest.mark.parametrize('damage, words', [
    (lambda raw: (_first_sequence(raw) / 'meta.yml').unlink(), ['meta.yml', 'does not exist']),
    (lambda raw: (_first_sequence(raw) / rf.DEX_SERIALS[1] / 'labels_000001.npz').write_bytes(b'PK\x03\x04xx'),
     ['labels_000001.npz', 'frame 1 of', rf.DEX_SERIALS[1], 'cannot be read']),
    (lambda raw: (_first_sequence(raw) / rf.DEX_SERIALS[0] / 'labels_000000.npz').unlink(),
     ['labels_000000.npz', 'frame 0 of', 'does not exist']),
    (lambda raw: (raw / 'calibration' / 'intrinsics' / f'{rf.DEX_SERIALS[3]}_640x480.yml').unlink(),
     [f'{rf.DEX_SERIALS[3]}_640x480.yml', 'does not exist']),
    (lambda raw: shutil.rmtree(raw / 'calibration'), ['calibration/', 'DexYCB release folder']),
])
def test_dexycb_errors_name_the_file_and_sample(dex_copy, mano, damage, words):
    damage(dex_copy)
    with pytest.raises(UserError) as err:
        dex_build.convert(dex_copy, 's0', mano, dex_copy / 'annotations')
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize('missing', ['MANO_LEFT.pkl', 'MANO_RIGHT.pkl'])
def test_dexycb_needs_both_mano_files(dex_copy, mano, tmp_path, missing):
    folder = tmp_path / 'mano_one'
    shutil.copytree(mano, folder)
    (folder / missing).unlink()
    with pytest.raises(UserError, match=f'no {missing}.*PCA components'):
        dex_build.convert(dex_copy, 's0', folder, dex_copy / 'annotations')


def test_dexycb_missing_subjects_are_warned_about_once_per_split(dex, mano, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger='interacthand'):
        dex_build.convert(dex.root, 's0', mano, tmp_path)
    missing = [r.getMessage() for r in caplog.records if 'subject folders are not in' in r.getMessage()]
    assert len(missing) == 3                                  # train, val and test each lack some
    assert '8 of its 10' in missing[0] and rf.DEX_SUBJECTS[1] in missing[0]


# ---------------------------------------------------------------------------------------- CLIs

@pytest.fixture(scope='module')
def clis(mano, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """The command lines, all started at once (each mostly waits on importing torch): a HO3D
    conversion, a DexYCB one pointed at a folder that is no release, and the fingertip distance
    without and with a MANO file."""
    tmp = tmp_path_factory.mktemp('cli')
    release = rf.write_ho3d_release(tmp / 'ho3d', 'v2', mano)
    data = ROOT / 'data'
    commands = {
        'ho3d': [data / 'HO3D' / 'build_annotations.py', '--raw', release.root, '--version', 'v2',
                 '--mano-path', mano, '--out', tmp / 'out'],
        'dex_error': [data / 'DEX_YCB' / 'build_annotations.py', '--raw', tmp, '--setup', 's0', '--mano-path', mano],
        'tips_error': [data / 'HO3D' / 'fingertips.py', '--mano-path', tmp],
        'tips': [data / 'HO3D' / 'fingertips.py', '--mano-path', mano],
    }
    procs = {k: subprocess.Popen([sys.executable, *map(str, c)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE) for k, c in commands.items()}
    out = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[key] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


def test_command_lines_print_the_summary_and_one_line_errors(clis):
    run = clis['ho3d']
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'HO3D v2 train: 10 samples, 10 written' in run.stdout
    assert 'HO3D v2 evaluation: 3 samples, 3 written' in run.stdout
    run = clis['dex_error']
    assert run.returncode == 2 and run.stderr.startswith('error: ') and 'calibration/' in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and 'Traceback' not in run.stderr


def test_fingertip_distance_command_needs_the_licensed_file(clis, mano):
    run = clis['tips_error']
    assert run.returncode == 2 and 'MANO_RIGHT.pkl' in run.stderr and 'Traceback' not in run.stderr
    run = clis['tips']
    assert run.returncode == 0, run.stderr[-2000:]
    layer = ManoLayer(mano, dtype=torch.float64)
    with torch.no_grad():
        verts = layer(torch.zeros(1, 48, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64))[0][0].numpy()
    want = np.linalg.norm(verts[list(rf.HO3D_TIPS)] - verts[[745, 317, 444, 556, 673]], axis=1) * 1000
    line = next(ln for ln in run.stdout.splitlines() if ln.strip().startswith('mean pose'))
    printed = [float(x) for x in line.split(':')[1].split('(')[0].split(',')]
    np.testing.assert_allclose(printed, want, atol=0.006)
