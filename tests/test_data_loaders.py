"""HO3D and DexYCB loaders on small fixtures in the exact HandOccNet schema (test_data_helpers):
2D/3D/MANO/segmentation consistency under augmentation and mirroring, the silhouette fallback
and its cache, test-split ground truth, skipped entries and the user-facing errors."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision import transforms

import test_data_helpers as fx
from DEX_YCB.DEX_YCB import DEX_YCB
from errors import UserError
from HO3D.HO3D import HO3D
from registry import DATASET_CLASSES, build_dataset
from SYNTH.SYNTH import SYNTH
from utils.preprocessing import SEG_STRIDE, crop_affine, load_img, sample_aug, warp_image
from utils.render import MeshRenderer

TO_TENSOR = transforms.ToTensor()
SEEDS = range(6)
SIZE = 256            # crop side of every loader here
KEY = {HO3D: 'ho3d', DEX_YCB: 'dex'}   # cls -> its folder in the roots fixture


def load(cls, split: str, root: Path):
    return cls(TO_TENSOR, split, root, SIZE)


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    """Fixture datasets: HO3D with v2 masks (6 train incl. 1 off-image entry, 3 evaluation),
    HO3D without masks and objects (silhouette fallback), DexYCB with left and right hands."""
    rng = np.random.default_rng(7)
    renderer = MeshRenderer(fx.W, fx.H)
    base = tmp_path_factory.mktemp('data')
    paths = {'ho3d': base / 'ho3d', 'plain': base / 'ho3d_plain', 'dex': base / 'dex'}
    frames = [fx.make_frame(rng, renderer) for _ in range(5)]
    fx.write_ho3d(paths['ho3d'], frames, [fx.make_frame(rng, renderer) for _ in range(3)], outside=1)
    fx.write_ho3d(paths['plain'], [fx.make_frame(rng, renderer, with_object=False) for _ in range(3)],
                  [], masks='none')
    sides = ['left', 'right', 'left', 'right', 'left', 'right']
    fx.write_dexycb(paths['dex'], [fx.make_frame(rng, renderer, s) for s in sides], 'train')
    fx.write_dexycb(paths['dex'], [fx.make_frame(rng, renderer, s) for s in sides[:4]], 'test')
    renderer.close()
    return paths


def annotation(ds, idx: int) -> dict:
    """The raw JSON annotation behind item ``idx``."""
    with open(ds.annot_path) as fh:
        data = json.load(fh)
    by_id = {a['image_id']: a for a in data['annotations']}
    return by_id[ds.entries[idx].image_id]


def items(ds, seeds=SEEDS):
    for seed in seeds:
        for idx in range(len(ds)):
            np.random.seed(seed * 1000 + idx)
            yield idx, ds[idx]


# ------------------------------------------------------------------------ 2D / 3D / MANO

@pytest.mark.parametrize('cls', [HO3D, DEX_YCB])
def test_projected_joints_land_on_returned_2d_joints_and_on_the_image(roots, cls):
    """Camera projection of the annotated 3D joints, mapped by the crop transform, gives the
    returned 2D joints; and the markers drawn at those joints in the fixture image move with the
    same transform into the returned crop (augmentation on; DexYCB includes mirrored left hands).
    Marker positions are measured in the written image file, so JPEG and overlap effects cancel."""
    ds = load(cls, 'train', roots[KEY[cls]])
    size = SIZE
    markers = ((0, fx.WRIST_RGB), (fx.MIDDLE_TIP, fx.TIP_RGB))
    raw = []
    for idx, e in enumerate(ds.entries):
        image = load_img(e.img_path) / 255.0
        uv = fx.project(np.array(annotation(ds, idx)['joints_coord_cam']))
        raw.append({jid: fx.marker_centroid(image, rgb, uv[jid], 2 * fx.MARKER_RADIUS)
                    for jid, rgb in markers})
    flips, checked = set(), 0
    for idx, item in items(ds):
        ann = annotation(ds, idx)
        uv = fx.project(np.array(ann['joints_coord_cam']))
        a = item[2]['img2crop'].astype(np.float64)
        got = item[1]['joints_img'] * size
        np.testing.assert_allclose(got, uv @ a[:, :2].T + a[:, 2], atol=1e-2)
        crop = fx.crop_of(item)
        zoom = np.sqrt(abs(np.linalg.det(a[:, :2])))
        apart = np.linalg.norm(uv[0] - uv[fx.MIDDLE_TIP]) > 4 * fx.MARKER_RADIUS  # no overlap
        for jid, rgb in markers:
            expected = a[:, :2] @ raw[idx][jid] + a[:, 2]
            if apart and np.all((expected > 12) & (expected < size - 12)):
                assert np.linalg.norm(raw[idx][jid] - uv[jid]) < 1.0  # the marker is on the joint
                found = fx.marker_centroid(crop, rgb, expected, 2 * fx.MARKER_RADIUS * zoom)
                err = np.linalg.norm(found - expected)
                assert err < 1.0, f'item {idx}: marker of joint {jid} is {err:.2f} px off'
                checked += 1
        flips.add(item[2]['flip'])
    assert flips == ({0} if cls is HO3D else {0, 1})
    assert checked > len(ds) * len(SEEDS)  # most markers were checked


@pytest.mark.parametrize('cls', [HO3D, DEX_YCB])
def test_mano_params_reproduce_joints_after_rotation_and_flip(roots, cls):
    """The right-hand layer fed the returned MANO parameters gives the returned root-relative
    joints within 1 mm; those equal the annotated joints (mirrored for left hands) rotated about
    the camera z axis by exactly the crop's in-plane rotation."""
    ds = load(cls, 'train', roots[KEY[cls]])
    rotated = 0
    for idx, (inputs, targets, meta) in items(ds):
        joints = targets['joints_coord_cam'].astype(np.float64)
        mano = fx.mano_joints_rel(targets['mano_pose'], targets['mano_shape'], 'right')
        assert np.abs(mano - joints).max() < 1e-3
        ann = np.array(annotation(ds, idx)['joints_coord_cam'])
        rel = ann - ann[0]
        mirror = np.diag([-1.0, 1.0, 1.0]) if meta['flip'] else np.eye(3)
        rot = fx.kabsch(rel @ mirror, joints)
        np.testing.assert_allclose(rel @ mirror @ rot.T, joints, atol=1e-5)
        lin = meta['img2crop'][:, :2].astype(np.float64) @ mirror[:2, :2]
        lin /= np.sqrt(abs(np.linalg.det(lin)))
        np.testing.assert_allclose(rot[:2, :2], lin, atol=1e-4)
        assert abs(rot[2, 2] - 1) < 1e-6
        rotated += abs(np.arctan2(rot[1, 0], rot[0, 0])) > 0.05
    assert rotated > 0  # the augmentation did rotate some items


