"""The built-in procedural hand (asset/builtin_hand.npz, made by common/builtin_hand/): the shipped
file is what the generator builds, MANO's layout and sizes, a clean closed surface, a regressor and
weights that mean what they say, a pose space that moves the hand as named, and outside tools
(MANO file readers, smplx) that accept it."""
from collections import Counter

import numpy as np
import pytest
import torch

from builtin_hand.anatomy import FINGER_JOINTS, FINGERS, PCA_STD, HandParams, make_skeleton
from builtin_hand.build import build_arrays, differences, write_mano_pickle
from builtin_hand.rig import PoseSpace
from errors import UserError
from paths import BUILTIN_HAND_FILE
from utils.mano import FINGERTIP_VERTS, MANO_KEYS, ManoLayer, load_builtin_arrays, load_hand_model, load_mano_file

TIPS = dict(zip(('thumb', 'index', 'middle', 'ring', 'pinky'), FINGERTIP_VERTS))
MANO_PARENTS = [4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]


@pytest.fixture(scope='module')
def model() -> dict:
    """The shipped arrays, as run time loads them."""
    return load_builtin_arrays()


def test_shipped_asset_is_what_the_generator_builds(model):
    """The asset cannot drift from its generator: a fresh build gives the same arrays, bit for
    bit (dtypes included), and at most 1 MB on disk in the official MANO key names."""
    built = build_arrays()
    assert differences(built, model) == []
    assert set(MANO_KEYS) <= set(model) and BUILTIN_HAND_FILE.stat().st_size <= 2 ** 20
    assert load_hand_model(None).model_id.startswith('builtin:')


def test_differences_name_the_arrays_that_changed(model):
    changed = {k: v.copy() for k, v in model.items()}
    changed['weights'][3, 1] += 1e-9
    changed['f'] = changed['f'].astype(np.int64)
    del changed['J']
    assert differences(changed, model) == ['J', 'f', 'weights']


def _edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) directed edges of the triangles."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)


def _boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """Loops of edges that belong to one triangle only, each as its vertex sequence."""
    count = Counter(tuple(sorted(e)) for e in _edges(faces))
    nxt = {}
    for a, b in _edges(faces):
        if count[tuple(sorted((a, b)))] == 1:
            nxt[b] = a   # boundary walked against the faces' direction
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(loop)
    return loops


def _closed(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mesh with its wrist opening closed by a fan around the opening's centre."""
    loop = _boundary_loops(faces)[0]
    centre = len(verts)
    fan = [(loop[i], loop[(i + 1) % len(loop)], centre) for i in range(len(loop))]
    return np.vstack([verts, verts[loop].mean(0)]), np.vstack([faces.astype(np.int64), fan])


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    v, f = _closed(verts, faces)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum('ij,ij->i', a, np.cross(b, c)).sum() / 6)


