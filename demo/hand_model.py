"""Render the hand model in use (MANO when its file is found, else the built-in hand) in a few
poses into one PNG grid.

    python demo/hand_model.py --out asset/builtin_hand.png
    python demo/hand_model.py --mano-path /path/to/mano/models --side left --out left.png

Poses are built from the model's own rest joints (flexion about each bone's axis, toward the
palm; the thumb placed by a small inverse-kinematics fit of its tip), so they mean the same for
MANO and for the built-in hand; the PCA grasp uses the model's ``hands_components``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
from typing import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from errors import UserError, run_cli  # noqa: E402
from utils.mano import SIDES, HandModel, ManoLayer, load_hand_model  # noqa: E402
from builtin_hand.anatomy import FINGER_JOINTS  # noqa: E402
from builtin_hand.rig import OPPOSED_RING  # noqa: E402
from utils.render import MeshRenderer, RenderMesh  # noqa: E402
from utils.transforms import intrinsics  # noqa: E402

TILE = 400            # pixels per tile
DISTANCE = 0.45       # metres from the camera to the hand's centre
SKIN = (0.86, 0.64, 0.52, 1.0)
DIGITS = FINGER_JOINTS   # MANO's joint numbers of each digit's three joints
SPREAD = {'index': 1.0, 'middle': 0.1, 'ring': -0.7, 'pinky': -1.4}   # toward the thumb: +


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


class HandFrame:
    """Directions of a hand model at rest, from its joints (16, 3): ``distal`` (wrist to middle
    knuckle), ``radial`` (toward the thumb), ``palmar`` (out of the palm) and per-joint axes."""

    def __init__(self, joints: np.ndarray, side: str):
        self.joints = joints
        self.distal = _unit(joints[4] - joints[0])
        across = joints[1] - joints[7]                            # pinky knuckle to index knuckle
        self.radial = _unit(across - (across @ self.distal) * self.distal)
        # The palm faces radial x distal on a right hand; a left hand is its mirror image, where
        # cross products change sign.
        self.palmar = np.cross(self.radial, self.distal) * (1.0 if side == 'right' else -1.0)

    def bone(self, j: int) -> np.ndarray:
        """Unit direction of the bone that joint j moves (toward its child joint; the last joint
        of a digit continues its parent's bone). Digits are joints 1-3, 4-6, ... 13-15."""
        if j % 3:
            return _unit(self.joints[j + 1] - self.joints[j])
        return _unit(self.joints[j] - self.joints[j - 1])

    def flexion(self, j: int) -> np.ndarray:
        """Axis whose positive rotation bends joint j's bone toward the palm."""
        a = self.bone(j)
        n = _unit(self.palmar - (self.palmar @ a) * a)
        return _unit(np.cross(a, n))


def place_thumb(layer: ManoLayer, frame: HandFrame, base: np.ndarray,
                target: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """Pose ``base`` (48,) with the thumb moved so its tip reaches ``target(joints)`` (joints
    (21, 3) of the posed hand): a small inverse-kinematics fit of the thumb's CMC rotation and
    MCP/IP flexion through the layer, preferring small changes."""
    cmc, t_mcp, t_ip = DIGITS['thumb']
    axes = torch.as_tensor(np.stack([frame.flexion(t_mcp), frame.flexion(t_ip)]), dtype=torch.float32)
    base_t = torch.as_tensor(base, dtype=torch.float32)
    x = torch.zeros(5, requires_grad=True)
    opt = torch.optim.LBFGS([x], max_iter=40, line_search_fn='strong_wolfe')

    def posed() -> torch.Tensor:
        p = base_t.clone()
        p[3 * cmc:3 * cmc + 3] = p[3 * cmc:3 * cmc + 3] + x[:3]
        p[3 * t_mcp:3 * t_mcp + 3] = p[3 * t_mcp:3 * t_mcp + 3] + axes[0] * x[3]
        p[3 * t_ip:3 * t_ip + 3] = p[3 * t_ip:3 * t_ip + 3] + axes[1] * x[4]
        return p

    def loss() -> torch.Tensor:
        opt.zero_grad()
        _, joints = layer(posed()[None], torch.zeros(1, layer.num_betas))
        value = ((joints[0, 4] - target(joints[0])) ** 2).sum() / 1e-4 + 0.05 * (x ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    return posed().detach().numpy()


def named_poses(layer: ManoLayer, model: HandModel, frame: HandFrame) -> list[tuple[str, np.ndarray, str]]:
    """(name, (48,) axis-angle pose with the flat hand as zero, view) for each picture."""
    mean, components = model.arrays['hands_mean'], model.arrays['hands_components']

    def pose(rot: dict[int, np.ndarray], base: np.ndarray | None = None) -> np.ndarray:
        p = np.concatenate([np.zeros(3), np.zeros(45) if base is None else base])
        for j, v in rot.items():
            p[3 * j:3 * j + 3] += v
        return p

    def flex(angles: tuple[float, float, float], names=('index', 'middle', 'ring', 'pinky')) -> dict:
        return {j: frame.flexion(j) * a for name in names for j, a in zip(DIGITS[name], angles)}

    # Fist: the fingers curl fully; the thumb's tip lies on the middle finger's middle phalanx
    # (joints 10-11 of the 21), on its outer side.
    palmar = torch.as_tensor(frame.palmar, dtype=torch.float32)
    fist = place_thumb(layer, frame, pose(flex((1.45, 1.6, 1.0))),
                       lambda j: 0.5 * (j[10] + j[11]) + 0.012 * palmar)
    # Opposition: the thumb's tip meets the tip of the flexed ring finger (joint 16).
    opposition = place_thumb(layer, frame, pose({**flex(OPPOSED_RING, ('ring',)),
                                                 **flex((0.5, 0.7, 0.4), ('pinky',)),
                                                 **flex((0.2, 0.3, 0.15), ('index', 'middle'))}),
                             lambda j: j[16])
    # Spreading turns a finger toward the thumb side (+) or away; the thumb swings away from
    # the fingers.
    spread = {DIGITS[f][0]: _unit(np.cross(frame.bone(DIGITS[f][0]), frame.radial)) * s * 0.28
              for f, s in SPREAD.items()}
    cmc = DIGITS['thumb'][0]
    spread[cmc] = _unit(np.cross(frame.bone(cmc), -frame.distal)) * 0.35
    coeffs = np.zeros(len(components))
    coeffs[:2] = (1.5, 0.6)
    grasp = mean + coeffs @ components
    return [
        ('flat (zero pose)', pose({}), 'back'),
        ('relaxed (hands_mean)', pose({}, mean), 'back'),
        ('fist', fist, 'side'),
        ('spread', pose(spread), 'back'),
        ('thumb opposition (to ring)', opposition, 'palm'),
        ('PCA grasp (1.5, 0.6)', pose({}, grasp), 'side'),
        ('PCA grasp, palm side', pose({}, grasp), 'palm'),
    ]


def look_at(forward: np.ndarray, down: np.ndarray) -> np.ndarray:
    """(3, 3) rotation from model axes to camera axes (x right, y down, z forward)."""
    z = _unit(forward)
    y = _unit(down - (down @ z) * z)
    return np.stack([np.cross(y, z), y, z])


def render_grid(layer: ManoLayer, model: HandModel, frame: HandFrame) -> np.ndarray:
    """One tile per pose (seen from the back of the hand, the palm or the thumb side) and one
    naming the model."""
    poses = named_poses(layer, model, frame)
    batch = torch.as_tensor(np.stack([p for _, p, _ in poses]), dtype=torch.float32)
    with torch.no_grad():
        verts, _ = layer(batch, torch.zeros(len(poses), layer.num_betas))
    faces = layer.faces.numpy()
    views = {'back': look_at(frame.palmar + 0.35 * frame.distal - 0.25 * frame.radial, -frame.distal),
             'palm': look_at(-frame.palmar + 0.3 * frame.distal + 0.3 * frame.radial, -frame.distal),
             'side': look_at(-frame.radial + 0.5 * frame.palmar + 0.3 * frame.distal, -frame.distal)}
    renderer = MeshRenderer(TILE, TILE)
    K = intrinsics((TILE * DISTANCE / 0.23,) * 2, (TILE / 2, TILE / 2))
    tiles = []
    try:
        for (name, _, view), v in zip(poses, verts.numpy()):
            cam = (v - v.mean(0)) @ views[view].T + np.array([0.0, 0.0, DISTANCE])
            rgba, _ = renderer.render([RenderMesh(cam, faces, SKIN)], K, ambient=0.3,
                                      lights=[(np.array([0.4, 0.6, 1.0]), 2.6),
                                              (np.array([-0.6, -0.2, 0.7]), 1.2)])
            alpha = rgba[..., 3:4].astype(np.float32) / 255
            tiles.append(_label((rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8), [name]))
    finally:
        renderer.close()
    about = [f'{layer.side} hand', layer.model_source, layer.model_id]
    tiles.append(_label(np.full_like(tiles[0], 255), about))
    rows = [np.concatenate(tiles[i:i + 4], axis=1) for i in range(0, len(tiles), 4)]
    return np.concatenate(rows, axis=0)


def _label(tile: np.ndarray, lines: list[str]) -> np.ndarray:
    for i, text in enumerate(lines):
        cv2.putText(tile, text, (10, 24 + 26 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 40, 40), 1,
                    cv2.LINE_AA)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='output/vis/hand_model.png', help='PNG file to write')
    parser.add_argument('--mano-path', default=None,
                        help='MANO .pkl file or folder with MANO_RIGHT/LEFT.pkl (default: the reference location, '
                             'then the built-in hand)')
    parser.add_argument('--side', default='right', choices=SIDES)
    args = parser.parse_args()
    out = Path(args.out)
    if out.suffix.lower() != '.png':
        raise UserError(f'--out {out} must name a .png file')
    model = load_hand_model(args.mano_path, args.side)
    layer = ManoLayer(args.mano_path, side=args.side, flat_hand_mean=True)
    joints = model.arrays['J_regressor'] @ model.arrays['v_template']
    grid = render_grid(layer, model, HandFrame(joints, args.side))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid[..., ::-1]):
        raise UserError(f'cannot write {out}; check that the folder is writable')
    print(f'{layer.model_source} ({layer.model_id}, {args.side}) -> {out}')


if __name__ == '__main__':
    run_cli(main)