# ------------------------------------------------------------------------ segmentation

def agreement(item, classes_needed=(1, 2)) -> float:
    """Fraction of seg pixels whose label equals the fixture colour under them (pixels of clear
    colour and known label only); also checks every needed class is present."""
    crop = fx.crop_of(item)
    s = crop.shape[0] // SEG_STRIDE
    blocks = crop.reshape(s, SEG_STRIDE, s, SEG_STRIDE, 3).mean(axis=(1, 3))
    colour = fx.colour_class(blocks)
    seg = item[1]['seg']
    assert seg.shape == (s, s) and seg.dtype == np.int64
    for c in classes_needed:
        assert (seg == c).sum() > 10, f'label {c} missing'
    valid = (colour >= 0) & (seg != 255)
    return float((colour[valid] == seg[valid]).mean())


@pytest.mark.parametrize('cls', [HO3D, DEX_YCB])
def test_segmentation_stays_aligned_with_the_image(roots, cls):
    """HO3D's own (half-resolution v2) masks and DexYCB's npz labels, warped with the crop under
    augmentation and mirroring, label the fixture's red hand 1 and blue object 2."""
    ds = load(cls, 'train', roots[KEY[cls]])
    scores = [agreement(item) for _, item in items(ds, range(3))]
    assert min(scores) > 0.96, scores


