"""HO3D challenge file format: joint order, axes, sizes, zip contents, round trips and errors."""
import json
import zipfile

import numpy as np
import pytest

from errors import UserError
from utils.mano import JOINT_NAMES
from utils.submission import (HO3D_JOINT_NAMES, from_ho3d, read_gt, read_submission, to_ho3d,
                              write_submission)

# The challenge's order, written out from its documentation: MANO's 16 joints, then the fingertips.
HO3D_ORDER = ('wrist', 'index1', 'index2', 'index3', 'middle1', 'middle2', 'middle3',
              'pinky1', 'pinky2', 'pinky3', 'ring1', 'ring2', 'ring3', 'thumb1', 'thumb2', 'thumb3',
              'thumb4', 'index4', 'middle4', 'ring4', 'pinky4')
RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def fresh_rng():
    """Each test draws its data from a fresh generator: the same data whichever tests ran before."""
    global RNG
    RNG = np.random.default_rng(3)


def sample(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Joints and vertices in the code's convention: in front of the camera (z > 0), metres."""
    joints = RNG.normal(scale=0.03, size=(n, 21, 3)) + np.array([0.0, 0.0, 0.5])
    verts = RNG.normal(scale=0.03, size=(n, 778, 3)) + np.array([0.0, 0.0, 0.5])
    return joints, verts


def test_joint_order_and_axes(tmp_path):
    assert HO3D_JOINT_NAMES == HO3D_ORDER
    joints, verts = sample(2)
    # each joint at a position that encodes its code index
    joints[:] = np.array([[i, 100 + i, 200 + i] for i in range(21)]) * 1e-3
    ho3d_joints, ho3d_verts = to_ho3d(joints, verts)
    write_submission(joints, verts, tmp_path / 'pred.json', tmp_path / 'pred.zip')
    in_file = np.array(json.loads((tmp_path / 'pred.json').read_text())[0])
    for k, name in enumerate(HO3D_ORDER):
        i = JOINT_NAMES.index(name)
        expected = [[i * 1e-3, -(100 + i) * 1e-3, -(200 + i) * 1e-3]] * 2
        np.testing.assert_array_equal(ho3d_joints[:, k], expected)
        np.testing.assert_allclose(in_file[:, k], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ho3d_verts[..., 0], verts[..., 0])
    np.testing.assert_array_equal(ho3d_verts[..., 1:], -verts[..., 1:])
    assert np.all(ho3d_joints[..., 2] < 0) and np.all(ho3d_verts[..., 2] < 0)  # OpenGL: hand at -z


def test_to_and_from_ho3d_are_inverse():
    joints, verts = sample()
    back = from_ho3d(*to_ho3d(joints, verts))
    np.testing.assert_array_equal(back[0], joints)
    np.testing.assert_array_equal(back[1], verts)
    with pytest.raises(ValueError, match='joints'):
        to_ho3d(joints[:, :20], verts)
    with pytest.raises(ValueError, match='verts'):
        to_ho3d(joints, verts[:2])


def test_write_submission_sizes_zip_and_round_trip(tmp_path):
    joints, verts = sample(4)
    json_path, zip_path = tmp_path / 'result' / 'pred7.json', tmp_path / 'result' / 'pred7.zip'
    write_submission(joints, verts, json_path, zip_path)
    data = json.loads(json_path.read_text())
    assert len(data) == 2 and len(data[0]) == 4 and len(data[1]) == 4
    assert all(len(j) == 21 and all(len(p) == 3 for p in j) for j in data[0])
    assert all(len(v) == 778 and all(len(p) == 3 for p in v) for v in data[1])
    ho3d_joints, ho3d_verts = to_ho3d(joints, verts)
    np.testing.assert_allclose(np.array(data[0]), ho3d_joints, rtol=0, atol=5e-7)  # 1 um rounding
    np.testing.assert_allclose(np.array(data[1]), ho3d_verts, rtol=0, atol=5e-7)
    assert np.abs(np.array(data[1]) - ho3d_verts).max() > 1e-9    # rounded, not full precision
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist() == ['pred.json']
        assert zf.read('pred.json').decode() == json_path.read_text()
    for path in (json_path, zip_path):
        j, v = read_submission(path)
        np.testing.assert_allclose(j, joints, rtol=0, atol=5e-7)
        np.testing.assert_allclose(v, verts, rtol=0, atol=5e-7)


def test_read_gt_round_trip(tmp_path):
    joints, verts = sample(3)
    ho3d_joints, ho3d_verts = to_ho3d(joints, verts)
    (tmp_path / 'xyz.json').write_text(json.dumps(ho3d_joints.tolist()))
    (tmp_path / 'verts.json').write_text(json.dumps(ho3d_verts.tolist()))
    j, v = read_gt(tmp_path / 'xyz.json', tmp_path / 'verts.json')
    np.testing.assert_array_equal(j, joints)
    np.testing.assert_array_equal(v, verts)


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize('content, message', [
    (None, 'does not exist'),
    ('{"a": 1', 'not valid JSON'),
    ([[]], 'list of two lists'),
    ([[[[0, 0, 0]] * 21], [[[0, 0, 0]] * 778] * 2], '1 joint entries but 2 vertex'),
    ([[[[0, 0]] * 21], [[[0, 0, 0]] * 778]], '21x3'),
    ([[[[0, 0, 0]] * 21], [[[0, 0, 0]] * 700]], '778x3'),
    ([[], []], 'empty'),
    ([[[[0, 0, float('nan')]] * 21], [[[0, 0, 0]] * 778]], 'NaN'),
    ([[[['a', 'b', 'c']] * 21], [[[0, 0, 0]] * 778]], 'not numbers'),
])
def test_read_submission_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / 'pred3.json'
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        _write(path, content)
    with pytest.raises(UserError, match=message) as err:
        read_submission(path)
    assert str(path) in str(err.value)


def test_zip_with_two_json_files_is_refused(tmp_path):
    path = tmp_path / 'upload.zip'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('a.json', '[]')
        zf.writestr('b.json', '[]')
    with pytest.raises(UserError, match='one JSON file') as err:
        read_submission(path)
    assert str(path) in str(err.value)


def test_zip_with_the_prediction_in_a_folder_is_refused(tmp_path):
    joints, verts = sample(1)
    path = tmp_path / 'upload.zip'
    with zipfile.ZipFile(path, 'w') as zf:                 # what `zip -r` of a folder gives
        zf.writestr('sub/pred.json', json.dumps([j.tolist() for j in to_ho3d(joints, verts)]))
    with pytest.raises(UserError, match='inside a folder.*zip -j') as err:
        read_submission(path)
    assert str(path) in str(err.value)


def test_folder_and_unreadable_file_are_named(tmp_path, monkeypatch):
    with pytest.raises(UserError, match='is a folder') as err:
        read_submission(tmp_path)
    assert str(tmp_path) in str(err.value)
    path = _write(tmp_path / 'pred.json', [[], []])

    def refuse(self, *args, **kwargs):                     # the tests run as root: no real chmod
        raise PermissionError(13, 'Permission denied', str(self))
    monkeypatch.setattr(type(path), 'read_text', refuse)
    with pytest.raises(UserError, match='cannot read .*Permission denied') as err:
        read_submission(path)
    assert str(path) in str(err.value)


def test_read_gt_count_mismatch(tmp_path):
    joints, verts = sample(3)
    hj, hv = to_ho3d(joints, verts)
    xyz = _write(tmp_path / 'xyz.json', hj.tolist())
    vj = _write(tmp_path / 'verts.json', hv[:2].tolist())
    with pytest.raises(UserError, match='has 3 entries but .* has 2') as err:
        read_gt(xyz, vj)
    assert str(xyz) in str(err.value) and str(vj) in str(err.value)
