"""Reconstruct the hand in an image, or in every image of a folder, with a trained InteractHand.

    python demo/demo.py --input asset/sample_input.jpg --bbox 208 240 117 180 --fit
    python demo/demo.py --input photos/ --gpu cpu --out output/vis/photos
    python demo/demo.py --input img.jpg --bbox 200 220 130 190 --checkpoint output/model_dump/snapshot_80.pth.tar

For each image NAME.ext, in --out (default output/vis/demo/):
  NAME_mesh.obj        the hand mesh (778 vertices, 1538 faces), camera axes (x right, y down,
                       z forward), metres: with --fit at the fitted translation, else wrist-relative
                       with the wrist at (0, 0, 0.5 m); a comment line in the file says which
  NAME_overlay.png     the mesh rendered shaded and semi-transparent over the image
  NAME_keypoints.png   the 21 predicted 2D joints as a skeleton (a colour per finger) and the box
  NAME_seg.png         the predicted hand (green) and object (magenta) pixels over the image
  NAME_result.json     MANO pose and shape, 3D joints (wrist-relative; with --fit also in the
                       camera), 2D joints in image pixels, the box and how it was found, the hand
                       model, the checkpoint; with --fit the translation and reprojection error

Finding the hand. With --bbox (a tight box around the hand) the crop is that box grown to a
square and enlarged 1.5x, as the data pipeline crops HO3D's evaluation boxes. Without it, a
first pass runs on the whole image (padded to a square, resized to the network's input); the box
of the predicted hand pixels (the largest region and every region at least a quarter its size),
enlarged the same way, gives the crop of the real pass. When no hand pixel is found (or the model
has no segmentation head), the first pass's 2D joints give the box instead.

Placing the hand. The network predicts the hand relative to its wrist (metres) and its 2D joints
(pixels). With --fit, a pinhole camera (focal --focal, default the image's larger side, principal
point the image centre) and the translation that best projects the 3D joints onto the 2D joints,
solved in closed form (utils/fit.py, which also explains why the scale cannot be fitted too); the
reprojection error is reported. Without --fit the overlay uses a weak-perspective placement (a
scale and a 2D shift, fitted to the 2D joints in closed form), which needs no focal length; it is
rendered through a pinhole camera 5 m away, where the hand's own depth changes its projected
size by at most 2 %.

The network was trained on right hands (the datasets mirror left hands); mirror the image of a
left hand before passing it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from base import list_snapshots, load_checkpoint, load_network, model_config_from  # noqa: E402
from config import QUICKSTART_DIR, add_common_args, apply_args, cfg, parse_gpu, select_device  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from logger import setup_logging  # noqa: E402
from model import Model, get_model  # noqa: E402
from utils.files import rounded  # noqa: E402
from utils.fit import (FitError, default_focal, fit_translation, fit_weak_perspective, image_center,  # noqa: E402
                       reprojection_error)
from utils.mano import JOINT_NAMES  # noqa: E402
from utils.preprocessing import (HAND, OBJECT, SEG_STRIDE, AugParams, bbox_from_joints,  # noqa: E402
                                 crop_affine, label_affine, load_img, process_bbox, warp_image,
                                 whole_image_box)
from utils.render import MeshRenderer, intrinsics, overlay_mesh  # noqa: E402
from utils.transforms import apply_affine  # noqa: E402
from utils.vis import colour_labels, draw_box, draw_skeleton, put_label  # noqa: E402

log = logging.getLogger('interacthand')

BOX_EXPANSION = 1.5        # the crop is the hand box enlarged 1.5x, as in the data pipeline
NOMINAL_DEPTH = 0.5        # metres: where the wrist of an unfitted mesh is put in the OBJ file
WEAK_PERSPECTIVE_DEPTH = 5.0  # metres: camera distance that renders the weak-perspective placement
MIN_REGION_FRACTION = 0.25  # hand regions smaller than this fraction of the largest are ignored
PLAUSIBLE_BETA = 3.0       # |shape parameter| beyond this is far outside the range hand models cover
MIN_SIDE = 32               # pixels: smaller images hold too little of a hand to crop
MIN_BOX = 4                 # pixels: the smallest --bbox width or height
BOX_SOURCES = {'given': '--bbox', 'mask': 'the predicted hand mask', 'joints': 'the predicted 2D joints'}


# ----------------------------------------------------------------------------------------------
# The network on one crop

@dataclass
class Prediction:
    """One network pass, mapped back to the image (V = 778 vertices, J = 21 joints)."""
    joints_rel: np.ndarray        # (J, 3) metres, wrist at the origin, camera axes
    verts_rel: np.ndarray         # (V, 3) metres, same frame
    joints_2d: np.ndarray         # (J, 2) image pixels
    pose: np.ndarray              # (48,) axis-angle, fingers relative to hands_mean
    shape: np.ndarray             # (10,)
    labels: np.ndarray | None     # (H, W) image labels 0 background, 1 hand, 2 object; None: no seg head


class HandReconstructor:
    """A trained network and the crops it is run on."""

    def __init__(self, model: Model, device: torch.device):
        self.model, self.device = model, device
        self.size = model.img_size

    @torch.no_grad()
    def predict(self, img: np.ndarray, crop_box: np.ndarray) -> Prediction:
        """img (H, W, 3) uint8 RGB; crop_box (4,) x, y, w, h pixels (square) -> prediction."""
        s = self.size
        img2crop = crop_affine(crop_box, s, AugParams())
        crop = warp_image(img, img2crop, s).astype(np.float32) / 255.0
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].to(self.device)
        out = {k: v[0].float().cpu().numpy() for k, v in self.model({'img': x}, {}, {}, 'test').items()}
        labels = None
        if 'seg' in out:
            labels = seg_to_image(out['seg'], img2crop, img.shape[:2])
        joints_2d = apply_affine(out['joints_coord_img'] * s, np.linalg.inv(img2crop))
        return Prediction(out['joints_coord_cam'].astype(np.float64), out['mesh_coord_cam'].astype(np.float64),
                          joints_2d, out['mano_pose'], out['mano_shape'], labels)

    def find_box(self, img: np.ndarray) -> tuple[np.ndarray, str]:
        """The first pass over the whole image -> tight hand box (4,) and its source ('mask' or
        'joints', see BOX_SOURCES)."""
        h, w = img.shape[:2]
        first = self.predict(img, whole_image_box(w, h))
        box = box_from_labels(first.labels) if first.labels is not None else None
        if box is not None:
            return box, 'mask'
        return bbox_from_joints(first.joints_2d, expansion=1.0), 'joints'


def seg_to_image(probs: np.ndarray, img2crop: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """probs (3, S/4, S/4) class probabilities of a crop -> (H, W) uint8 labels of the image
    (bilinear in the probabilities, then the most likely class; background outside the crop)."""
    h, w = image_shape
    img2small = label_affine(img2crop, (h, w), (h, w), SEG_STRIDE)
    warped = cv2.warpAffine(np.ascontiguousarray(probs.transpose(1, 2, 0), dtype=np.float32),
                            img2small[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.argmax(-1).astype(np.uint8)


def box_from_labels(labels: np.ndarray) -> np.ndarray | None:
    """Tight box (4,) x, y, w, h around the centres of the hand pixels of labels (H, W): those of
    the largest connected hand region and of every region at least MIN_REGION_FRACTION of its
    size (an object across the hand splits it; specks are noise). None when there is no hand
    pixel, or they lie on one row or column."""
    count, regions, stats, _ = cv2.connectedComponentsWithStats((labels == HAND).astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= MIN_REGION_FRACTION * areas.max())
    ys, xs = np.nonzero(np.isin(regions, keep))
    box = np.array([xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()], dtype=np.float32)
    return box if box[2] > 0 and box[3] > 0 else None


# ----------------------------------------------------------------------------------------------
# Inputs

def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a file that is not a readable image, or is smaller than
    :data:`MIN_SIDE` pixels on a side, is a UserError naming it."""
    try:
        img = load_img(path)
    except UserError:
        raise UserError(f'{path} cannot be read as an image (not an image file, or a corrupt one); '
                        'pass a JPEG or PNG image') from None
    if min(img.shape[:2]) < MIN_SIDE:
        raise UserError(f'{path} is only {img.shape[1]}x{img.shape[0]} pixels; pass an image at least '
                        f'{MIN_SIDE} pixels on each side')
    return img