@pytest.mark.parametrize('cls', [HO3D, DEX_YCB])
def test_silhouette_fallback_and_cache(roots, tmp_path, monkeypatch, caplog, cls):
    """Without masks (HO3D: no seg/ folder; DexYCB: labels_*.npz removed, left hands included),
    hand pixels come from the rendered GT mesh, everything else is 255; the rendered maps are
    cached under <root>/seg_cache and read back instead of rendering again."""
    root = tmp_path / 'data'
    shutil.copytree(roots['plain'] if cls is HO3D else roots['dex'], root)
    for npz in root.rglob('labels_*.npz'):
        npz.unlink()
    with caplog.at_level(logging.WARNING, logger='interacthand'):
        ds = load(cls, 'train', root)
    warned = [r.getMessage() for r in caplog.records if 'segmentation mask' in r.getMessage()]
    assert len(warned) == 1 and f'{len(ds)} of {len(ds)} entries have no' in warned[0], warned
    assert cls.mask_location in warned[0] and str(root) in warned[0]
    first = []
    for idx in range(len(ds)):
        np.random.seed(idx)
        item = ds[idx]
        seg = item[1]['seg']
        first.append(seg)
        crop = fx.crop_of(item)
        s = crop.shape[0] // SEG_STRIDE
        colour = fx.colour_class(crop.reshape(s, SEG_STRIDE, s, SEG_STRIDE, 3).mean(axis=(1, 3)))
        assert (seg[colour == 1] == 1).mean() > 0.97      # visible hand: hand
        assert (seg[colour == 0] == 255).mean() > 0.97    # background: unknown
        assert set(np.unique(seg)) <= {0, 1, 255}
    cached = sorted(p.name for p in ds.cache_dir.glob('*.png'))
    assert cached == sorted(f'{e.image_id}.png' for e in ds.entries)
    assert ds.cache_dir.parent == root / 'seg_cache'

    again = load(cls, 'train', root)
    monkeypatch.setattr(cls, '_renderer', lambda *a: pytest.fail('rendered despite the cache'))
    for idx in range(len(again)):
        np.random.seed(idx)
        np.testing.assert_array_equal(again[idx][1]['seg'], first[idx])


def test_unwritable_cache_warns_once_and_labels_still_come(roots, tmp_path, caplog):
    """A cache folder that cannot be made (a file stands where it should be; as root, permissions
    would not stop the writes): one warning naming the folder, for the whole dataset; every item
    still gets its rendered hand labels, rendered again on the next pass."""
    root = tmp_path / 'data'
    shutil.copytree(roots['plain'], root)
    (root / 'seg_cache').write_text('not a folder')
    ds = load(HO3D, 'train', root)
    with caplog.at_level(logging.WARNING, logger='interacthand'):
        for _ in range(2):
            for idx in range(len(ds)):
                np.random.seed(idx)
                item = ds[idx]
                crop = fx.crop_of(item)
                s = crop.shape[0] // SEG_STRIDE
                colour = fx.colour_class(crop.reshape(s, SEG_STRIDE, s, SEG_STRIDE, 3).mean(axis=(1, 3)))
                assert (item[1]['seg'][colour == 1] == 1).mean() > 0.97
    warned = [r.getMessage() for r in caplog.records if 'cannot cache' in r.getMessage()]
    assert len(warned) == 1, warned
    assert str(ds.cache_dir) in warned[0] and 'rendered again every epoch' in warned[0]
    assert (root / 'seg_cache').is_file()


def test_colour_augmentation_scales_each_channel_of_the_crop(roots):
    """A training item's crop is the geometric crop of the image times the colour factors of its
    augmentation draw, per RGB channel, clipped at 255 (the fixture's white markers saturate)."""
    ds = load(HO3D, 'train', roots['ho3d'])
    factors = []
    for idx in range(len(ds)):
        np.random.seed(100 + idx)
        drawn = sample_aug()                                  # the draw the item will make
        np.random.seed(100 + idx)
        inputs, _, meta = ds[idx]
        image = load_img(ds.entries[idx].img_path)
        a = crop_affine(ds.entries[idx].bbox, SIZE, drawn)   # the crop of that draw, before colour
        np.testing.assert_allclose(meta['img2crop'], a[:2], rtol=1e-5, atol=1e-3)
        plain = warp_image(image, a, SIZE).astype(np.float64)
        got = inputs['img'].permute(1, 2, 0).numpy().astype(np.float64) * 255
        expected = np.minimum(plain * drawn.color.astype(np.float64), 255.0)
        np.testing.assert_allclose(got, expected, atol=1e-3)
        assert np.abs(got - plain).max() > 5                  # the image did change
        saturated = plain * drawn.color > 255
        assert not saturated.any() or np.all(got[saturated] == 255.0)
        factors.append(drawn.color)
    factors = np.array(factors)
    assert np.all((factors >= 0.8) & (factors <= 1.2)) and np.abs(factors - 1).max() > 0.05