def _winding_number(verts: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Generalised winding number of the closed mesh at each point (1 inside, 0 outside)."""
    v, f = _closed(verts, faces)
    a, b, c = (v[f[:, i]][None] - points[:, None] for i in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=2) for x in (a, b, c))
    num = np.einsum('pfi,pfi->pf', a, np.cross(b, c))
    den = (la * lb * lc + np.einsum('pfi,pfi->pf', a, b) * lc + np.einsum('pfi,pfi->pf', b, c) * la
           + np.einsum('pfi,pfi->pf', c, a) * lb)
    return np.arctan2(num, den).sum(1) / (2 * np.pi)


def _self_intersections(verts: np.ndarray, faces: np.ndarray) -> int:
    """Pairs of triangles with no shared vertex where an edge of one pierces the other."""
    tri = verts[faces]
    lo, hi = tri.min(1), tri.max(1)
    i, j = np.nonzero(np.triu(np.all((lo[:, None] <= hi[None]) & (lo[None] <= hi[:, None]), axis=2), 1))
    keep = ~(faces[i][:, :, None] == faces[j][:, None, :]).any((1, 2))
    i, j = i[keep], j[keep]

    def pierce(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        hit = np.zeros(len(a), bool)
        p0, e1, e2 = tri[b, 0], tri[b, 1] - tri[b, 0], tri[b, 2] - tri[b, 0]
        for k in range(3):
            s, d = tri[a, k], tri[a, (k + 1) % 3] - tri[a, k]
            h = np.cross(d, e2)
            det = np.einsum('ij,ij->i', e1, h)
            ok = np.abs(det) > 1e-20
            inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
            sv = s - p0
            u = np.einsum('ij,ij->i', sv, h) * inv
            q = np.cross(sv, e1)
            w = np.einsum('ij,ij->i', d, q) * inv
            t = np.einsum('ij,ij->i', e2, q) * inv
            hit |= ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t >= 0) & (t <= 1)
        return hit

    return int((pierce(i, j) | pierce(j, i)).sum())


def _layer(tmp_path, **kwargs) -> ManoLayer:
    """The layer on the built-in hand (an existing folder without MANO files), float64."""
    return ManoLayer(tmp_path, dtype=torch.float64, **kwargs)


# ---------------------------------------------------------------- layout and surface

def test_mano_layout(model):
    shapes = {'v_template': (778, 3), 'f': (1538, 3), 'shapedirs': (778, 3, 10),
              'posedirs': (778, 3, 135), 'J_regressor': (16, 778), 'weights': (778, 16),
              'kintree_table': (2, 16), 'hands_components': (45, 45), 'hands_mean': (45,), 'J': (16, 3)}
    for key, shape in shapes.items():
        assert model[key].shape == shape, key
    assert model['f'].dtype == np.uint32 and model['kintree_table'].dtype == np.int64
    assert model['v_template'].dtype == np.float64
    assert model['kintree_table'][0].tolist() == MANO_PARENTS
    assert model['kintree_table'][1].tolist() == list(range(16))
    assert len(np.unique(model['f'])) == 778   # every vertex is used


def test_closed_genus_zero_surface_with_one_16_vertex_opening(model):
    f = model['f'].astype(np.int64)
    assert len({tuple(sorted(t)) for t in f}) == len(f) and np.all(f[:, 0] != f[:, 1])
    per_edge = Counter(tuple(sorted(e)) for e in _edges(f))
    assert set(per_edge.values()) == {1, 2}          # manifold: an edge has one or two faces
    loops = _boundary_loops(f)
    assert [len(loop) for loop in loops] == [16]
    assert sum(1 for c in per_edge.values() if c == 1) == 16
    euler = 778 - len(per_edge) + len(f)             # V - E + F = 2 - 2 genus - boundaries
    assert euler == 1


def test_faces_consistently_oriented_outward(model):
    directed = Counter(map(tuple, _edges(model['f'])))
    assert max(directed.values()) == 1               # no edge is used twice in the same direction
    assert _signed_volume(model['v_template'], model['f']) > 1e-4   # outward; a hand is ~3e-4 m^3


def test_no_self_intersection_at_rest(model):
    assert _self_intersections(model['v_template'], model['f'].astype(np.int64)) == 0


def test_right_hand_in_mano_rest_frame_with_adult_proportions(model):
    v, J = model['v_template'], model['J']
    wrist = J[0]
    tip = {name: v[i] for name, i in TIPS.items()}
    length = {name: np.linalg.norm(p - wrist) for name, p in tip.items()}
    assert 0.175 < length['middle'] < 0.195
    assert length['middle'] > max(length['index'], length['ring'])
    assert min(length['index'], length['ring']) > length['pinky']
    assert abs(length['index'] - length['ring']) < 0.012
    assert length['thumb'] < length['pinky']
    # fingers along -x, thumb on the +z side, set near the wrist; the palm faces -y
    assert all(tip[f][0] < -0.14 for f in FINGERS)
    assert tip['index'][2] > tip['middle'][2] > tip['ring'][2] > tip['pinky'][2]
    assert J[14, 2] > J[1, 2] + 0.01 and J[13, 0] > -0.04    # thumb: radial, CMC near the wrist
    out_of_palm = np.cross(J[1] - wrist, J[7] - wrist)       # index x pinky knuckle, right hand
    assert out_of_palm[1] < -0.9 * np.linalg.norm(out_of_palm)   # the palm faces -y
    assert J[15, 1] < J[2, 1]                                # the thumb lies on the palm side


def test_fingertips_are_the_far_ends_of_their_digits(model):
    v, J = model['v_template'], model['J']
    last_joints = [joints[2] for joints in FINGER_JOINTS.values()]        # DIP (thumb: IP) joints
    closest = np.linalg.norm(v[:, None] - J[None, last_joints], axis=2).argmin(1)
    for name, tip in TIPS.items():
        last = J[FINGER_JOINTS[name][2]]
        out = (v[tip] - last) / np.linalg.norm(v[tip] - last)
        own = closest == last_joints.index(FINGER_JOINTS[name][2])       # not a neighbour's
        nearby = own & (np.linalg.norm(v - last, axis=1) < 0.035)
        reach = (v[nearby] - last) @ out
        assert np.flatnonzero(nearby)[np.argmax(reach)] == tip, name
        assert 0.015 < reach.max() < 0.03, name
    assert np.argmax(np.linalg.norm(v - J[0], axis=1)) == TIPS['middle']


# ---------------------------------------------------------------- regressor, weights, spaces

def test_joint_regressor_reproduces_joints_inside_the_hand(model):
    reg, v = model['J_regressor'], model['v_template']
    assert np.all(reg >= 0)
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(reg @ v, model['J'], atol=1e-7)
    winding = _winding_number(v, model['f'].astype(np.int64), model['J'])
    np.testing.assert_allclose(winding, 1.0, atol=0.05)
    # each finger's joints follow its bone: MCP -> PIP -> DIP -> tip go the same way
    for name in FINGERS:
        chain = np.vstack([model['J'][list(FINGER_JOINTS[name])], v[TIPS[name]]])
        steps = np.diff(chain, axis=0)
        norms = np.linalg.norm(steps, axis=1)
        cos = np.einsum('ij,ij->i', steps[:-1], steps[1:]) / (norms[:-1] * norms[1:])
        assert np.all(cos > 0.95), name


def test_skinning_weights_are_smooth_blends(model):
    w, f = model['weights'], model['f'].astype(np.int64)
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-9)
    for name, joints in FINGER_JOINTS.items():              # the tip rides on the last joint
        assert np.argmax(w[TIPS[name]]) == joints[2]
    for j in range(1, 16):                                  # every joint blends with its parent
        assert np.any((w[:, j] > 0.3) & (w[:, j] < 0.7)), j
    digit = np.full(16, -1)
    for k, joints in enumerate(FINGER_JOINTS.values()):
        digit[list(joints)] = k
    owner = digit[w.argmax(1)]
    e = _edges(f)
    same = (owner[e[:, 0]] == owner[e[:, 1]]) | (owner[e[:, 0]] < 0) | (owner[e[:, 1]] < 0)
    jump = np.abs(w[e[:, 0]] - w[e[:, 1]]).sum(1)[same]
    assert jump.max() < 1.2     # no edge moves more than 60% of its weight (rigid skinning: 100%)


def test_pose_and_shape_bases(model):
    comps = model['hands_components']
    np.testing.assert_allclose(comps @ comps.T, np.eye(45), atol=1e-9)
    # rows 0-9 are the synergies made orthonormal in order, PCA_STD half their amplitudes
    synergies = PoseSpace(make_skeleton(HandParams())).synergies()
    for k in range(10):
        residual = synergies[k] - comps[:k + 1].T @ (comps[:k + 1] @ synergies[k])
        assert np.linalg.norm(residual) < 1e-9 * np.linalg.norm(synergies[k])
    np.testing.assert_allclose(PCA_STD[:10], np.abs((synergies * comps[:10]).sum(1)) / 2, atol=1e-3)
    assert PCA_STD.shape == (45,) and np.all(PCA_STD[:10] > PCA_STD[10:].max())
    np.testing.assert_array_equal(model['posedirs'], 0.0)
    dirs = model['shapedirs'].reshape(-1, 10)
    gram = dirs.T @ dirs
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-6 * np.diag(gram).max()   # orthogonal
    v, reg = model['v_template'], model['J_regressor']
    length = np.linalg.norm(v[TIPS['middle']] - (reg @ v)[0])
    for s in (-2, 2):                                        # beta 0 is overall size
        vs = v + s * model['shapedirs'][:, :, 0]
        ratio = np.linalg.norm(vs[TIPS['middle']] - (reg @ vs)[0]) / length
        assert (ratio > 1.08) if s > 0 else (ratio < 0.92)


@pytest.mark.parametrize('index', range(10))
def test_shapes_at_two_sigma_stay_clean(model, index):
    for s in (-2.0, 2.0):
        v = model['v_template'] + s * model['shapedirs'][:, :, index]
        assert _self_intersections(v, model['f'].astype(np.int64)) == 0
        assert _signed_volume(v, model['f']) > 1e-4


# ---------------------------------------------------------------- posing through ManoLayer

def test_flexion_bends_fingers_into_the_palm_without_tearing(model, tmp_path):
    layer = _layer(tmp_path, flat_hand_mean=True)
    pose = torch.zeros(1, 48, dtype=torch.float64)
    for name in FINGERS:
        for j, angle in zip(FINGER_JOINTS[name], (1.3, 1.5, 1.0)):
            pose[0, 3 * j + 2] = angle                      # flexion: about +z in this rest frame
    verts, joints = layer(pose, torch.zeros(1, 10, dtype=torch.float64))
    v, v0, J = verts[0].numpy(), model['v_template'], model['J']
    assert np.isfinite(v).all()
    e = _edges(model['f'])
    ratio = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    ratio /= np.linalg.norm(v0[e[:, 0]] - v0[e[:, 1]], axis=1)
    near = np.zeros(len(e), bool)
    for name in FINGERS:
        for j in FINGER_JOINTS[name]:
            near |= np.linalg.norm(v0[e[:, 0]] - J[j], axis=1) < 0.015
    assert near.sum() > 500
    assert 0.3 < ratio[near].min() and ratio[near].max() < 2.0
    palm = J[[1, 4, 7, 10]].mean(0) + np.array([0.0, -0.03, 0.0])   # in front of the palm
    for name in FINGERS:
        before, after = (np.linalg.norm(x[TIPS[name]] - palm) for x in (v0, v))
        assert after < 0.75 * before, name
    # the layer's fingertip joints are these vertices
    np.testing.assert_allclose(joints[0, [8, 12, 16, 20]].numpy(), v[[TIPS[f] for f in FINGERS]])


def _pca_pose(model: dict, coeffs: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.concatenate([np.zeros(3), coeffs @ model['hands_components']]))[None]


def test_synergies_do_what_they_are_named(model, tmp_path):
    layer = _layer(tmp_path)           # poses relative to hands_mean, as the data generator uses
    shape = torch.zeros(1, 10, dtype=torch.float64)

    def joints(component: int, sigma: float) -> np.ndarray:
        c = np.zeros(45)
        c[component] = sigma * PCA_STD[component]
        return layer(_pca_pose(model, c), shape)[1][0].numpy()

    palm = model['J'][[1, 4, 7, 10]].mean(0) + np.array([0.0, -0.03, 0.0])
    tips = [8, 12, 16, 20]
    spread = [np.linalg.norm(joints(0, s)[tips] - palm, axis=1).mean() for s in (-2, 0, 2)]
    assert spread[0] > spread[1] + 0.01 and spread[1] > spread[2] + 0.01       # 0: close
    gap = [np.linalg.norm(joints(1, s)[4] - joints(1, s)[16]) for s in (-2, 0, 2)]
    assert gap[0] > gap[1] > gap[2]                                            # 1: opposition
    width = [np.linalg.norm(joints(2, s)[8] - joints(2, s)[20]) for s in (-2, 2)]
    assert width[1] > width[0] + 0.01                                          # 2: spread


def test_natural_samples_stay_in_joint_limits(model):
    """Samples drawn as the module docstring says keep the finger joints in anatomical ranges."""
    rng = np.random.default_rng(0)
    coeffs = np.clip(rng.standard_normal((2000, 45)), -2, 2) * PCA_STD
    pose = (model['hands_mean'] + coeffs @ model['hands_components']).reshape(-1, 15, 3)
    fingers = pose[:, :12].reshape(-1, 4, 3, 3)          # (N, finger, MCP/PIP/DIP, xyz)
    flexion = fingers[..., 2]                            # long fingers flex about +z at rest
    for k, (low, high) in enumerate([(-0.8, 1.7), (-0.5, 1.9), (-0.5, 1.4)]):
        assert low < flexion[:, :, k].min() and flexion[:, :, k].max() < high, k
    assert np.percentile(flexion, 1) > -0.4               # hyperextension stays rare and mild
    assert np.abs(fingers[..., 1]).max() < 0.45           # spread
    assert np.abs(fingers[..., 0]).max() < 0.4            # twist about the finger
    assert np.linalg.norm(pose[:, 12:], axis=2).max() < 2.0


# ---------------------------------------------------------------- files and sides

def test_mano_pickle_is_read_by_mano_tools(model, tmp_path):
    path = tmp_path / 'MANO_RIGHT.pkl'
    write_mano_pickle(model, path)
    loaded = load_mano_file(path)
    for key, value in loaded.items():
        np.testing.assert_array_equal(value, model[key], err_msg=key)
    smplx = pytest.importorskip('smplx')
    ref = smplx.MANO(str(path), is_rhand=True, use_pca=False, flat_hand_mean=True, dtype=torch.float64)
    ours = ManoLayer(path, flat_hand_mean=True, dtype=torch.float64)
    rng = np.random.default_rng(1)
    pose = torch.as_tensor(rng.normal(size=(2, 48)) * 0.4)
    betas = torch.as_tensor(rng.normal(size=(2, 10)))
    out = ref(global_orient=pose[:, :3], hand_pose=pose[:, 3:], betas=betas)
    # smplx nudges rotation vectors by 1e-8 before normalising them, hence 0.1 micrometre
    np.testing.assert_allclose(ours(pose, betas)[0].numpy(), out.vertices.detach().numpy(), atol=1e-7)


def test_asset_is_read_once_and_given_out_as_copies(model):
    first = load_builtin_arrays()
    first['v_template'][:] = 0.0                             # callers get copies
    assert np.any(load_builtin_arrays()['v_template'] != 0.0)


@pytest.mark.parametrize('damage, words', [(lambda p: None, 'is missing'),
                                           (lambda p: p.write_bytes(b'PK\x03\x04broken'), 'cannot be read'),
                                           (lambda p: np.savez(p, v_template=np.zeros((3, 3))), 'lacks')])
def test_missing_or_damaged_asset_says_how_to_get_it_back(tmp_path, damage, words):
    path = tmp_path / 'builtin_hand.npz'
    damage(path)
    with pytest.raises(UserError, match=words) as err:
        load_builtin_arrays(path)
    assert str(path) in str(err.value) and 'python common/builtin_hand/build.py' in str(err.value)


def test_left_hand_is_the_mirror_image(model, tmp_path):
    right, left = _layer(tmp_path), _layer(tmp_path, side='left')
    rng = np.random.default_rng(2)
    pose = torch.as_tensor(rng.normal(size=(3, 48)) * 0.3)
    shape = torch.as_tensor(rng.normal(size=(3, 10)))
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    mirrored_pose = pose * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64).repeat(16)
    v_right, j_right = right(pose, shape)
    v_left, j_left = left(mirrored_pose, shape)
    torch.testing.assert_close(v_left, v_right * flip, atol=1e-10, rtol=0)
    torch.testing.assert_close(j_left, j_right * flip, atol=1e-10, rtol=0)
    assert _signed_volume(left.v_template.numpy(), left.faces.numpy()) > 1e-4   # still outward