def checked_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """The given box x, y, w, h clipped to the image, with a warning when it sticks out; a box
    with nothing inside the image is a UserError."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, width - 1.0), min(y + h, height - 1.0)
    if x2 <= x1 or y2 <= y1:
        raise UserError(f'--bbox {x:g} {y:g} {w:g} {h:g} lies entirely outside the {width}x{height} '
                        'image; give x y w h of a box around the hand, in pixels')
    if x < 0 or y < 0 or x + w > width or y + h > height:
        log.warning(f'--bbox {x:g} {y:g} {w:g} {h:g} sticks out of the {width}x{height} image; '
                    f'using the part inside it: {x1:g} {y1:g} {x2 - x1:g} {y2 - y1:g}')
        return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)
    return np.array([x, y, w, h], dtype=np.float32)


def list_inputs(path: Path) -> list[Path]:
    """The file, or the files of the folder (not its sub-folders or hidden files), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f'--input {path} does not exist; give an image file or a folder of images')
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith('.'))
    if not files:
        raise UserError(f'the folder {path} has no files; give a folder of images')
    return files


def output_names(files: list[Path]) -> dict[Path, str]:
    """Output name of each input: its stem, or stem_ext where two inputs share a stem."""
    stems = Counter(p.stem for p in files)
    return {p: p.stem if stems[p.stem] == 1 else f'{p.stem}_{p.suffix.lstrip(".")}' for p in files}