# ------------------------------------------------------------------------ test splits

def test_dexycb_test_items_keep_ground_truth_in_the_original_frame(roots):
    ds = load(DEX_YCB, 'test', roots['dex'])
    size = SIZE
    assert ds.has_gt and len(ds) == 4
    for idx in range(len(ds)):
        inputs, targets, meta = ds[idx]
        ann = annotation(ds, idx)
        side = ann['hand_type']
        assert meta['flip'] == (side == 'left')
        joints = np.array(ann['joints_coord_cam'])
        np.testing.assert_allclose(targets['joints_coord_cam'], joints - joints[0], atol=1e-6)
        np.testing.assert_allclose(meta['root_joint_cam'], joints[0], atol=1e-6)
        with torch.no_grad():
            v, j = fx.layer(side)(torch.tensor(ann['mano_param']['pose'])[None].double(),
                                  torch.tensor(ann['mano_param']['shape'])[None].double())
        np.testing.assert_allclose(targets['mesh_coord_cam'], (v - j[:, :1])[0].numpy(), atol=1e-5)
        # the network-side pose is the mirrored one for left hands
        mirror = np.diag([-1.0, 1, 1]) if meta['flip'] else np.eye(3)
        mano = fx.mano_joints_rel(targets['mano_pose'], targets['mano_shape'], 'right')
        assert np.abs(mano - (joints - joints[0]) @ mirror).max() < 1e-3
        # no augmentation: crop pixel p lies at bbox[:2] + p / S * bbox[2:] (x mirrored if flipped)
        bx, by, bw, bh = meta['bbox']
        a = np.vstack([meta['img2crop'], [0, 0, 1]]).astype(np.float64)
        for p in ([0, 0], [size, size], [size / 3, size]):
            img_pt = np.linalg.solve(a, [p[0], p[1], 1])[:2]
            x = bx + (1 - p[0] / size) * bw if meta['flip'] else bx + p[0] / size * bw
            np.testing.assert_allclose(img_pt, [x, by + p[1] / size * bh], atol=1e-3)
        assert agreement((inputs, targets, meta)) > 0.96


def test_ho3d_evaluation_items_have_no_ground_truth(roots):
    ds = load(HO3D, 'test', roots['ho3d'])
    assert not ds.has_gt and ds.data_split == 'test' and len(ds) == 3
    for idx in range(len(ds)):
        _, targets, meta = ds[idx]
        ann = annotation(ds, idx)
        assert all(not np.any(v) for k, v in targets.items() if k != 'seg')
        assert np.all(targets['seg'] == 255)
        np.testing.assert_allclose(meta['root_joint_cam'], ann['root_joint_cam'], atol=1e-6)
        x, y, w, h = ann['bbox']
        bx, by, bw, bh = meta['bbox']
        np.testing.assert_allclose([bx + bw / 2, by + bh / 2], [x + w / 2, y + h / 2], atol=1e-3)
        np.testing.assert_allclose([bw, bh], [1.5 * max(w, h)] * 2, rtol=1e-5)


