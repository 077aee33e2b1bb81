"""MANO hand model: reading model files without chumpy, and a batched linear-blend-skinning layer.

The official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` are Python-2 pickles whose arrays are wrapped
in chumpy objects and whose ``J_regressor`` is a ``scipy.sparse`` matrix. :func:`load_mano_file`
reads them with stand-in classes, so neither chumpy nor old scipy modules are needed, and refuses
anything else a pickle could name. When no file is found, :func:`load_hand_model` falls back to the
built-in procedural hand (``asset/builtin_hand.npz``, made by ``common/builtin_hand/build.py``) and
says so once.

The layer follows the MANO paper (Romero et al. 2017) and agrees with smplx's and manopth's layers:

    v_shaped = v_template + shapedirs . betas
    J        = J_regressor . v_shaped
    v_posed  = v_shaped + posedirs . (R(theta)[1:] - I)
    verts    = sum_k w_k G_k(theta, J) v_posed        (G_k: rest-to-posed transform of joint k)

Units are metres. Joints come out in the order used everywhere in the code (docs/DESIGN.md): wrist,
thumb 1-4, index 1-4, middle 1-4, ring 1-4, pinky 1-4, where joint 4 of a finger is its fingertip
vertex (:data:`FINGERTIP_VERTS`, or HO3D's definition, :data:`FINGERTIPS`).
"""
from __future__ import annotations

import hashlib
import io
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from errors import UserError
from paths import BUILTIN_HAND_FILE, DEFAULT_MANO_DIR
from utils.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from utils.transforms import mirror_pose

log = logging.getLogger('interacthand')

MANO_KEYS = ('v_template', 'f', 'shapedirs', 'posedirs', 'J_regressor', 'weights',
             'kintree_table', 'hands_components', 'hands_mean')
NUM_VERTS, NUM_MANO_JOINTS, NUM_JOINTS = 778, 16, 21
# Fingertip vertices (thumb, index, middle, ring, pinky) by the definition a dataset's joints use:
# manopth's (the DexYCB toolkit's, and this project's hand models', FINGERTIP_VERTS), and HO3D's, whose
# annotations were computed with a MANO whose lbs.py appends vertices 744, 333, 444, 555, 672
# (shreyashampali/ho3d, setup_mano.py). Which one a network is trained with is config.fingertips.
FINGERTIPS = {'manopth': (745, 317, 444, 556, 673), 'ho3d': (744, 333, 444, 555, 672)}
FINGERTIP_VERTS = FINGERTIPS['manopth']
JOINT_NAMES = ('wrist',
               'thumb1', 'thumb2', 'thumb3', 'thumb4', 'index1', 'index2', 'index3', 'index4',
               'middle1', 'middle2', 'middle3', 'middle4', 'ring1', 'ring2', 'ring3', 'ring4',
               'pinky1', 'pinky2', 'pinky3', 'pinky4')
# MANO's 16 joints are wrist, index 1-3, middle 1-3, pinky 1-3, ring 1-3, thumb 1-3; numbering the
# fingertips 16-20 (thumb, index, middle, ring, pinky), this picks the 21 joints in JOINT_NAMES order.
MANO_TO_JOINTS = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
TIP_JOINTS = (4, 8, 12, 16, 20)   # where the fingertips are in JOINT_NAMES (thumb4 ... pinky4)
SIDES = ('right', 'left')


class ManoFileError(UserError):
    """A file that is not a usable MANO model."""


# ----------------------------------------------------------------------------------------------
# Reading model files

class _Pickled:
    """Stand-in for a class the pickle names but we do not import (chumpy, scipy.sparse)."""
    module = name = ''

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {'state': state}


