"""MANO layer: file reading without chumpy, and agreement with independent LBS computations."""
import importlib.util
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.spatial.transform import Rotation

from conftest import MANO_PARENTS, random_mano_arrays
from errors import UserError
from utils import mano
from utils.mano import ManoFileError, ManoLayer, load_mano_file, mirror_model


def reference_lbs(m: dict, pose: np.ndarray, shape: np.ndarray, trans: np.ndarray,
                  flat_hand_mean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy MANO, one sample at a time, written from the paper's equations:
    returns verts (778, 3) and the 16 posed joints (16, 3)."""
    mean = 0 if flat_hand_mean else m['hands_mean']
    full = np.concatenate([pose[:3], pose[3:] + mean]).reshape(16, 3)
    rot = Rotation.from_rotvec(full).as_matrix()
    v_shaped = m['v_template'] + m['shapedirs'] @ shape
    joints = m['J_regressor'] @ v_shaped
    v_posed = v_shaped + m['posedirs'] @ (rot[1:] - np.eye(3)).reshape(-1)
    world = np.zeros((16, 4, 4))
    for k in range(16):
        local = np.eye(4)
        local[:3, :3] = rot[k]
        local[:3, 3] = joints[k] - (joints[MANO_PARENTS[k]] if k else 0)
        world[k] = local if k == 0 else world[MANO_PARENTS[k]] @ local
    skin = world.copy()
    skin[:, :3, 3] -= np.einsum('kij,kj->ki', world[:, :3, :3], joints)
    per_vertex = np.einsum('vk,kij->vij', m['weights'], skin)
    verts = np.einsum('vij,vj->vi', per_vertex[:, :3, :3], v_posed) + per_vertex[:, :3, 3]
    return verts + trans, world[:, :3, 3] + trans


def _write(tmp_path, arrays, name='MANO_RIGHT.pkl'):
    path = tmp_path / name
    with open(path, 'wb') as fh:
        pickle.dump(arrays, fh, protocol=2)
    return path


def _random_inputs(b, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(b, 48, generator=g, dtype=dtype) * 0.6
    shape = torch.randn(b, 10, generator=g, dtype=dtype)
    trans = torch.randn(b, 3, generator=g, dtype=dtype) * 0.2
    return pose, shape, trans


# ---------------------------------------------------------------- reading files

def test_reads_official_style_pickle_without_chumpy(tmp_path, mano_arrays):
    """A Python-2-protocol pickle whose arrays are chumpy objects and whose J_regressor is a
    scipy.sparse matrix, with module names as older numpy/scipy wrote them, loads with chumpy absent."""
    assert importlib.util.find_spec('chumpy') is None
    fake = types.ModuleType('chumpy.ch')

    class Ch:  # pickles like chumpy.ch.Ch: state is its __dict__ with the array under 'x'
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = self._make_sparse = False

    Ch.__module__, Ch.__qualname__ = 'chumpy.ch', 'Ch'
    fake.Ch = Ch
    wrapped = dict(mano_arrays)
    for key in ('v_template', 'shapedirs', 'posedirs', 'weights', 'hands_mean'):
        wrapped[key] = Ch(mano_arrays[key])
    wrapped['J_regressor'] = sparse.csc_matrix(mano_arrays['J_regressor'])
    wrapped['bs_style'] = 'lbs'
    sys.modules['chumpy'], sys.modules['chumpy.ch'] = types.ModuleType('chumpy'), fake
    try:
        raw = pickle.dumps(wrapped, protocol=2)
    finally:
        del sys.modules['chumpy'], sys.modules['chumpy.ch']
    raw = raw.replace(b'numpy._core', b'numpy.core').replace(b'scipy.sparse._csc', b'scipy.sparse.csc')
    assert b'chumpy.ch\nCh' in raw and b'numpy.core' in raw
    path = tmp_path / 'MANO_RIGHT.pkl'
    path.write_bytes(raw)

    model = load_mano_file(path)
    for key in mano.MANO_KEYS:
        assert isinstance(model[key], np.ndarray)
        np.testing.assert_array_equal(model[key], mano_arrays[key])


def test_loads_builtin_model_with_warning(tmp_path, caplog):
    with caplog.at_level('WARNING', logger='interacthand'):
        mano._warned.clear()
        layer = ManoLayer(tmp_path)  # an existing folder without MANO files
    assert layer.model_kind == 'builtin' and layer.model_id.startswith('builtin:')
    assert layer.v_template.shape == (778, 3) and layer.faces.shape == (1538, 3)
    assert any(str(tmp_path) in r.message and 'built-in' in r.message for r in caplog.records)


@pytest.mark.parametrize('problem', ['not_pickle', 'not_dict', 'missing_key', 'bad_shape', 'foreign_class'])
def test_bad_files_are_named(tmp_path, mano_arrays, problem):
    path = tmp_path / 'MANO_RIGHT.pkl'
    if problem == 'not_pickle':
        path.write_text('hello')
    elif problem == 'not_dict':
        _write(tmp_path, [1, 2, 3])
    elif problem == 'missing_key':
        _write(tmp_path, {k: v for k, v in mano_arrays.items() if k != 'posedirs'})
    elif problem == 'bad_shape':
        _write(tmp_path, {**mano_arrays, 'weights': mano_arrays['weights'][:, :15]})
    else:
        path.write_bytes(pickle.dumps({'v_template': types.SimpleNamespace()}, protocol=2))
    with pytest.raises(ManoFileError) as err:
        load_mano_file(path)
    msg = str(err.value)
    assert str(path) in msg
    if problem == 'missing_key':
        assert "'posedirs'" in msg
    if problem == 'bad_shape':
        assert "'weights'" in msg and '(778, 16)' in msg


def test_explicit_missing_path_is_an_error(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        ManoLayer(tmp_path / 'nowhere' / 'MANO_RIGHT.pkl')


def test_one_side_only_is_an_error_for_the_other_side(tmp_path, mano_arrays):
    # HandOccNet's instructions fetch MANO_RIGHT.pkl only; DexYCB's left hands must not silently
    # get the built-in hand while right hands get MANO
    _write(tmp_path, mano_arrays, 'MANO_RIGHT.pkl')
    assert ManoLayer(tmp_path).model_id.startswith('mano:')
    with pytest.raises(UserError, match='MANO_LEFT.pkl is missing beside .*MANO_RIGHT.pkl; left') as err:
        ManoLayer(tmp_path, side='left')
    assert str(tmp_path) in str(err.value)


# ---------------------------------------------------------------- the layer

@pytest.mark.parametrize('batch', [1, 5])
@pytest.mark.parametrize('flat', [False, True])
def test_layer_equals_numpy_reference(tmp_path, mano_arrays, batch, flat):
    layer = ManoLayer(_write(tmp_path, mano_arrays), flat_hand_mean=flat, dtype=torch.float64)
    pose, shape, trans = _random_inputs(batch)
    out = layer.forward_full(pose, shape, trans)
    assert out.verts.shape == (batch, 778, 3) and out.joints.shape == (batch, 21, 3)
    assert out.transforms.shape == (batch, 16, 4, 4)
    for i in range(batch):
        verts, joints16 = reference_lbs(mano_arrays, pose[i].numpy(), shape[i].numpy(),
                                        trans[i].numpy(), flat)
        assert np.abs(out.verts[i].numpy() - verts).max() < 1e-6
        tips = verts[list(mano.FINGERTIP_VERTS)]
        joints21 = np.concatenate([joints16, tips])[list(mano.MANO_TO_JOINTS)]
        assert np.abs(out.joints[i].numpy() - joints21).max() < 1e-6
        # transforms map rest-pose points onto posed joints: T_k @ J_rest_k = J_posed_k
        j_rest = mano_arrays['J_regressor'] @ (mano_arrays['v_template'] + mano_arrays['shapedirs'] @ shape[i].numpy())
        mapped = np.einsum('kij,kj->ki', out.transforms[i, :, :3, :3].numpy(), j_rest) + out.transforms[i, :, :3, 3].numpy()
        assert np.abs(mapped - joints16).max() < 1e-9


@pytest.mark.parametrize('batch', [1, 128, 129, 1000])
def test_large_batches_equal_the_numpy_reference(tmp_path, mano_arrays, batch):
    """On the CPU the layer skins the batch in chunks of CPU_SKIN_CHUNK (128) items: batches at,
    just over and far over one chunk give every item its own mesh, equal to the reference."""
    if batch > 128:
        assert ManoLayer.CPU_SKIN_CHUNK < batch    # so these batches do cross a chunk boundary
    layer = ManoLayer(_write(tmp_path, mano_arrays), dtype=torch.float64)
    pose, shape, trans = _random_inputs(batch, seed=batch)
    with torch.no_grad():
        verts, joints = layer(pose, shape, trans)
    ref = [reference_lbs(mano_arrays, p, s, t) for p, s, t in zip(pose.numpy(), shape.numpy(), trans.numpy())]
    ref_verts = np.stack([v for v, _ in ref])
    ref_joints = np.stack([np.concatenate([j, v[list(mano.FINGERTIP_VERTS)]])[list(mano.MANO_TO_JOINTS)]
                           for v, j in ref])
    assert verts.shape == (batch, 778, 3) and joints.shape == (batch, 21, 3)
    assert np.abs(verts.numpy() - ref_verts).max() < 1e-6
    assert np.abs(joints.numpy() - ref_joints).max() < 1e-6


def test_joint_order_names_fingertips(tmp_path, mano_arrays):
    layer = ManoLayer(_write(tmp_path, mano_arrays), dtype=torch.float64)
    verts, joints = layer(*_random_inputs(2)[:2])
    for name, vid in zip(('thumb4', 'index4', 'middle4', 'ring4', 'pinky4'), mano.FINGERTIP_VERTS):
        assert torch.equal(joints[:, mano.JOINT_NAMES.index(name)], verts[:, vid])


def test_agrees_with_smplx(tmp_path, mano_arrays):
    smplx = pytest.importorskip('smplx')
    path = _write(tmp_path, mano_arrays)
    ours = ManoLayer(path, dtype=torch.float64)
    ref = smplx.MANO(str(path), is_rhand=True, use_pca=False, flat_hand_mean=False, dtype=torch.float64)
    pose, shape, trans = _random_inputs(4)
    theirs = ref(betas=shape, global_orient=pose[:, :3], hand_pose=pose[:, 3:], transl=trans)
    verts, joints = ours(pose, shape, trans)
    assert (verts - theirs.vertices).abs().max() < 1e-6
    assert (joints[:, [mano.MANO_TO_JOINTS.index(k) for k in range(16)]] - theirs.joints).abs().max() < 1e-6


def test_zero_pose_and_shape_give_template(tmp_path, mano_arrays):
    path = _write(tmp_path, mano_arrays)
    zero_pose, zero_shape = torch.zeros(1, 48, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64)
    flat = ManoLayer(path, flat_hand_mean=True, dtype=torch.float64)
    verts, _ = flat(zero_pose, zero_shape)
    assert torch.allclose(verts[0], torch.from_numpy(mano_arrays['v_template']), atol=1e-12)
    # with hands_mean, the zero pose is the flat model posed at hands_mean
    relaxed = ManoLayer(path, flat_hand_mean=False, dtype=torch.float64)
    mean_pose = torch.cat([torch.zeros(3), torch.from_numpy(mano_arrays['hands_mean'])])[None].double()
    assert torch.allclose(relaxed(zero_pose, zero_shape)[0], flat(mean_pose, zero_shape)[0], atol=1e-12)


def test_global_rotation_rotates_whole_mesh(tmp_path, mano_arrays):
    layer = ManoLayer(_write(tmp_path, mano_arrays), dtype=torch.float64)
    pose, shape, _ = _random_inputs(1)
    pose[:, :3] = 0
    verts0, joints0 = layer(pose, shape)
    aa = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    rot = torch.from_numpy(Rotation.from_rotvec(aa[0].numpy()).as_matrix())
    verts1, joints1 = layer(torch.cat([aa, pose[:, 3:]], 1), shape)
    root = joints0[:, :1]
    assert torch.allclose(verts1, (verts0 - root) @ rot.T + root, atol=1e-12)
    assert torch.allclose(joints1, (joints0 - root) @ rot.T + root, atol=1e-12)


def test_left_is_mirror_of_right(tmp_path, mano_arrays):
    _write(tmp_path, mano_arrays, 'MANO_RIGHT.pkl')
    _write(tmp_path, mirror_model(mano_arrays), 'MANO_LEFT.pkl')
    right = ManoLayer(tmp_path, side='right', dtype=torch.float64)
    left = ManoLayer(tmp_path, side='left', dtype=torch.float64)
    pose, shape, trans = _random_inputs(3)
    mirror_pose = pose * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64).repeat(16)
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    v_r, j_r = right(pose, shape, trans)
    v_l, j_l = left(mirror_pose, shape, trans * flip)
    assert torch.allclose(v_l, v_r * flip, atol=1e-10) and torch.allclose(j_l, j_r * flip, atol=1e-10)
    assert left.side == 'left' and torch.equal(left.faces, right.faces.flip(1))


@pytest.mark.parametrize('flat', [False, True])
def test_pca_mode_agrees_with_smplx(tmp_path, mano_arrays, flat):
    """PCA poses (12 of the 45 components) against smplx's MANO in its own PCA mode."""
    smplx = pytest.importorskip('smplx')
    path = _write(tmp_path, mano_arrays)
    pca = ManoLayer(path, use_pca=True, num_pca_comps=12, flat_hand_mean=flat, dtype=torch.float64)
    ref = smplx.MANO(str(path), is_rhand=True, use_pca=True, num_pca_comps=12, flat_hand_mean=flat,
                     dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    coeffs = torch.randn(3, 15, generator=g, dtype=torch.float64)
    shape = torch.randn(3, 10, generator=g, dtype=torch.float64)
    trans = torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.2
    theirs = ref(betas=shape, global_orient=coeffs[:, :3], hand_pose=coeffs[:, 3:], transl=trans)
    verts, joints = pca(coeffs, shape, trans)
    assert pca.pose_dim == 15
    assert (verts - theirs.vertices).abs().max() < 1e-6
    assert (joints[:, [mano.MANO_TO_JOINTS.index(k) for k in range(16)]] - theirs.joints).abs().max() < 1e-6
    # and the components do matter: another set of coefficients gives another hand
    assert (pca(coeffs * 1.5, shape, trans)[0] - verts).abs().max() > 1e-3


def test_rotmat_round_trip(tmp_path, mano_arrays):
    layer = ManoLayer(_write(tmp_path, mano_arrays), dtype=torch.float64)
    pose, shape, _ = _random_inputs(4)
    rot = layer.pose_to_rotmat(pose)
    assert torch.allclose(layer.rotmat_to_pose(rot), pose, atol=1e-9)
    assert torch.allclose(layer.forward_rotmat(rot, shape).verts, layer(pose, shape)[0], atol=1e-12)


def test_float32_and_gradients(tmp_path, mano_arrays):
    layer = ManoLayer(_write(tmp_path, mano_arrays))
    pose, shape, trans = (t.float() for t in _random_inputs(2))
    pose.requires_grad_(True)
    verts, joints = layer(pose, shape, trans)
    assert verts.dtype == torch.float32
    (verts.sum() + joints.sum()).backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    zero = torch.zeros(1, 48, requires_grad=True)  # gradient at the exact zero rotation is finite
    layer(zero, torch.zeros(1, 10))[0].sum().backward()
    assert torch.isfinite(zero.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu(tmp_path, mano_arrays):
    layer = ManoLayer(_write(tmp_path, mano_arrays), dtype=torch.float64)
    pose, shape, trans = _random_inputs(3)
    cpu = layer(pose, shape, trans)[0]
    gpu = layer.cuda()(pose.cuda(), shape.cuda(), trans.cuda())[0].cpu()
    assert torch.allclose(cpu, gpu, atol=1e-9)


@pytest.mark.parametrize('args, message', [
    ((torch.zeros(2, 45), torch.zeros(2, 10)), r'pose must have shape \(B, 48\), got \(2, 45\)'),
    ((torch.zeros(2, 48), torch.zeros(3, 10)), r'shape must have shape \(2, 10\), got \(3, 10\)'),
    ((torch.zeros(2, 48), torch.zeros(2, 10), torch.zeros(2, 2)), r'trans must have shape \(2, 3\), got \(2, 2\)'),
    ((torch.zeros(48), torch.zeros(10)), r'pose must have shape \(B, 48\), got \(48,\)'),
])
def test_bad_shapes_raise(tmp_path, mano_arrays, args, message):
    layer = ManoLayer(_write(tmp_path, mano_arrays))
    with pytest.raises(ValueError, match=message):
        layer(*args)


def test_model_id_tells_models_apart(tmp_path):
    a = ManoLayer(_write(tmp_path, random_mano_arrays(0), 'a.pkl'))
    b = ManoLayer(_write(tmp_path, random_mano_arrays(1), 'b.pkl'))
    again = ManoLayer(tmp_path / 'a.pkl')
    assert a.model_id.startswith('mano:') and a.model_id != b.model_id and a.model_id == again.model_id