def test_batches_collate_with_the_contract_shapes(roots):
    loader = torch.utils.data.DataLoader(load(DEX_YCB, 'test', roots['dex']), batch_size=4)
    inputs, targets, meta = next(iter(loader))
    s = SIZE
    assert inputs['img'].shape == (4, 3, s, s) and inputs['img'].dtype == torch.float32
    assert 0 <= inputs['img'].min() and inputs['img'].max() <= 1
    shapes = {'joints_img': (4, 21, 2), 'joints_coord_cam': (4, 21, 3), 'mano_pose': (4, 48),
              'mano_shape': (4, 10), 'seg': (4, s // 4, s // 4), 'mesh_coord_cam': (4, 778, 3)}
    assert {k: tuple(v.shape) for k, v in targets.items()} == shapes
    assert targets['seg'].dtype == torch.int64
    assert meta['root_joint_cam'].shape == (4, 3) and meta['flip'].tolist() == [1, 0, 1, 0]


# ------------------------------------------------------------------------ filtering and errors

def test_entries_outside_the_image_are_skipped_and_counted_once(roots, caplog):
    with caplog.at_level(logging.INFO, logger='interacthand'):
        ds = load(HO3D, 'train', roots['ho3d'])
    assert len(ds) == 5
    lines = [r.getMessage() for r in caplog.records if 'outside the image' in r.getMessage()]
    assert len(lines) == 1 and 'skipped 1 ' in lines[0], lines
    assert not any('segmentation mask' in r.getMessage() for r in caplog.records)   # all found


@pytest.mark.parametrize('cls,words', [
    (HO3D, ('HO3D_train_data.json', 'HandOccNet')),
    (DEX_YCB, ('DEX_YCB_s0_train_data.json', 'HandOccNet')),
    (SYNTH, ('SYNTH_train_data.json', 'data/SYNTH/generate.py', 'make quickstart')),
])
def test_missing_annotation_file_names_path_and_what_to_get(tmp_path, cls, words):
    with pytest.raises(UserError) as err:
        load(cls, 'train', tmp_path / 'nowhere')
    assert str(tmp_path / 'nowhere' / 'annotations') in str(err.value)
    for w in words:
        assert w in str(err.value)


def _copy_dex(roots, tmp_path) -> Path:
    root = tmp_path / 'dex'
    shutil.copytree(roots['dex'], root)
    return root


@pytest.mark.parametrize('damage,words', [
    (lambda text: text[:len(text) // 2], ('not valid JSON', 'line 1')),
    (lambda text: '[1, 2, 3]', ("'images' and 'annotations'",)),
    (lambda text: text.replace('"joints_coord_cam"', '"joints"'), ("no 'joints_coord_cam'",)),
    (lambda text: text.replace('"princpt": [331.0, 236.0]', '"princpt": [331.0]', 1),
     ("'cam_param.princpt' of the wrong size",)),
])
def test_malformed_annotation_file_names_file_and_problem(roots, tmp_path, damage, words):
    root = _copy_dex(roots, tmp_path)
    path = root / 'annotations' / 'DEX_YCB_s0_train_data.json'
    path.write_text(damage(path.read_text()))
    with pytest.raises(UserError) as err:
        load(DEX_YCB, 'train', root)
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize('damage,words', [
    (lambda p: p.unlink(), 'does not exist'),
    (lambda p: p.write_bytes(b'not a jpeg at all'), 'cannot be read'),
])
def test_missing_or_unreadable_image_names_the_file(roots, tmp_path, damage, words):
    root = _copy_dex(roots, tmp_path)
    ds = load(DEX_YCB, 'train', root)
    damage(ds.entries[2].img_path)
    with pytest.raises(UserError) as err:
        ds[2]
    assert str(root) in str(err.value) and str(ds.entries[2].img_path) in str(err.value)
    assert words in str(err.value)


def test_registry_builds_by_name_and_lists_names_for_unknown_ones(roots):
    from config import DATASETS, Config
    assert tuple(DATASET_CLASSES) == DATASETS
    conf = Config(dexycb_root=str(roots['dex']), input_img_shape='128,128')
    ds = build_dataset('DEX_YCB', TO_TENSOR, 'test', conf)
    assert isinstance(ds, DEX_YCB) and ds.data_split == 'test' and ds.root == roots['dex']
    assert ds[0][0]['img'].shape == (3, 128, 128)
    with pytest.raises(UserError) as err:
        build_dataset('FreiHAND', TO_TENSOR, 'train', conf)
    assert "'FreiHAND'" in str(err.value) and all(n in str(err.value) for n in DATASETS)


def test_ho3d_v3_jpeg_images_are_found_even_when_the_first_is_missing(roots, tmp_path):
    root = tmp_path / 'ho3d_v3'
    shutil.copytree(roots['plain'], root)
    pngs = sorted(root.glob('train/*/rgb/*.png'))
    for png in pngs:                                   # v3 ships the same frames as JPEG
        cv2.imwrite(str(png.with_suffix('.jpg')), cv2.imread(str(png)))
        png.unlink()
    ds = load(HO3D, 'train', root)
    ds.entries[0].img_path.unlink()
    again = load(HO3D, 'train', root)
    assert all(e.img_path.suffix == '.jpg' and e.img_path.is_file() for e in again.entries[1:])
