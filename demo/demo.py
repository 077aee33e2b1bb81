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

With --bbox (a tight box around the hand) the crop is that box grown to a square and enlarged
1.5x, as the data pipeline crops test boxes; without it, the hand localiser trained with the
network finds the box (an image where it finds no hand is skipped, saying so). --fit
places the hand for a pinhole camera (--focal, default the image's larger side); without it, a
weak-perspective placement. The network sees right hands: mirror the image of a left hand. All
of this is common/inference.py, which your own code can use too.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from collections import Counter  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from checkpoints import newest_snapshot  # noqa: E402
from config import QUICKSTART_DIR, Config, add_common_args, parse_gpu, parse_set  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from inference import BOX_EXPANSION, BOX_SOURCES, HandReconstructor, load_model, shape_warnings  # noqa: E402
from logger import setup_logging  # noqa: E402
from runtime import select_device  # noqa: E402
from utils.files import rounded, write_obj  # noqa: E402
from utils.mano import JOINT_NAMES  # noqa: E402
from utils.preprocessing import HAND, OBJECT, load_img  # noqa: E402
from utils.render import OverlayRenderer  # noqa: E402
from utils.vis import colour_labels, draw_box, draw_skeleton, put_label  # noqa: E402

log = logging.getLogger('interacthand')

MIN_SIDE = 32               # pixels: smaller images hold too little of a hand to crop
MIN_BOX = 4                 # pixels: the smallest --bbox width or height


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


def write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1])):
        raise UserError(f'cannot write {path}; check that --out is a writable folder')


class Demo:
    """Runs the reconstructor on images and writes the five output files of each."""

    def __init__(self, rec: HandReconstructor, args: argparse.Namespace, out_dir: Path):
        self.rec, self.args, self.out_dir = rec, args, out_dir
        self.faces = rec.model.mano_layer.faces.cpu().numpy().astype(np.int64)
        self.hand_model = rec.model.hand_model_id
        self.overlays = OverlayRenderer(self.faces)

    def run(self, path: Path, name: str, img: np.ndarray | None = None) -> dict:
        """Process one image (read from ``path`` unless given) and write NAME_* into the output
        folder; returns the content of NAME_result.json. A user mistake about this image
        (unreadable, box outside) is a UserError."""
        img = read_image(path) if img is None else img
        h, w = img.shape[:2]
        args = self.args
        box = checked_box(np.array(args.bbox), w, h) if args.bbox is not None else None
        try:
            pred = self.rec.predict(img, box)
        except UserError as err:   # the box found is unusable: name the image
            raise UserError(f'{path}: {err}') from None
        source = BOX_SOURCES[pred.box_source]
        tqdm.write(f"{path.name}: hand box {' '.join(f'{v:.0f}' for v in pred.hand_box)} (x y w h) from "
                   f"{source}; crop {' '.join(f'{v:.0f}' for v in pred.crop_box)}")
        placed = self.rec.place(pred, w, h, args.focal, fit=args.fit)
        if placed.message:
            tqdm.write(f'{path.name}: {placed.message}')
        warnings = shape_warnings(pred.shape)
        for warning in warnings:
            log.warning(f'{path.name}: {warning}')
        result = {
            'image': str(path), 'image_size': [w, h], 'checkpoint': self.rec.model.snapshot['path'],
            'epoch': self.rec.model.snapshot['epoch'], 'hand_model': self.hand_model,
            'box': {'hand_box': rounded(pred.hand_box, 2), 'source': source, 'crop_box': rounded(pred.crop_box, 2),
                    'score': None if pred.box_score is None else round(pred.box_score, 4),
                    'note': f'the crop is the hand box grown to a square and enlarged {BOX_EXPANSION}x'},
            'joint_names': list(JOINT_NAMES),
            'mano_pose': rounded(pred.pose, 6), 'mano_shape': rounded(pred.shape, 6),
            'joints_3d_root_relative_m': rounded(pred.joints_rel, 6),
            'joints_2d_px': rounded(pred.joints_2d, 3),
            'fit' if args.fit else 'placement': placed.info,
            'mesh_obj_placement': placed.note,
            'warnings': warnings,
        }
        out = self.out_dir
        write_obj(out / f'{name}_mesh.obj', placed.verts, self.faces,
                  [f'InteractHand demo: hand mesh of {path.name} ({self.hand_model})',
                   'camera axes: x right, y down, z forward; metres', f'placement: {placed.note}'])
        write_png(out / f'{name}_overlay.png', self.overlays.render(img, placed.render_verts, placed.K))
        write_png(out / f'{name}_keypoints.png',
                  draw_box(draw_skeleton(img, pred.joints_2d), pred.hand_box, text=f'box: {source}'))
        if pred.labels is not None:
            seg = colour_labels(img, pred.labels)
            result['seg_pixels'] = {'hand': int((pred.labels == HAND).sum()),
                                    'object': int((pred.labels == OBJECT).sum())}
        else:
            seg = put_label(img, 'this model has no segmentation head (use_seg=false)', 0, 0)
        write_png(out / f'{name}_seg.png', seg)
        (out / f'{name}_result.json').write_text(json.dumps(result, indent=1) + '\n')
        return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--input', required=True, type=Path, help='an image file, or a folder of images')
    p.add_argument('--bbox', nargs=4, type=float, metavar=('X', 'Y', 'W', 'H'),
                   help='box around the hand in pixels (default: found by the hand localiser)')
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