class _ManoUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only; chumpy and scipy.sparse become stand-ins."""
    _SAFE = {('copy_reg', '_reconstructor'), ('copyreg', '_reconstructor'),
             ('__builtin__', 'object'), ('builtins', 'object'), ('__builtin__', 'set'),
             ('builtins', 'set'), ('collections', 'OrderedDict'), ('__builtin__', 'frozenset'),
             ('builtins', 'frozenset'), ('_codecs', 'encode')}
    _stubs: dict = {}

    def find_class(self, module: str, name: str):
        if module.split('.')[0] == 'chumpy' or module.startswith('scipy.sparse'):
            key = (module, name)
            if key not in self._stubs:
                self._stubs[key] = type(name, (_Pickled,), {'module': module, 'name': name})
            return self._stubs[key]
        if module.startswith('numpy.core'):  # pickles written before numpy 2 renamed numpy.core
            module = 'numpy._core' + module[len('numpy.core'):]
        if module.split('.')[0] == 'numpy' or (module, name) in self._SAFE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'it refers to {module}.{name}, which a MANO file never holds')


def _to_array(obj, key: str, path: Path) -> np.ndarray:
    """A stand-in (chumpy array or scipy sparse matrix) or an array -> a dense numpy array."""
    if isinstance(obj, _Pickled):
        st = obj.state
        if obj.module.split('.')[0] == 'chumpy':
            if 'x' not in st:
                raise ManoFileError(f"{path}: '{key}' is a chumpy {obj.name} expression, not a "
                                    'stored array; re-save the model with plain arrays')
            return _to_array(st['x'], key, path)
        from scipy import sparse
        shape = st.get('_shape', st.get('shape'))
        fmt = obj.name[:3]
        if fmt in ('csc', 'csr'):
            ctor = sparse.csc_matrix if fmt == 'csc' else sparse.csr_matrix
            return ctor((st['data'], st['indices'], st['indptr']), shape=shape).toarray()
        if fmt == 'coo':
            return sparse.coo_matrix((st['data'], (st['row'], st['col'])), shape=shape).toarray()
        raise ManoFileError(f"{path}: '{key}' is a scipy.sparse {obj.name}, which is not supported")
    if hasattr(obj, 'toarray'):
        return np.asarray(obj.toarray())
    return np.asarray(obj)


def load_mano_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read a MANO-format pickle into plain numpy arrays under the official key names.

    Checks that every key of :data:`MANO_KEYS` is there and that the shapes agree with each other;
    raises :class:`ManoFileError` naming the file and the problem otherwise.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ManoFileError(f'cannot read MANO file {path} ({err.strerror}); check the path') from None
    try:
        data = _ManoUnpickler(io.BytesIO(raw), encoding='latin1').load()
    except Exception as err:  # any failure to unpickle means "not a MANO model"
        raise ManoFileError(f'{path} is not a MANO model file ({err}); use MANO_RIGHT.pkl or '
                            'MANO_LEFT.pkl from https://mano.is.tue.mpg.de') from None
    if not isinstance(data, dict):
        raise ManoFileError(f'{path} is not a MANO model file (it holds a {type(data).__name__}, '
                            'not a dict of arrays)')
    missing = [k for k in MANO_KEYS if k not in data]
    if missing:
        raise ManoFileError(f"{path} is not a MANO model file: it lacks '{missing[0]}'"
                            + (f" (and {', '.join(missing[1:])})" if missing[1:] else ''))
    model = {k: _to_array(data[k], k, path) for k in MANO_KEYS}
    _check_model(model, str(path))
    return model


def _check_model(m: dict[str, np.ndarray], where: str) -> None:
    """Shapes must agree with each other (sizes may differ from MANO's only for test models)."""
    v, j = m['v_template'].shape[0], m['J_regressor'].shape[0]
    expect = {'v_template': (v, 3), 'shapedirs': (v, 3, None), 'posedirs': (v, 3, 9 * (j - 1)),
              'J_regressor': (j, v), 'weights': (v, j), 'kintree_table': (2, j),
              'hands_components': (3 * (j - 1), 3 * (j - 1)), 'hands_mean': (3 * (j - 1),),
              'f': (None, 3)}
    for key, shape in expect.items():
        got = m[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            want = '(' + ', '.join('N' if s is None else str(s) for s in shape) + ')'
            raise ManoFileError(f"{where}: '{key}' has shape {got}, expected {want}")


def mirror_model(model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The mirror image (x -> -x) of a hand model: a right hand becomes a left hand.

    Axis-angle parameters mirror as (a, b, c) -> (a, -b, -c), so the pose-space arrays are mirrored
    too; the mirrored model posed with mirrored parameters is exactly the mirror of the original.
    """
    m = {k: np.array(v, copy=True) for k, v in model.items()}
    flip = np.array([-1.0, 1.0, 1.0])
    m['v_template'] = m['v_template'] * flip
    m['shapedirs'] = m['shapedirs'] * flip[None, :, None]
    # posedirs act on the entries (R - I)_ab of each joint; mirroring R is F R F, so entry ab
    # changes sign by flip_a * flip_b, and the offset itself mirrors in x.
    entry_sign = np.tile(np.outer(flip, flip).reshape(9), m['posedirs'].shape[2] // 9)
    m['posedirs'] = m['posedirs'] * flip[None, :, None] * entry_sign[None, None, :]
    m['hands_mean'] = mirror_pose(m['hands_mean'])                  # (a, b, c) -> (a, -b, -c)
    m['hands_components'] = mirror_pose(m['hands_components'])      # each row is a pose
    m['f'] = m['f'][:, ::-1].copy()  # keep the faces' outward orientation
    if 'J' in m:  # rest joints, carried by the built-in model
        m['J'] = m['J'] * flip
    return m


@dataclass
class HandModel:
    """A hand model's arrays and where they came from."""
    arrays: dict[str, np.ndarray]
    kind: str      # 'mano' or 'builtin'
    source: str    # the file read, or 'built-in procedural hand'
    side: str

    @property
    def model_id(self) -> str:
        """'mano:<hash>' or 'builtin:<hash>', a short hash of the arrays; stored in checkpoints."""
        h = hashlib.sha1()
        for key in MANO_KEYS:
            h.update(np.ascontiguousarray(self.arrays[key], dtype=np.float64).tobytes())
        return f'{self.kind}:{h.hexdigest()[:8]}'


_warned: set = set()


def find_mano_file(model_path: str | Path | None, side: str) -> Path | None:
    """The MANO file to use: ``model_path`` as a file, or ``MANO_<SIDE>.pkl`` in it as a folder;
    ``None`` means :data:`paths.DEFAULT_MANO_DIR`. Returns None when the folder has no MANO file; an explicit
    path that does not exist, or a folder with only the other side's file (which would mix MANO
    and the built-in hand between sides), is an error."""
    if side not in SIDES:
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    explicit = model_path is not None and Path(model_path) != DEFAULT_MANO_DIR
    path = Path(model_path) if model_path is not None else DEFAULT_MANO_DIR
    if path.suffix == '.pkl':
        if path.is_file():
            return path
        if explicit:
            raise UserError(f'MANO file {path} does not exist; check the path, or leave it unset '
                            'to use the built-in hand model')
        return None
    candidate = path / f'MANO_{side.upper()}.pkl'
    if candidate.is_file():
        return candidate
    other = path / f"MANO_{'LEFT' if side == 'right' else 'RIGHT'}.pkl"
    if other.is_file():   # one side MANO and the other the built-in hand: wrong meshes for one side
        raise UserError(f'{candidate.name} is missing beside {other}; {side} hands need it (download '
                        'both files from https://mano.is.tue.mpg.de and put them in that folder)')
    if explicit and not path.is_dir():
        raise UserError(f'MANO folder {path} does not exist; check the path, or leave it unset to '
                        'use the built-in hand model')
    return None


_builtin: dict[str, dict[str, np.ndarray]] = {}   # file -> arrays, read once per process


def load_builtin_arrays(path: str | Path = BUILTIN_HAND_FILE) -> dict[str, np.ndarray]:
    """The built-in right hand's arrays (MANO's key names, plus ``J``, the (16, 3) rest joints),
    read from ``path`` once per process; each call returns fresh copies. A missing or damaged file
    is a :class:`UserError` saying how to get it back."""
    key = str(path)
    if key not in _builtin:
        how = ('restore it (git checkout -- asset/builtin_hand.npz) or rebuild it with '
               'python common/builtin_hand/build.py')
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise UserError(f'the built-in hand model {path} is missing; {how}') from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f'the built-in hand model {path} cannot be read ({err}); {how}') from None
        if missing := [k for k in (*MANO_KEYS, 'J') if k not in arrays]:
            raise UserError(f'the built-in hand model {path} lacks {", ".join(missing)}; {how}')
        _check_model(arrays, str(path))
        _builtin[key] = arrays
    return {k: v.copy() for k, v in _builtin[key].items()}


def load_hand_model(model_path: str | Path | None = None, side: str = 'right') -> HandModel:
    """The MANO model when its file is found (see :func:`find_mano_file`), else the built-in hand,
    announced by one warning per process."""
    path = find_mano_file(model_path, side)
    if path is not None:
        return HandModel(load_mano_file(path), 'mano', str(path), side)
    if 'builtin' not in _warned:
        where = model_path if model_path is not None else DEFAULT_MANO_DIR
        log.warning(f'MANO_{side.upper()}.pkl not found in {where}: using the built-in procedural '
                    'hand model, which is not MANO. For MANO, download it from '
                    f'https://mano.is.tue.mpg.de and put MANO_RIGHT.pkl/MANO_LEFT.pkl in {where} '
                    '(or pass --set mano_path=FOLDER).')
        _warned.add('builtin')
    arrays = load_builtin_arrays()
    if side == 'left':
        arrays = mirror_model(arrays)
    return HandModel(arrays, 'builtin', 'built-in procedural hand', side)


# ----------------------------------------------------------------------------------------------
# The layer

class ManoOutput(NamedTuple):
    verts: torch.Tensor       # (B, 778, 3) metres
    joints: torch.Tensor      # (B, 21, 3) metres, JOINT_NAMES order
    # (B, 16, 4, 4) rest-pose -> posed transform of each MANO joint; None unless asked for
    transforms: torch.Tensor | None


def _as_slice(index: list[int]) -> slice | list[int]:
    """An index list as a slice when it is evenly spaced (a view instead of a copy), else itself."""
    step = index[1] - index[0] if len(index) > 1 else 1
    if step > 0 and index == list(range(index[0], index[-1] + 1, step)):
        return slice(index[0], index[-1] + 1, step)
    return index


class ManoLayer(nn.Module):
    """Batched MANO: pose (B, 48) axis-angle and shape (B, 10) -> vertices and 21 joints, metres.

    Args:
        model_path: a MANO ``.pkl`` file or a folder holding ``MANO_RIGHT.pkl``/``MANO_LEFT.pkl``
            (a config's ``mano_path``); None means :data:`paths.DEFAULT_MANO_DIR`. Without a MANO
            file there, the built-in hand model.
        side: 'right' or 'left'.
        use_pca: pose is (B, 3 + num_pca_comps): global rotation + PCA coefficients of the fingers.
        num_pca_comps: number of PCA components (1-45) when ``use_pca``.
        flat_hand_mean: if False (the default, as HandOccNet-format annotations assume), finger
            poses are relative to the model's ``hands_mean``; if True, to the flat hand.
        dtype: dtype of the model arrays and of the computation. Pass torch.float64 for full
            double precision (``.double()`` on a float32 layer keeps the float32-rounded arrays).
        fingertips: which vertices are the five fingertip joints, a key of :data:`FINGERTIPS`
            ('manopth', or 'ho3d' for HO3D's annotations).

    The arrays are buffers, so ``.to(device)`` works as for any module; inputs are cast to their
    dtype.
    """

    def __init__(self, model_path: str | Path | None = None, side: str = 'right',
                 use_pca: bool = False, num_pca_comps: int = 45, flat_hand_mean: bool = False,
                 dtype: torch.dtype = torch.float32, fingertips: str = 'manopth'):
        super().__init__()
        if fingertips not in FINGERTIPS:
            raise ValueError(f"fingertips must be one of {', '.join(FINGERTIPS)}, got {fingertips!r}")
        model = load_hand_model(model_path, side)
        m = model.arrays
        self.side, self.use_pca, self.flat_hand_mean = side, use_pca, flat_hand_mean
        self.fingertips = fingertips
        self.model_kind, self.model_source, self.model_id = model.kind, model.source, model.model_id
        n_pose = m['hands_components'].shape[0]
        if use_pca and not 1 <= num_pca_comps <= n_pose:
            raise ValueError(f'num_pca_comps must be in 1..{n_pose}, got {num_pca_comps}')
        self.num_pca_comps = num_pca_comps if use_pca else n_pose

        parents = m['kintree_table'][0].astype(np.int64)
        parents[0] = -1
        self.parents = parents.tolist()
        self.num_verts, self.num_betas = m['v_template'].shape[0], m['shapedirs'].shape[2]
        self.num_mano_joints = len(self.parents)

        def buf(name: str, value: np.ndarray, dtype: torch.dtype = dtype) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype), persistent=False)

        v, jreg = m['v_template'], m['J_regressor']
        buf('v_template', v)                                                   # (V, 3)
        # The forward pass works on vertices in planar layout (B, 3, V): x, y, z rows of V values
        # each, so that skinning is a few long element-wise passes instead of V tiny 3x3 products.
        # Template, shape and pose blend shapes are one matrix: [1, betas, pose feature] @ blend_dirs
        # (row 0, whose coefficient is 1, is the template).
        def planar(dirs: np.ndarray) -> np.ndarray:                            # (V, 3, K) -> (K, 3V)
            return np.asarray(dirs).transpose(2, 1, 0).reshape(dirs.shape[2], -1)

        buf('blend_dirs', np.concatenate([np.asarray(v).T.reshape(1, -1), planar(m['shapedirs']),
                                          planar(m['posedirs'])]))                # (1+S+9(J-1), 3V)
        buf('weights', m['weights'])                                           # (V, J)
        buf('hands_components', m['hands_components'][:self.num_pca_comps])   # (C, 45)
        mean = np.zeros(n_pose) if flat_hand_mean else m['hands_mean']
        buf('hands_mean', mean)                                                # (45,)
        buf('faces', m['f'].astype(np.int64), dtype=torch.long)                # (F, 3)
        buf('homogeneous_row', np.array([0.0, 0.0, 0.0, 1.0]))                 # (4,)
        # The kinematic tree by depth: joints of one level depend only on earlier levels. The chain
        # runs in level order; skinning weights and the joint order are permuted to match, so only
        # the returned transforms go back to MANO's joint order.
        depth = [0] * len(parents)
        for j in range(1, len(parents)):
            depth[j] = depth[parents[j]] + 1
        levels = [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]
        order = [j for level in levels for j in level]                          # level order -> joint id
        # Per level after the first: its positions in level order, and where each joint's parent
        # sits in the level before it (None: all share one parent), as slices where evenly spaced.
        self.level_steps, start = [], len(levels[0])
        for prev, level in zip(levels, levels[1:]):
            slots = [prev.index(parents[j]) for j in level]
            self.level_steps.append((slice(start, start + len(level)),
                                     None if len(prev) == 1 else _as_slice(slots)))
            start += len(level)
        self.num_roots = len(levels[0])
        buf('level_order', np.array(order), dtype=torch.long)
        buf('level_order_inv', np.argsort(order), dtype=torch.long)
        buf('weights_t', np.ascontiguousarray(m['weights'][:, order].T))        # (J, V), level order
        # Rest joints and each joint's offset from its parent (the root's: from the origin), level
        # order, are linear in the shape: [1, betas] @ joint_dirs gives both, (B, 2 * 3J), in one GEMM.
        parent_of = np.eye(len(parents))[np.maximum(parents, 0)] * (parents >= 0)[:, None]  # (J, J)
        j_dirs = np.concatenate([(jreg @ v)[None], np.einsum('jv,vcs->sjc', jreg, m['shapedirs'])])
        offset_dirs = np.einsum('ij,sjc->sic', np.eye(len(parents)) - parent_of, j_dirs)
        buf('joint_dirs', np.concatenate([j_dirs[:, order], offset_dirs[:, order]], axis=1
                                         ).reshape(1 + self.num_betas, -1))      # (1+S, 2*3J)
        # 21 joints from [16 posed joints in level order, 5 fingertip vertices]
        buf('tip_index', np.array(FINGERTIPS[fingertips]), dtype=torch.long)
        buf('joint_order', np.array([order.index(j) if j < len(parents) else j for j in MANO_TO_JOINTS]),
            dtype=torch.long)

    @property
    def pose_dim(self) -> int:
        return 3 + self.num_pca_comps

    def pose_to_rotmat(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, pose_dim) axis-angle (or PCA) pose -> (B, 16, 3, 3) rotations, hands_mean included."""
        fingers = pose[:, 3:] @ self.hands_components if self.use_pca else pose[:, 3:]
        full = torch.cat([pose[:, :3], fingers + self.hands_mean], dim=1)
        return axis_angle_to_matrix(full.view(pose.shape[0], -1, 3))

    def rotmat_to_pose(self, rotmat: torch.Tensor) -> torch.Tensor:
        """(B, 16, 3, 3) rotations -> (B, 48) axis-angle pose relative to hands_mean (the inverse
        of :meth:`pose_to_rotmat` without PCA)."""
        aa = matrix_to_axis_angle(rotmat).reshape(rotmat.shape[0], -1)
        return torch.cat([aa[:, :3], aa[:, 3:] - self.hands_mean], dim=1)

    def forward(self, pose: torch.Tensor, shape: torch.Tensor,
                trans: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """pose (B, 48) or (B, 3 + num_pca_comps), shape (B, 10), trans (B, 3) or None ->
        verts (B, 778, 3), joints (B, 21, 3), metres."""
        out = self._forward_pose(pose, shape, trans, with_transforms=False)
        return out.verts, out.joints

    def forward_full(self, pose: torch.Tensor, shape: torch.Tensor,
                     trans: torch.Tensor | None = None) -> ManoOutput:
        """As :meth:`forward`, also returning the 16 joint transforms."""
        return self._forward_pose(pose, shape, trans, with_transforms=True)

    def _forward_pose(self, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor | None,
                      with_transforms: bool) -> ManoOutput:
        self._check_inputs(pose, shape, trans)
        rotmat = self.pose_to_rotmat(pose.to(self.v_template.dtype))
        return self.forward_rotmat(rotmat, shape, trans, with_transforms=with_transforms)

    def forward_rotmat(self, rotmat: torch.Tensor, shape: torch.Tensor,
                       trans: torch.Tensor | None = None, with_transforms: bool = False) -> ManoOutput:
        """rotmat (B, 16, 3, 3) full joint rotations (hands_mean already in), shape (B, 10),
        trans (B, 3) or None -> :class:`ManoOutput` (its ``transforms`` only ``with_transforms``)."""
        dtype = self.v_template.dtype
        rotmat, shape = rotmat.to(dtype), shape.to(dtype)
        b, nv, nj = rotmat.shape[0], self.num_verts, self.num_mano_joints
        if rotmat.shape[1:] != (nj, 3, 3) or shape.shape != (b, self.num_betas):
            raise ValueError(f'rotmat must have shape (B, {nj}, 3, 3) and shape (B, {self.num_betas}),'
                             f' got {tuple(rotmat.shape)} and {tuple(shape.shape)}')

        eye = torch.eye(3, dtype=dtype, device=rotmat.device)
        pose_feature = (rotmat[:, 1:] - eye).reshape(b, -1)                            # (B, 9(J-1))
        coeffs = torch.cat([shape.new_ones(b, 1), shape, pose_feature], dim=1)          # (B, 1+S+9(J-1))
        v_posed = (coeffs @ self.blend_dirs).view(b, 3, nv)                            # (B, 3, V)
        joint_rest = (coeffs[:, :1 + self.num_betas] @ self.joint_dirs).view(b, 2, nj, 3)
        j_rest, offsets = joint_rest[:, 0], joint_rest[:, 1]                 # (B, J, 3) each, level order

        glob = self._chain(rotmat[:, self.level_order], offsets)                       # (B, J, 4, 4)
        rot_g, pos_g = glob[:, :, :3, :3], glob[:, :, :3, 3]
        # Skinning transform of joint k: x -> R_k (x - J_k) + P_k
        t_skin = pos_g - (rot_g @ j_rest.unsqueeze(-1)).squeeze(-1)                    # (B, J, 3)
        skin = torch.cat([rot_g, t_skin.unsqueeze(-1)], dim=3)                          # (B, J, 3, 4)
        # Columns of R_k, then its translation: (B, 12, J) rows c0x c0y c0z c1x ... tx ty tz.
        per_joint = skin.transpose(2, 3).reshape(b, nj, 12).transpose(1, 2).contiguous()  # one GEMM below
        verts = v_posed.new_empty(b, nv, 3)                                            # (B, V, 3)
        for i, n in self._chunks(b, rotmat.device):  # each chunk lands while still in cache
            verts[i:i + n].transpose(1, 2).copy_(self._skin(per_joint[i:i + n], v_posed[i:i + n]))

        joints = torch.cat([pos_g, verts[:, self.tip_index]], dim=1)[:, self.joint_order]
        if trans is not None:
            trans = trans.to(dtype).unsqueeze(1)
            verts, joints = verts + trans, joints + trans
        if not with_transforms:
            return ManoOutput(verts, joints, None)
        if trans is not None:
            skin = skin + F.pad(trans.unsqueeze(-1), (3, 0))
        transforms = torch.cat([skin, self.homogeneous_row.expand(b, nj, 1, 4)], dim=2)
        return ManoOutput(verts, joints, transforms[:, self.level_order_inv])

    # Batch items skinned together on the CPU: the (n, 12, V) blended transforms then stay in cache.
    CPU_SKIN_CHUNK = 128

    def _chunks(self, b: int, device: torch.device) -> list[tuple[int, int]]:
        step = self.CPU_SKIN_CHUNK if device.type == 'cpu' else b
        return [(i, min(step, b - i)) for i in range(0, b, step)]

    def _skin(self, per_joint: torch.Tensor, v_posed: torch.Tensor) -> torch.Tensor:
        """Linear blend skinning: per_joint (n, 12, J) joint transforms (columns of R, then t; level
        order), v_posed (n, 3, V) planar -> (n, 3, V) skinned vertices, planar."""
        blended = per_joint @ self.weights_t                                            # (n, 12, V)
        out = torch.addcmul(blended[:, 9:12], blended[:, 0:3], v_posed[:, 0:1])
        out = out.addcmul(blended[:, 3:6], v_posed[:, 1:2])
        return out.addcmul(blended[:, 6:9], v_posed[:, 2:3])

    def _chain(self, rotmat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Global transform of every joint, one kinematic-tree level at a time.

        rotmat (B, J, 3, 3) local rotations, offsets (B, J, 3) rest offsets from the parent joint
        (the root's from the origin), both in level order -> (B, J, 4, 4) posed transforms (global
        rotation, posed joint position), level order.
        """
        b, nj = rotmat.shape[:2]
        local = torch.cat([torch.cat([rotmat, offsets.unsqueeze(-1)], dim=3),
                           self.homogeneous_row.expand(b, nj, 1, 4)], dim=2)
        glob = [local[:, :self.num_roots]]
        for level, slots in self.level_steps:
            parent = glob[-1] if slots is None else glob[-1][:, slots]
            glob.append(parent @ local[:, level])
        return torch.cat(glob, dim=1)

    def _check_inputs(self, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor | None) -> None:
        b = pose.shape[0] if pose.dim() == 2 else 'B'
        if pose.dim() != 2 or pose.shape[1] != self.pose_dim:
            raise ValueError(f'pose must have shape (B, {self.pose_dim}), got {tuple(pose.shape)}')
        if shape.dim() != 2 or shape.shape != (b, self.num_betas):
            raise ValueError(f'shape must have shape ({b}, {self.num_betas}), got {tuple(shape.shape)}')
        if trans is not None and (trans.dim() != 2 or trans.shape != (b, 3)):
            raise ValueError(f'trans must have shape ({b}, 3), got {tuple(trans.shape)}')