def quickstart_model_dir() -> Path:
    """Where ``make quickstart`` writes its snapshots (whatever --set output_dir says)."""
    return QUICKSTART_DIR / 'model_dump'


def find_checkpoint(explicit: Path | None) -> Path:
    """--checkpoint, else the newest snapshot in cfg.model_dir, else the newest of the quickstart."""
    if explicit is not None:
        return explicit   # load_checkpoint says what is wrong with it, if anything
    folders = (cfg.model_dir, quickstart_model_dir())
    for folder in folders:
        snaps = list_snapshots(folder)
        if snaps:
            return snaps[max(snaps)]
    raise UserError(f'no checkpoint found: looked for snapshot_N.pth.tar in {folders[0]} and then '
                    f'{folders[1]}; train a model (`make quickstart` makes a small one in the '
                    'second folder) or pass --checkpoint PATH')


# ----------------------------------------------------------------------------------------------
# Outputs

def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, comments: list[str]) -> None:
    """Wavefront OBJ: comment lines, verts (V, 3), faces (F, 3) 0-based (written 1-based)."""
    lines = [f'# {c}' for c in comments]
    lines += [f'v {x:.6f} {y:.6f} {z:.6f}' for x, y, z in verts]
    lines += [f'f {a + 1} {b + 1} {c + 1}' for a, b, c in faces]
    path.write_text('\n'.join(lines) + '\n')


def write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1])):
        raise UserError(f'cannot write {path}; check that --out is a writable folder')


def _error_stats(err: np.ndarray) -> dict:
    return {'mean': round(float(err.mean()), 3), 'max': round(float(err.max()), 3)}


def shape_warnings(shape: np.ndarray) -> list[str]:
    """A warning when the predicted shape parameters (10,) are implausible: an undertrained
    network often shrinks the hand with one extreme parameter, and the mesh then looks crumpled."""
    worst = float(np.abs(shape).max())
    if worst <= PLAUSIBLE_BETA:
        return []
    return [f'the predicted shape parameters reach |beta| = {worst:.1f}, far outside the usual range '
            f'(|beta| <= {PLAUSIBLE_BETA:g}); the mesh will look shrunken or distorted; the checkpoint '
            'is probably not trained enough']


@dataclass
class Placement:
    """Where the mesh goes: in the OBJ file, and through the pinhole camera K in the overlay."""
    obj_verts: np.ndarray              # (V, 3) metres, camera axes, as written to the OBJ file
    obj_note: str                      # how obj_verts are placed (a comment line of the OBJ)
    render_verts: np.ndarray | None    # (V, 3) camera coordinates for the overlay; None: no mesh
    K: np.ndarray | None               # (3, 3) intrinsics of the overlay camera
    info: dict                         # the result's 'fit' or 'placement' entry
    message: str | None = None         # a line for the console