def main(argv: list[str] | None = None) -> dict:
    """Run the demo; returns {'processed': [NAME, ...], 'skipped': {file: reason}}."""
    args = parse_args(argv)
    setup_logging()
    overrides = {'preset': args.preset, **parse_set(args.set)}
    conf = Config().update(**overrides)   # checked before any image or snapshot is read
    files = list_inputs(args.input)
    single = args.input.is_file()
    first_img = read_image(files[0]) if single else None  # a single bad file stops before the model loads
    if single and args.bbox is not None:
        checked_box(np.array(args.bbox), first_img.shape[1], first_img.shape[0])
    checkpoint = args.checkpoint or newest_snapshot(conf.model_dir, QUICKSTART_DIR / 'model_dump')
    device, _ = select_device(parse_gpu(args.gpu))
    model, conf = load_model(checkpoint, device, **overrides)
    log.info(f'checkpoint {checkpoint} (epoch {model.snapshot["epoch"]}), hand model {model.hand_model_id}, '
             f'device {device}')
    if args.focal is not None and not args.fit:
        log.warning('--focal is used only with --fit; ignoring it')
    if args.bbox is None:
        log.info('no --bbox: the hand localiser finds each hand box' if model.localiser is not None else
                 'no --bbox: each hand box comes from a pass over the whole image, which this network (from '
                 'before the hand localiser) never saw in training; pass --bbox X Y W H where you know it')
    out_dir = args.out if args.out is not None else conf.vis_dir / 'demo'
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f'cannot create the output folder {out_dir} ({err.strerror}); pick a writable --out') from None
    demo = Demo(HandReconstructor(model, conf), args, out_dir)
    names = output_names(files)
    processed, skipped = [], {}
    try:
        for path in tqdm(files, desc='demo', unit='image', dynamic_ncols=True, disable=single):
            try:
                demo.run(path, names[path], first_img)
                processed.append(names[path])
            except UserError as err:
                if single:
                    raise
                skipped[path.name] = str(err)
                log.warning(f'skipped {path.name}: {err}')
    finally:
        demo.overlays.close()
    summary = f'{len(processed)} of {len(files)} file(s) processed, {len(skipped)} skipped'
    if skipped:
        summary += ': ' + '; '.join(f'{name} ({reason})' for name, reason in skipped.items())
    print(f'{summary}; outputs in {out_dir}')
    return {'processed': processed, 'skipped': skipped}


if __name__ == '__main__':
    run_cli(main)
