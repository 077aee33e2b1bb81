"""The shared loader of HandOccNet-format COCO annotations (HO3D, DexYCB, SYNTH).

Subclasses only say where files are (:meth:`HandObjectDataset.image_path`,
:meth:`HandObjectDataset.mask_path`), how the dataset's own segmentation masks are encoded
(:meth:`HandObjectDataset.read_mask`) and what to tell a user whose annotation file is missing.
Everything else lives here: reading and checking the JSON, the crop box of every entry, the
augmentation, and the targets of the data contract (docs/DESIGN.md).

Items, ``dataset[i] -> (inputs, targets, meta_info)`` (S = ``input_size``, the crop side):

- ``inputs['img']``: (3, S, S) float32 RGB 0..1, ``transform(crop) / 255`` as in the reference.
- ``targets``: ``joints_img`` (21, 2) crop pixels / S (OpenCV pixel centres, as the reference);
  ``joints_coord_cam`` (21, 3) root-relative metres; ``mano_pose`` (48,) axis-angle relative to
  hands_mean; ``mano_shape`` (10,); ``seg`` (S/4, S/4) int64 with 0 background, 1 hand, 2 object,
  255 unknown. Training items are augmented and left hands are mirrored to right hands; the 3D
  joints and the MANO global rotation are rotated with the crop, so the right-hand MANO layer fed
  ``mano_pose, mano_shape`` gives ``joints_coord_cam`` (minus its root).
  Test items (no augmentation) keep ``joints_img``, ``seg``, ``mano_pose`` and ``mano_shape`` in
  the frame of the crop the network sees (mirrored for left hands), while ``joints_coord_cam`` and
  ``mesh_coord_cam`` (778, 3) are the root-relative ground truth in the ORIGINAL frame, the mesh
  from the MANO layer of the hand's own side. Without ground truth (``has_gt = False``) all targets
  are zeros and ``seg`` is 255.
- ``meta_info``: ``root_joint_cam`` (3,) absolute wrist, metres, original frame; ``bbox`` (4,) crop
  box x, y, w, h in original-image pixels before augmentation (test items: crop pixel p lies at
  ``bbox[:2] + p / S * bbox[2:]``, with x mirrored, ``bbox[0] + (1 - p_x / S) * bbox[2]``, when
  ``flip``); ``focal``, ``princpt`` (2,) of the original camera; ``flip`` 0/1; ``occlusion`` (SYNTH's
  hidden-hand ratio, else -1); ``idx``; ``img2crop`` (2, 3) the exact affine map from original-image
  pixels to crop pixels (augmentation and mirroring included).

Segmentation targets come from the dataset's own masks when the entry has one; otherwise the
silhouette of the ground-truth MANO mesh, rendered with the annotation camera, gives the hand
pixels and everything else is 255. Rendered maps are cached as PNG files (1 hand, 255 unknown,
full image size) in ``<root>/seg_cache/<annotation file stem>_<hand model id>/<image id>.png``, so
later epochs read them instead of rendering; delete the folder to re-render.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO

from errors import UserError
from utils.files import write_atomically
from utils.mano import NUM_JOINTS, NUM_VERTS, ManoLayer
from utils.preprocessing import (HAND, IGNORE_LABEL, SEG_STRIDE, AugParams, bbox_from_joints,
                                 color_scale, crop_affine, label_affine, load_img, process_bbox,
                                 sample_aug, sample_frame_window, warp_image, warp_labels, whole_image_box)
from utils.transforms import (apply_affine, cam2pixel, intrinsics, mirror_points, mirror_pose,
                              rotate_global_pose, rotate_points, rotation_z)

if TYPE_CHECKING:  # pyrender is imported only where silhouettes are rendered
    from utils.render import MeshRenderer, RenderMesh

log = logging.getLogger('interacthand')

SPLITS = ('train', 'test')
POSE_DIM, SHAPE_DIM = 48, 10


@dataclass
class Entry:
    """One annotated hand, as read from the annotation file (original image frame)."""
    image_id: int
    img_path: Path
    width: int
    height: int
    bbox: np.ndarray | None          # (4,) crop box x, y, w, h, input aspect ratio, no augmentation
    focal: np.ndarray                # (2,)
    princpt: np.ndarray              # (2,)
    root_joint_cam: np.ndarray       # (3,) metres
    hand_type: str = 'right'
    joints_cam: np.ndarray | None = None   # (21, 3) absolute, metres
    joints_img: np.ndarray | None = None   # (21, 2) pixels
    pose: np.ndarray | None = None         # (48,)
    shape: np.ndarray | None = None        # (10,)
    mask_path: Path | None = None
    occlusion: float = -1.0


class HandObjectDataset(torch.utils.data.Dataset):
    """Base of the HO3D, DexYCB and SYNTH loaders: ``Name(transform, data_split, root, input_size,
    mano_path)``; ``registry.build_dataset`` makes them from a config (``root`` from the config
    field named by ``root_field``).

    Args:
        transform: (S, S, 3) uint8 crop -> (3, S, S) tensor (``torchvision.transforms.ToTensor()``;
            the item divides its output by 255, as the reference does).
        data_split: 'train' or 'test'.
        root: the dataset's folder.
        input_size: S, the side of the square crops in pixels.
        mano_path: MANO file or folder for the ground-truth meshes (None: the default folder; the
            built-in hand without MANO files).
        frame_size: L > 0: training items also carry the whole frame for the hand localiser,
            ``inputs['frame']`` (3, L, L), and its hand box ``targets['frame_box']`` (4,).

    Subclasses set ``root_field``, ``annotation_files`` (split -> path under the root) and
    ``gt_splits`` (splits with hand ground truth; their crops come from the GT joints, the others'
    from the annotation ``bbox``), and implement :meth:`image_path` and
    :meth:`missing_annotation_hint`; those with their own masks also set ``mask_location`` and
    implement :meth:`mask_path` and :meth:`read_mask`. ``fingertips`` names the fingertip vertices
    the annotations' joints use (a key of ``utils.mano.FINGERTIPS``); ``option_fields`` maps extra
    constructor keywords to the config fields that give them (e.g. HO3D's ``version``).
    """

    root_field: str = ''
    annotation_files: dict[str, str] = {}
    gt_splits: tuple[str, ...] = SPLITS
    mask_location: str = ''   # where the dataset's own masks are, for messages; '' = it has none
    fingertips: str = 'manopth'
    option_fields: dict[str, str] = {}

    def __init__(self, transform: Callable[[np.ndarray], torch.Tensor], data_split: str,
                 root: str | Path, input_size: int, mano_path: str | Path | None = None,
                 frame_size: int = 0):
        if data_split not in SPLITS:
            raise ValueError(f"data_split must be 'train' or 'test', got {data_split!r}")
        self.transform = transform
        self.data_split = data_split
        self.has_gt = data_split in self.gt_splits
        self.root = Path(root)
        self.annot_path = self.root / self.annotation_files[data_split]
        self.input_size = int(input_size)
        self.mano_path = mano_path
        self.frame_size = int(frame_size) if self.has_gt and data_split == 'train' else 0
        self._layers: dict[str, ManoLayer] = {}
        self._renderers: dict[tuple[int, int], MeshRenderer] = {}
        self._cache_dir: Path | None = None
        self._cache_writable = True
        self.entries = self._load_entries()

    # ------------------------------------------------------------------ subclass hooks

    def image_path(self, img: dict) -> Path:
        """Path of the image of a COCO ``images`` record."""
        raise NotImplementedError

    def missing_annotation_hint(self) -> str:
        """What the user should do when the annotation file is missing (end of one sentence)."""
        raise NotImplementedError

    def mask_path(self, img: dict, ann: dict) -> Path | None:
        """Path of the dataset's own segmentation mask of an entry, or None if it has none."""
        return None

    def read_mask(self, path: Path) -> np.ndarray:
        """The dataset's mask file -> (h, w) uint8 labels 0 background, 1 hand, 2 object, 255
        unknown (any resolution; it is stretched over the image); an unreadable file is a
        UserError naming it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ loading

    def _read_json(self) -> dict:
        path = self.annot_path
        if not path.is_file():
            raise UserError(f'annotation file {path} does not exist; {self.missing_annotation_hint()}')
        try:
            with open(path, 'rb') as fh:
                data = json.loads(fh.read())
        except json.JSONDecodeError as err:
            raise UserError(f'annotation file {path} is not valid JSON ({err.msg} at line '
                            f'{err.lineno}, column {err.colno}); download it again') from None
        except (UnicodeDecodeError, OSError) as err:
            raise UserError(f'annotation file {path} cannot be read as JSON text ({err}); '
                            'download it again') from None
        if not isinstance(data, dict) or not isinstance(data.get('images'), list) \
                or not isinstance(data.get('annotations'), list):
            raise UserError(f"annotation file {path} is not a COCO annotation file (it needs "
                            "'images' and 'annotations' lists); use the HandOccNet-format file")
        return data

    def _load_entries(self) -> list[Entry]:
        data = self._read_json()
        db = COCO()
        db.dataset = {'images': data['images'], 'annotations': data['annotations']}  # all are hands
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
                db.createIndex()
        except (KeyError, TypeError) as err:
            raise UserError(f'annotation file {self.annot_path} is malformed: an image or '
                            f"annotation record lacks {err}; use the HandOccNet-format file") from None
        entries, outside = [], 0
        for ann in db.anns.values():
            img = db.imgs.get(ann['image_id'])
            if img is None:
                raise UserError(f"annotation file {self.annot_path}: annotation {ann.get('id')} "
                                f"refers to image {ann['image_id']}, which is not in 'images'; "
                                'download the file again')
            entry = self._parse(img, ann)
            if entry.bbox is None:
                outside += 1
                if self.data_split == 'train':
                    continue
                entry.bbox = self._whole_image(entry.width, entry.height)
            entries.append(entry)
        what = 'skipped' if self.data_split == 'train' else 'cropped the whole image for'
        log.info(f'{type(self).__name__} {self.data_split}: {len(entries)} entries from '
                 f'{self.annot_path}; {what} {outside} whose box falls outside the image')
        self._report_masks(entries)
        return entries

    def _report_masks(self, entries: list[Entry]) -> None:
        """Warn when entries with ground truth lack the dataset's own segmentation mask (they fall
        back to the rendered hand silhouette, which has no object label)."""
        if not self.mask_location or not self.has_gt or not entries:
            return
        missing = sum(e.mask_path is None or not e.mask_path.is_file() for e in entries)
        if missing:
            log.warning(f'{type(self).__name__} {self.data_split}: {missing} of {len(entries)} '
                        f'entries have no segmentation mask where it is looked for '
                        f'({self.mask_location} under {self.root}); they use the rendered hand '
                        'silhouette, without object labels')

    def _field(self, rec: dict, key: str, shape: tuple[int, ...] | None = None) -> Any:
        """``rec[key]`` (as a float32 array of ``shape`` when given); a missing key or a wrong
        size is a UserError naming the file, the record and the key."""
        value: Any = rec
        for part in key.split('.'):
            if not isinstance(value, dict) or part not in value:
                raise UserError(f"annotation file {self.annot_path}: record {rec.get('id')} has no "
                                f"'{key}'; use the HandOccNet-format file for this split")
            value = value[part]
        if shape is None:
            return value
        try:
            arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.size != int(np.prod(shape)):
            raise UserError(f"annotation file {self.annot_path}: record {rec.get('id')} has "
                            f"'{key}' of the wrong size (expected {int(np.prod(shape))} numbers); "
                            'use the HandOccNet-format file')
        return arr.reshape(shape)

    def _whole_image(self, width: int, height: int) -> np.ndarray:
        """The crop box of the whole image, at the input aspect ratio."""
        return whole_image_box(width, height, 1.0)

    def _parse(self, img: dict, ann: dict) -> Entry:
        """One annotation -> Entry; its ``bbox`` is None when the box is outside the image."""
        width, height = int(self._field(img, 'width')), int(self._field(img, 'height'))
        entry = Entry(image_id=int(self._field(img, 'id')), img_path=self.image_path(img),
                      width=width, height=height, bbox=None,
                      focal=self._field(ann, 'cam_param.focal', (2,)),
                      princpt=self._field(ann, 'cam_param.princpt', (2,)),
                      root_joint_cam=np.zeros(3, np.float32),
                      hand_type=str(ann.get('hand_type', 'right')),
                      occlusion=float(ann.get('occlusion', -1.0)))
        if entry.hand_type not in ('right', 'left'):
            raise UserError(f"annotation file {self.annot_path}: record {ann.get('id')} has "
                            f"hand_type {entry.hand_type!r}; it must be 'right' or 'left'")
        aspect = 1.0   # square crops (config: input_img_shape is square)
        if self.has_gt:
            entry.joints_cam = self._field(ann, 'joints_coord_cam', (NUM_JOINTS, 3))
            if 'joints_img' in ann:
                entry.joints_img = self._field(ann, 'joints_img', (NUM_JOINTS, 2))
            else:
                uv = cam2pixel(entry.joints_cam, entry.focal, entry.princpt)
                entry.joints_img = uv.astype(np.float32)
            entry.pose = self._field(ann, 'mano_param.pose', (POSE_DIM,))
            entry.shape = self._field(ann, 'mano_param.shape', (SHAPE_DIM,))
            entry.root_joint_cam = entry.joints_cam[0].copy()
            entry.mask_path = self.mask_path(img, ann)
            box = bbox_from_joints(entry.joints_img, expansion=1.5)
            entry.bbox = process_bbox(box, width, height, aspect, expansion=1.0)
        else:
            entry.root_joint_cam = self._field(ann, 'root_joint_cam', (3,))
            box = self._field(ann, 'bbox', (4,))
            entry.bbox = process_bbox(box, width, height, aspect, expansion=1.5)
        return entry

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[dict, dict, dict]:
        """(inputs, targets, meta_info) of an entry, as the module docstring describes. ``key``:
        the entry's index, or ``(index, seed)`` as the training sampler gives them
        (loaders.TrainingSampler): the augmentation is then drawn from a generator seeded by that
        pair alone; with a bare index, from numpy's global generator."""
        idx, seed = key if isinstance(key, tuple) else (key, None)
        e = self.entries[idx]
        size = self.input_size
        rng = np.random.default_rng([seed, idx]) if seed is not None else None
        aug = sample_aug(rng) if self.data_split == 'train' else AugParams()
        flip = e.hand_type == 'left'
        img = load_img(e.img_path)
        img2crop = crop_affine(e.bbox, size, aug, flip=flip, img_width=img.shape[1])
        crop = color_scale(warp_image(img, img2crop, size), aug.color)
        inputs = {'img': self.transform(crop) / 255.0}

        targets = (self._targets(e, aug, flip, img2crop, img.shape[:2]) if self.has_gt
                   else self._empty_targets())
        if self.frame_size:
            inputs['frame'], targets['frame_box'] = self._frame(e, img, aug, flip, rng)
        meta_info = {'root_joint_cam': e.root_joint_cam.astype(np.float32),
                     'bbox': e.bbox.astype(np.float32), 'focal': e.focal, 'princpt': e.princpt,
                     'flip': int(flip), 'occlusion': np.float32(e.occlusion), 'idx': idx,
                     'img2crop': img2crop[:2].astype(np.float32)}
        return inputs, targets, meta_info

    def _frame(self, e: Entry, img: np.ndarray, aug: AugParams, flip: bool,
               rng: np.random.Generator | None) -> tuple[torch.Tensor, np.ndarray]:
        """The hand localiser's training view of the whole image: a square window
        (``sample_frame_window``: the whole frame, or a zoom that keeps the hand) warped to
        (3, L, L) with the item's colour scale and mirroring, and the box of the 2D joints in it,
        x, y, w, h in 0..1 of L."""
        size = self.frame_size
        window = sample_frame_window(bbox_from_joints(e.joints_img, expansion=1.0), e.width, e.height, rng)
        affine = crop_affine(window, size, AugParams(color=aug.color), flip=flip, img_width=img.shape[1])
        frame = color_scale(warp_image(img, affine, size), aug.color)
        box = bbox_from_joints(apply_affine(e.joints_img, affine), expansion=1.0) / size
        return self.transform(frame) / 255.0, box.astype(np.float32)

    def _empty_targets(self) -> dict:
        """Targets of an entry without ground truth: zeros, and 255 (unknown) segmentation."""
        small = self.input_size // SEG_STRIDE
        return {'joints_img': np.zeros((NUM_JOINTS, 2), np.float32),
                'joints_coord_cam': np.zeros((NUM_JOINTS, 3), np.float32),
                'mano_pose': np.zeros(POSE_DIM, np.float32),
                'mano_shape': np.zeros(SHAPE_DIM, np.float32),
                'seg': np.full((small, small), IGNORE_LABEL, np.int64),
                'mesh_coord_cam': np.zeros((NUM_VERTS, 3), np.float32)}

    def _targets(self, e: Entry, aug: AugParams, flip: bool, img2crop: np.ndarray,
                 img_shape: tuple[int, int]) -> dict:
        """Targets of an entry with ground truth (see the module docstring for the frames)."""
        size = self.input_size
        rel = e.joints_cam - e.joints_cam[0]
        pose = mirror_pose(e.pose) if flip else e.pose.copy()
        rel_in = mirror_points(rel) if flip else rel
        if aug.rot != 0.0:
            rot = rotation_z(-aug.rot)  # the crop's in-plane rotation, about the camera z axis
            rel_in = rotate_points(rel_in, rot)
            pose = rotate_global_pose(pose, rot)
        targets = {'joints_img': (apply_affine(e.joints_img, img2crop) / size).astype(np.float32),
                   'joints_coord_cam': rel_in.astype(np.float32),
                   'mano_pose': pose.astype(np.float32), 'mano_shape': e.shape.copy(),
                   'seg': self._seg_target(e, img2crop, img_shape)}
        if self.data_split == 'test':
            verts, joints = self._mano(e)
            targets['joints_coord_cam'] = rel.astype(np.float32)
            targets['mesh_coord_cam'] = (verts - joints[0]).astype(np.float32)
        return targets

    # ------------------------------------------------------------------ segmentation targets

    def _seg_target(self, e: Entry, img2crop: np.ndarray, img_shape: tuple[int, int]) -> np.ndarray:
        """(S/4, S/4) int64 labels of the crop."""
        if e.mask_path is not None and e.mask_path.is_file():
            labels = self.read_mask(e.mask_path)
        else:
            labels = self._silhouette_labels(e)
        small = self.input_size // SEG_STRIDE
        affine = label_affine(img2crop, labels.shape[:2], img_shape)
        return warp_labels(labels, affine, small).astype(np.int64)

    def _layer(self, side: str) -> ManoLayer:
        """The MANO layer of one side, built once per dataset object (and worker process)."""
        if side not in self._layers:
            self._layers[side] = ManoLayer(self.mano_path, side=side)
        return self._layers[side]

    def _mano(self, e: Entry) -> tuple[np.ndarray, np.ndarray]:
        """GT mesh (778, 3) and joints (21, 3) in the original frame, from the layer of the hand's
        side, positioned by MANO alone (no translation)."""
        with torch.no_grad():
            verts, joints = self._layer(e.hand_type)(torch.from_numpy(e.pose)[None],
                                                     torch.from_numpy(e.shape)[None])
        return verts[0].numpy(), joints[0].numpy()

    @property
    def cache_dir(self) -> Path:
        """Folder of the rendered silhouette label maps of this annotation file and hand model."""
        if self._cache_dir is None:
            model = self._layer('right').model_id.replace(':', '-')
            self._cache_dir = self.root / 'seg_cache' / f'{self.annot_path.stem}_{model}'
        return self._cache_dir

    def _silhouette_labels(self, e: Entry) -> np.ndarray:
        """(H, W) uint8: 1 where the GT mesh covers the image, 255 elsewhere; cached on disk."""
        cache = self.cache_dir / f'{e.image_id}.png'
        labels = cv2.imread(str(cache), cv2.IMREAD_UNCHANGED) if cache.is_file() else None
        if labels is not None and labels.shape == (e.height, e.width):
            return labels
        verts, joints = self._mano(e)
        verts_cam = verts - joints[0] + e.joints_cam[0]
        depth = self._renderer(e.width, e.height).depth(
            [self._render_mesh(verts_cam, e.hand_type)],
            intrinsics(e.focal, e.princpt))
        labels = np.where(depth > 0, HAND, IGNORE_LABEL).astype(np.uint8)
        self._write_cache(cache, labels)
        return labels

    def _render_mesh(self, verts: np.ndarray, side: str) -> RenderMesh:
        from utils.render import RenderMesh
        return RenderMesh(verts, self._layer(side).faces.numpy())

    def _renderer(self, width: int, height: int) -> MeshRenderer:
        """One off-screen renderer per image size and process (GL contexts do not survive fork)."""
        if (width, height) not in self._renderers:
            from utils.render import MeshRenderer
            self._renderers[(width, height)] = MeshRenderer(width, height)
        return self._renderers[(width, height)]

    def _write_cache(self, path: Path, labels: np.ndarray) -> None:
        """Write atomically (DataLoader workers may race); a read-only root only warns once."""
        if not self._cache_writable:
            return

        def write(tmp: Path) -> None:
            if not cv2.imwrite(str(tmp), labels):
                raise OSError('the PNG encoder failed')

        try:
            write_atomically(path, write)
        except OSError as err:
            self._cache_writable = False
            log.warning(f'cannot cache rendered segmentation maps in {path.parent} ({err}); they '
                        'will be rendered again every epoch')

    def __getstate__(self) -> dict:
        """Pickled for DataLoader workers: without the MANO layers and GL renderers (rebuilt there)."""
        state = self.__dict__.copy()
        state['_layers'], state['_renderers'] = {}, {}
        return state