def fitted_placement(pred: Prediction, width: int, height: int, focal: float | None) -> Placement:
    """--fit: the closed-form translation for a pinhole camera (focal, default
    utils.fit.default_focal; principal point at the image centre). When no camera in front of
    the hand explains the 2D joints, the unfitted placement, with the reason in its info."""
    f = focal if focal is not None else default_focal(width, height)
    princpt = image_center(width, height)
    info = {'focal_px': [f, f], 'princpt_px': rounded(princpt, 2),
            'focal_source': '--focal' if focal is not None else "default: the image's larger side"}
    try:
        t = fit_translation(pred.joints_rel, pred.joints_2d, f, princpt)
    except FitError as err:
        fallback = weak_perspective_placement(pred, width, height)
        fallback.info = {**info, 'failed': str(err), 'used_instead': fallback.info}
        fallback.message = '; '.join(filter(None, [f'--fit failed: {err}; the overlay and the OBJ '
                                                   'file are not fitted', fallback.message]))
        return fallback
    joints_cam = pred.joints_rel + t
    err = reprojection_error(joints_cam, pred.joints_2d, f, princpt)
    message = (f'fitted translation {rounded(t, 4)} m, reprojection error {err.mean():.2f} px mean, '
               f'{err.max():.2f} px max')
    info.update({'translation_m': rounded(t, 6), 'joints_3d_camera_m': rounded(joints_cam, 6),
                 'reprojection_error_px': {**_error_stats(err), 'per_joint': rounded(err, 3)}})
    verts = pred.verts_rel + t
    note = f'fitted translation {rounded(t, 4)} m (focal {f:g} px, principal point at the image centre)'
    return Placement(verts, note, verts, intrinsics((f, f), tuple(princpt)), info, message)


def weak_perspective_placement(pred: Prediction, width: int, height: int) -> Placement:
    """No --fit: the OBJ mesh wrist-relative at NOMINAL_DEPTH; the overlay from a weak-perspective
    fit u = s x + a, rendered by a pinhole camera WEAK_PERSPECTIVE_DEPTH away with focal s * depth,
    which projects the wrist's depth plane exactly as the weak-perspective model does."""
    scale, offset = fit_weak_perspective(pred.joints_rel, pred.joints_2d)
    err = np.linalg.norm(scale * pred.joints_rel[:, :2] + offset - pred.joints_2d, axis=1)
    info = {'model': 'weak perspective: u = s x + a', 'scale_px_per_m': round(scale, 3),
            'offset_px': rounded(offset, 3), 'error_px': _error_stats(err)}
    obj = pred.verts_rel + np.array([0.0, 0.0, NOMINAL_DEPTH])
    note = (f'root-relative mesh, the wrist put at a nominal (0, 0, {NOMINAL_DEPTH}) m; run the '
            'demo with --fit for the camera placement')
    c, d = image_center(width, height), WEAK_PERSPECTIVE_DEPTH
    if scale <= 0:
        return Placement(obj, note, None, None, info,
                         'the predicted 2D joints are a mirror image of the 3D joints (negative '
                         'weak-perspective scale); the overlay shows no mesh')
    t = np.array([*((offset - c) / scale), d])
    return Placement(obj, note, pred.verts_rel + t, intrinsics((scale * d, scale * d), tuple(c)), info)


class OverlayRenderer:
    """The mesh of a placement drawn over images; one off-screen renderer per image size."""

    def __init__(self, faces: np.ndarray):
        self.faces = faces                                          # (F, 3) 0-based
        self.renderers: dict[tuple[int, int], MeshRenderer] = {}    # by image (width, height)

    def render(self, img: np.ndarray, placement: Placement) -> np.ndarray:
        """img (H, W, 3) uint8 RGB with the mesh rendered shaded and semi-transparent over it
        (a copy of img when the placement has no mesh to show)."""
        if placement.render_verts is None:
            return img.copy()
        size = (img.shape[1], img.shape[0])
        if size not in self.renderers:
            self.renderers[size] = MeshRenderer(*size)
        return overlay_mesh(img, placement.render_verts, self.faces, placement.K, renderer=self.renderers[size])

    def close(self) -> None:
        for renderer in self.renderers.values():
            renderer.close()
        self.renderers = {}


