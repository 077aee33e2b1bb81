"""Print how far HO3D's fingertip vertices are from manopth's, on your MANO model.

    python data/HO3D/fingertips.py --mano-path common/utils/manopth/mano/models

HO3D's joints were computed with a MANO whose fingertips are vertices 744, 333, 444, 555, 672
(thumb to little finger; shreyashampali/ho3d, setup_mano.py), manopth, the DexYCB toolkit and
this project's other sets use 745, 317, 444, 556, 673 (utils.mano.FINGERTIPS). How far apart
they are depends on MANO's mesh, which only the licensed MANO_RIGHT.pkl holds; this prints the
distance per finger, in millimetres, for the mean hand (mean shape) flat and in MANO's mean pose
(``hands_mean``).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from errors import run_cli  # noqa: E402
from raw_release import mano_model  # noqa: E402
from utils.mano import FINGERTIPS, ManoLayer  # noqa: E402

FINGERS = ('thumb', 'index', 'middle', 'ring', 'little')


def tip_distances(mano_path: Path) -> dict[str, np.ndarray]:
    """Per pose ('flat', 'mean pose'): (5,) distances in metres between HO3D's and manopth's
    fingertip vertices of MANO_RIGHT.pkl in ``mano_path``, mean shape."""
    mano_model(mano_path, 'right', 'this comparison', "MANO's own mesh")   # the built-in hand will not do
    out = {}
    for name, flat in (('flat', True), ('mean pose', False)):
        layer = ManoLayer(Path(mano_path) / 'MANO_RIGHT.pkl', flat_hand_mean=flat, dtype=torch.float64)
        with torch.no_grad():
            verts = layer(torch.zeros(1, 48, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64))[0][0]
        verts = verts.numpy()
        out[name] = np.linalg.norm(verts[list(FINGERTIPS['ho3d'])] - verts[list(FINGERTIPS['manopth'])], axis=1)
    return out


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mano-path', type=Path, required=True, help='the folder holding MANO_RIGHT.pkl')
    args = p.parse_args(argv)
    dist = tip_distances(args.mano_path)
    print('distance between HO3D\'s and manopth\'s fingertip vertices (mm), ' + ', '.join(FINGERS))
    for name, d in dist.items():
        print(f'{name:>10}: ' + ', '.join(f'{1000 * x:.2f}' for x in d) + f'  (mean {1000 * d.mean():.2f})')
    return dist


if __name__ == '__main__':
    run_cli(main)
