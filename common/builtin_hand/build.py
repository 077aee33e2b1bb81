"""Build the built-in procedural hand model: a right hand in the MANO file layout, made by code,
written to ``asset/builtin_hand.npz`` (which the project ships and loads at run time).

    python common/builtin_hand/build.py                  # rebuild asset/builtin_hand.npz
    python common/builtin_hand/build.py --check          # does the shipped file match this code?
    python common/builtin_hand/build.py --pickle MANO_RIGHT.pkl   # also as a MANO-format pickle

:func:`utils.mano.load_hand_model` uses the asset when no MANO file is found. It is not MANO and
is not fitted to scans; it has MANO's array names and shapes, kinematic tree, vertex and face
counts and fingertip vertex indices, so every part of the system (and outside MANO tools,
through ``--pickle``) runs unchanged. Edit the generator, then rebuild: a test regenerates the
arrays and compares them with the shipped file.

Rest frame, as in MANO's right hand: the flat hand lies in the x-z plane, the fingers point along
-x from the wrist, the thumb is on the +z side and the palm faces -y. Unlike MANO, the wrist
joint is at the origin. Wrist to middle fingertip is 0.186 m. Every joint's rest frame is the
global frame, so flexing a long finger is a positive rotation about (nearly) +z.

Construction (:func:`build_arrays`, a few seconds; modules of this package: ``anatomy``,
``surface``, ``mesh``, ``rig``):

* Surface: a signed-distance-like function (``surface.HandSurface``) of a palm slab with
  super-elliptic cross-sections, a hypothenar pad, four finger tubes with tapering elliptic
  cross-sections, knuckle bulges and rounded tips, and a three-segment thumb whose metacarpal
  blends into the palm as the thenar eminence (smooth minimum).
* Mesh: rings of vertices along a palm tube (from the 16-vertex wrist opening), along each
  finger and along the thumb. The last palm ring is the first ring of the four fingers, with one
  web quad between neighbours; the thumb tube starts from a hole cut into the palm's grid; each
  fingertip is one vertex. Every vertex is shot along a ray from its bone's axis onto the
  surface, then the mesh is relaxed (Laplacian steps, each followed by projection back onto the
  surface). The result is a closed genus-0 surface except one 16-vertex boundary loop at the
  wrist: 778 vertices, 1538 triangles. Vertices are ordered palm, index, middle, ring, pinky,
  thumb (each base to tip), with the fingertips moved to MANO's indices 745 (thumb), 317 (index),
  444 (middle), 556 (ring), 673 (pinky).
* ``weights``: each vertex follows the bone it lies along, handing over smoothly across each
  joint (palm to MCP across the knuckle line, palm to the thumb's CMC over the thenar), then the
  weights are diffused over the mesh.
* ``J_regressor``: each joint is a non-negative, affine combination of the vertices in a slab of
  the mesh across its bone, reproducing the joint (``J_regressor @ v_template == J`` to 1e-8 m).
* ``shapedirs``: the hand rebuilt with one anatomical parameter of :data:`anatomy.SHAPE_DIRECTIONS` moved
  by one population standard deviation, minus the default hand; made orthogonal by Gram-Schmidt
  in that order (so a later direction is its name's change with what earlier directions explain
  removed). ``betas`` in [-2, 2] give plausible adult hands (wrist to middle fingertip
  0.164-0.208 m along beta 0).
* ``posedirs`` are zero: plain linear blend skinning, no pose correctives.
* ``hands_mean``: a relaxed hand: fingers flexed a little more toward the pinky, slightly spread,
  the thumb a quarter of the way to opposition.
* ``hands_components``: 45 orthonormal rows. The first ten are hand synergies (Gram-Schmidt in
  this order, so each is "mostly" what its name says; + is the direction named):

  0. close: all finger joints flex, the thumb comes along (from flat to a firm grasp)
  1. thumb opposition: the thumb lifts off the palm and swings across until its pad meets the
     pad of the (flexed) ring finger
  2. spread: the fingers fan out, the thumb abducts
  3. index flexion
  4. ring and pinky flexion
  5. knuckle (MCP) flexion with straight fingers, versus hook (PIP/DIP) flexion
  6. thumb curl (MCP and IP flexion)
  7. thumb roll: the thumb turns about its own axis, its pad toward the fingers
  8. thumb palmar abduction (lifts the thumb off the palm plane)
  9. distal (DIP) flexion of the four fingers

  Rows 10-44 complete the basis (single-joint directions). :data:`anatomy.PCA_STD` holds the natural
  standard deviation of each coefficient, so that ``hands_mean + (clip(N(0, 1), -2, 2) * PCA_STD)
  @ hands_components`` gives natural hands, from a flat hand to a firm grasp, thumb anywhere
  from abducted to opposed; rows 10-44 add only a few degrees. About one such sample in six
  has a small interpenetration (the thumb pressing into a finger, touching fingers); check
  them if that matters.

Floating-point arrays are rounded to 12 decimals, so that machines whose arithmetic differs in
the last bits build the same file (and the same hand model id in snapshots).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import pickle  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from builtin_hand.anatomy import NUM_JOINTS, PARENTS, SHAPE_DIRECTIONS, TIP_VERTS, HandParams, make_skeleton  # noqa: E402
from builtin_hand.mesh import connect, layout, make_topology, neighbours, place, relax, thumb_angle, thumb_frame  # noqa: E402
from builtin_hand.rig import PoseSpace, joint_regressor, pose_basis, skin_weights  # noqa: E402
from builtin_hand.surface import HandSurface  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from paths import BUILTIN_HAND_FILE  # noqa: E402
from utils.files import write_atomically  # noqa: E402
from utils.mano import NUM_VERTS, load_builtin_arrays  # noqa: E402


class Builder:
    """What all shapes share: the topology and faces, the adjacency, the default skeleton."""

    def __init__(self):
        self.skel = make_skeleton(HandParams())
        surf = HandSurface(self.skel)
        topo = make_topology(self.skel)
        rough = place(layout(self.skel, topo, surf), surf)
        # The hole around the thumb's root turns counter-clockwise about the thumb, and the
        # thumb's first rings start at the angle of the hole's first vertex.
        tau = 0.5 * self.skel.digits['thumb'][0].length
        _, a, _ = thumb_frame(self.skel.digits['thumb'], np.array([tau]))
        loop = rough[topo.hole] - rough[topo.hole].mean(0)
        if np.cross(loop, np.roll(loop, -1, 0)).sum(0) @ a[0] < 0:
            topo.hole = topo.hole[::-1].copy()
        topo.thumb_phase = float(thumb_angle(self.skel, rough[topo.hole[:1]], tau)[0])
        topo.faces = connect(topo, place(layout(self.skel, topo, surf), surf), self.skel, surf)
        self.topo = topo
        self.adj = neighbours(topo.faces, topo.num_verts)
        self.fixed = np.zeros(topo.num_verts, bool)
        self.fixed[topo.palm_rows[0]] = True
        self.fixed[list(topo.tips.values())] = True

    def vertices(self, params: HandParams) -> tuple[np.ndarray, np.ndarray]:
        """(V, 3) vertices (construction order) of the hand with ``params``, and each vertex's
        distance along its digit (NaN on the palm)."""
        skel = make_skeleton(params)
        surf = HandSurface(skel)
        rays = layout(skel, self.topo, surf)
        return relax(place(rays, surf), self.adj, self.fixed, surf), rays.along

    def file_order(self) -> np.ndarray:
        """Construction ids in file order: construction order, the fingertips moved to MANO's
        fingertip indices."""
        tip_at = {TIP_VERTS[name]: vid for name, vid in self.topo.tips.items()}
        rest = iter(sorted(set(range(self.topo.num_verts)) - set(tip_at.values())))
        return np.array([tip_at[i] if i in tip_at else next(rest) for i in range(self.topo.num_verts)])


def build_arrays() -> dict[str, np.ndarray]:
    """All arrays of the built-in hand under MANO's key names, plus ``J``, the (16, 3) rest joints
    (see the module docstring)."""
    b = Builder()
    v0, along = b.vertices(HandParams())
    dirs: list[np.ndarray] = []
    for _, field, sigma in SHAPE_DIRECTIONS:
        d = (b.vertices(replace(HandParams(), **{field: 1.0 + sigma}))[0] - v0).ravel()
        for prev in dirs:
            d = d - (d @ prev) / (prev @ prev) * prev
        dirs.append(d)
    order = b.file_order()
    poses = PoseSpace(b.skel)
    parents = np.array(PARENTS, dtype=np.int64)
    parents[0] = 4294967295   # MANO's "no parent"
    arrays = {
        'v_template': v0[order],
        'f': np.argsort(order)[b.topo.faces].astype(np.uint32),
        'shapedirs': np.stack(dirs, 1).reshape(-1, 3, len(dirs))[order],
        'posedirs': np.zeros((NUM_VERTS, 3, 9 * (NUM_JOINTS - 1))),
        'J_regressor': joint_regressor(v0, b.skel)[:, order],
        'weights': skin_weights(v0, along, b.skel, b.topo, b.adj)[order],
        'kintree_table': np.stack([parents, np.arange(NUM_JOINTS, dtype=np.int64)]),
        'hands_components': pose_basis(poses.synergies()),
        'hands_mean': poses.mean(),
        'J': b.skel.joints.copy(),
    }
    # Rounded, so that machines whose floating-point details differ in the last bits build the
    # same arrays (and the same model hash in checkpoints).
    return {k: np.round(v, 12) if v.dtype.kind == 'f' else v for k, v in arrays.items()}


def write_asset(arrays: dict[str, np.ndarray], path: Path) -> None:
    """The arrays as a compressed ``.npz`` file, written atomically."""
    write_atomically(Path(path), lambda tmp: np.savez_compressed(tmp, **arrays))


def write_mano_pickle(arrays: dict[str, np.ndarray], path: Path) -> None:
    """The arrays as a MANO-format pickle (protocol 2) that MANO tools can read: plain numpy
    arrays, except ``J_regressor``, a ``scipy.sparse`` CSC matrix as in the official files
    (manopth calls its ``toarray()``; smplx and :mod:`utils.mano` read either)."""
    from scipy import sparse
    model = {**arrays, 'J_regressor': sparse.csc_matrix(arrays['J_regressor']),
             'bs_style': 'lbs', 'bs_type': 'lrotmin'}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as fh:
        pickle.dump(model, fh, protocol=2)


def differences(built: dict[str, np.ndarray], shipped: dict[str, np.ndarray]) -> list[str]:
    """The keys whose arrays differ between two versions of the model (empty: the same)."""
    keys = sorted(set(built) | set(shipped))
    return [k for k in keys if k not in built or k not in shipped or built[k].shape != shipped[k].shape
            or built[k].dtype != shipped[k].dtype or not np.array_equal(built[k], shipped[k])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=BUILTIN_HAND_FILE, help=f'the .npz to write (default {BUILTIN_HAND_FILE})')
    parser.add_argument('--check', action='store_true', help='only compare a fresh build with --out; exit 1 if they differ')
    parser.add_argument('--pickle', type=Path, metavar='PKL', help='also write the model as a MANO-format pickle')
    args = parser.parse_args(argv)
    arrays = build_arrays()
    if args.check:
        if not args.out.is_file():
            raise UserError(f'{args.out} does not exist; build it with python common/builtin_hand/build.py')
        differ = differences(arrays, load_builtin_arrays(args.out))
        print(f'{args.out}: ' + (f'differs from this code in {", ".join(differ)}; rebuild it' if differ
                                 else 'the same arrays as this code builds'))
        sys.exit(1 if differ else 0)
    write_asset(arrays, args.out)
    print(f'wrote {args.out} ({args.out.stat().st_size / 1024:.0f} kB)')
    if args.pickle:
        write_mano_pickle(arrays, args.pickle)
        print(f'wrote {args.pickle}')


if __name__ == '__main__':
    run_cli(main)