@dataclass
class DemoSettings:
    """What stays the same over the images of one run."""
    out_dir: Path
    fit: bool
    focal: float | None
    bbox: np.ndarray | None
    checkpoint: Path
    epoch: int | None


class Demo:
    """Runs the network on images and writes the five output files of each."""

    def __init__(self, reconstructor: HandReconstructor, settings: DemoSettings):
        self.net, self.s = reconstructor, settings
        self.faces = reconstructor.model.mano_layer.faces.cpu().numpy().astype(np.int64)
        self.hand_model = reconstructor.model.hand_model_id
        self.overlays = OverlayRenderer(self.faces)

    def close(self) -> None:
        self.overlays.close()

    def run(self, path: Path, name: str, img: np.ndarray | None = None) -> dict:
        """Process one image (read from ``path`` unless given) and write NAME_* into the output
        folder; returns the content of NAME_result.json. A user mistake about this image
        (unreadable, box outside) is a UserError."""
        img = read_image(path) if img is None else img
        h, w = img.shape[:2]
        if self.s.bbox is not None:
            hand_box, source = checked_box(self.s.bbox, w, h), 'given'
        else:
            hand_box, source = self.net.find_box(img)
        crop_box = process_bbox(hand_box, w, h, 1.0, expansion=BOX_EXPANSION)
        if crop_box is None:
            raise UserError(f'{path}: the hand box found, {rounded(hand_box, 1)}, is empty or '
                            'outside the image; give one with --bbox')
        pred = self.net.predict(img, crop_box)
        tqdm.write(f"{path.name}: hand box {' '.join(f'{v:.0f}' for v in hand_box)} (x y w h) from "
                   f"{BOX_SOURCES[source]}; crop {' '.join(f'{v:.0f}' for v in crop_box)}")
        placement = (fitted_placement(pred, w, h, self.s.focal) if self.s.fit
                     else weak_perspective_placement(pred, w, h))
        if placement.message:
            tqdm.write(f'{path.name}: {placement.message}')
        warnings = shape_warnings(pred.shape)
        for warning in warnings:
            log.warning(f'{path.name}: {warning}')

        result = {
            'image': str(path), 'image_size': [w, h], 'checkpoint': str(self.s.checkpoint),
            'epoch': self.s.epoch, 'hand_model': self.hand_model,
            'box': {'hand_box': rounded(hand_box, 2), 'source': BOX_SOURCES[source],
                    'crop_box': rounded(crop_box, 2),
                    'note': f'the crop is the hand box grown to a square and enlarged {BOX_EXPANSION}x'},
            'joint_names': list(JOINT_NAMES),
            'mano_pose': rounded(pred.pose, 6), 'mano_shape': rounded(pred.shape, 6),
            'joints_3d_root_relative_m': rounded(pred.joints_rel, 6),
            'joints_2d_px': rounded(pred.joints_2d, 3),
            'fit' if self.s.fit else 'placement': placement.info,
            'mesh_obj_placement': placement.obj_note,
            'warnings': warnings,
        }
        out = self.s.out_dir
        write_obj(out / f'{name}_mesh.obj', placement.obj_verts, self.faces,
                  [f'InteractHand demo: hand mesh of {path.name} ({self.hand_model})',
                   'camera axes: x right, y down, z forward; metres',
                   f'placement: {placement.obj_note}'])
        write_png(out / f'{name}_overlay.png', self.overlays.render(img, placement))
        keypoints = draw_box(draw_skeleton(img, pred.joints_2d), hand_box, text=f'box: {BOX_SOURCES[source]}')
        write_png(out / f'{name}_keypoints.png', keypoints)
        if pred.labels is not None:
            seg = colour_labels(img, pred.labels)
            result['seg_pixels'] = {'hand': int((pred.labels == HAND).sum()),
                                    'object': int((pred.labels == OBJECT).sum())}
        else:
            seg = put_label(img, 'this model has no segmentation head (use_seg=false)', 0, 0)
        write_png(out / f'{name}_seg.png', seg)
        (out / f'{name}_result.json').write_text(json.dumps(result, indent=1) + '\n')
        return result


# ----------------------------------------------------------------------------------------------
# Command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--input', required=True, type=Path, help='an image file, or a folder of images')
    p.add_argument('--bbox', nargs=4, type=float, metavar=('X', 'Y', 'W', 'H'),
                   help='box around the hand in pixels (default: found by a first pass)')
    p.add_argument('--checkpoint', type=Path, help='snapshot to use (default: the newest in '
                   'output/model_dump/, else the newest in output/quickstart/model_dump/)')
    p.add_argument('--out', type=Path, help='output folder (default output/vis/demo/)')
    p.add_argument('--fit', action='store_true', help='place the hand in camera space (closed-form '
                   'translation fit) and report the reprojection error')
    p.add_argument('--focal', type=float, help="focal length in pixels for --fit (default: the "
                   "image's larger side)")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.bbox is not None:
        given = f'--bbox {" ".join(f"{v:g}" for v in args.bbox)}'
        if not np.all(np.isfinite(args.bbox)):
            raise UserError(f'{given}: give four finite numbers, x y w h of a box around the hand in pixels')
        if min(args.bbox[2:]) < MIN_BOX:
            raise UserError(f'{given}: the width and height must be at least {MIN_BOX} pixels '
                            '(the box is x y w h)')
    if args.focal is not None and not (np.isfinite(args.focal) and args.focal > 0):
        raise UserError(f'--focal {args.focal:g} must be a positive, finite number of pixels')
    return args


def load_model(path: Path, args: argparse.Namespace) -> tuple[HandReconstructor, int | None]:
    """The network with the snapshot's architecture (the command line wins) and weights."""
    ckpt = load_checkpoint(path)
    cfg.update(**model_config_from(ckpt))
    apply_args(args)
    device, _ = select_device(parse_gpu(args.gpu))
    model = get_model('test')
    load_network(model, ckpt, path)
    model.to(device).eval()
    epoch = ckpt.get('epoch')
    log.info(f'checkpoint {path} (epoch {epoch}), hand model {model.hand_model_id}, device {device}')
    return HandReconstructor(model, device), None if epoch is None else int(epoch)


def main(argv: list[str] | None = None) -> dict:
    """Run the demo; returns {'processed': [NAME, ...], 'skipped': {file: reason}}."""
    args = parse_args(argv)
    setup_logging()
    apply_args(args)
    files = list_inputs(args.input)
    single = args.input.is_file()
    first_img = read_image(files[0]) if single else None  # a single bad file stops before the model loads
    if single and args.bbox is not None:
        checked_box(np.array(args.bbox), first_img.shape[1], first_img.shape[0])
    checkpoint = find_checkpoint(args.checkpoint)
    reconstructor, epoch = load_model(checkpoint, args)
    if args.focal is not None and not args.fit:
        log.warning('--focal is used only with --fit; ignoring it')
    if args.bbox is None:
        log.info('no --bbox: each hand box comes from a pass over the whole image, which the network '
                 'never saw in training and which can miss the hand; pass --bbox X Y W H where you know it')
    out_dir = args.out if args.out is not None else cfg.vis_dir / 'demo'
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f'cannot create the output folder {out_dir} ({err.strerror}); pick a writable --out') from None
    demo = Demo(reconstructor, DemoSettings(out_dir, args.fit, args.focal,
                                            None if args.bbox is None else np.array(args.bbox),
                                            checkpoint, epoch))
    names = output_names(files)
    processed, skipped = [], {}
    try:
        if single:
            demo.run(files[0], names[files[0]], first_img)
            processed.append(names[files[0]])
        else:
            for path in tqdm(files, desc='demo', unit='image', dynamic_ncols=True):
                try:
                    demo.run(path, names[path])
                    processed.append(names[path])
                except UserError as err:
                    skipped[path.name] = str(err)
                    log.warning(f'skipped {path.name}: {err}')
    finally:
        demo.close()
    summary = f'{len(processed)} of {len(files)} file(s) processed, {len(skipped)} skipped'
    if skipped:
        summary += ': ' + '; '.join(f'{name} ({reason})' for name, reason in skipped.items())
    print(f'{summary}; outputs in {out_dir}')
    return {'processed': processed, 'skipped': skipped}


if __name__ == '__main__':
    run_cli(main)
