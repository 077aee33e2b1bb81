"""SYNTH generator: the on-disk schema, determinism, and ground truth that agrees with independent
computations (MANO layer, pinhole projection, re-rendered depth, point-to-mesh distances)."""
import json
import random
import re

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from errors import UserError
from SYNTH.frames import FrameMaker
from SYNTH.generate import annotation_path, generate, parse_args, write_grid
from utils.mano import ManoLayer
from utils.render import MeshRenderer, RenderMesh
from utils.transforms import intrinsics

SEED = 11
NUM = {'train': 8, 'evaluation': 4}
ANN_KEYS = {'id', 'image_id', 'category_id', 'cam_param', 'joints_coord_cam', 'joints_img',
            'mano_param', 'hand_type', 'bbox', 'root_joint_cam', 'occlusion', 'seg_file_name',
            'num_objects'}


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    """A tiny SYNTH set written in this process (8 train + 4 evaluation frames)."""
    out = tmp_path_factory.mktemp('synth')
    generate(out, NUM['train'], NUM['evaluation'], SEED, workers=1)
    return out


def load(out, split):
    return json.loads(annotation_path(out, split).read_text())


def frames(out):
    """(split, image entry, annotation) for every frame of both splits."""
    for split in NUM:
        data = load(out, split)
        yield from ((split, img, ann) for img, ann in zip(data['images'], data['annotations']))


@pytest.fixture(scope='module')
def scenes(synth):
    """Every frame made again in this process: {(split, index): Frame}, and the maker (whose
    full-size renderer the checks below reuse)."""
    maker = FrameMaker()
    made = {(split, i): maker.make(SEED, split, i) for split in NUM for i in range(NUM[split])}
    yield made, maker
    maker.close()


@pytest.fixture(scope='module')
def layer():
    return ManoLayer()


def mano(layer, ann):
    p = ann['mano_param']
    verts, joints = layer(torch.tensor([p['pose']]), torch.tensor([p['shape']]), torch.tensor([p['trans']]))
    return verts[0].double().numpy(), joints[0].double().numpy()


# ---------------------------------------------------------------------------------------------
# Schema

def test_files_follow_the_contract(synth, layer):
    for split in NUM:
        data = load(synth, split)
        assert set(data) == {'info', 'images', 'annotations', 'categories'}
        assert data['info'] == {'generator': 'InteractHand SYNTH', 'seed': SEED, 'split': split,
                                'hand_model': layer.model_id, 'width': 640, 'height': 480}
        assert data['categories'] == [{'id': 1, 'name': 'hand'}]
        assert len(data['images']) == len(data['annotations']) == NUM[split]
        coco = COCO(str(annotation_path(synth, split)))        # pycocotools reads it
        assert sorted(coco.getImgIds()) == list(range(NUM[split]))
    for split, img, ann in frames(synth):
        assert set(img) == {'id', 'file_name', 'width', 'height'}
        assert img['file_name'] == f"{split}/rgb/{img['id']:06d}.jpg"
        assert (img['width'], img['height']) == (640, 480)
        assert set(ann) == ANN_KEYS
        assert ann['image_id'] == img['id'] and ann['category_id'] == 1 and ann['hand_type'] == 'right'
        assert np.shape(ann['joints_coord_cam']) == (21, 3) and np.shape(ann['joints_img']) == (21, 2)
        assert set(ann['mano_param']) == {'pose', 'shape', 'trans'}
        assert [len(ann['mano_param'][k]) for k in ('pose', 'shape', 'trans')] == [48, 10, 3]
        assert set(ann['cam_param']) == {'focal', 'princpt'}
        fx, fy = ann['cam_param']['focal']
        cx, cy = ann['cam_param']['princpt']
        assert 590 < fx < 640 and 590 < fy < 640 and abs(cx - 320) < 10 and abs(cy - 240) < 10
        assert ann['root_joint_cam'] == ann['joints_coord_cam'][0]
        assert 0.3 < ann['root_joint_cam'][2] < 1.0
        assert 0 <= ann['occlusion'] <= 1 and 1 <= ann['num_objects'] <= 3
        assert re.fullmatch(rf"{split}/seg/{img['id']:06d}\.png", ann['seg_file_name'])
        x, y, w, h = ann['bbox']
        assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480 and w > 20 and h > 20
        image = cv2.imread(str(synth / img['file_name']))
        seg = cv2.imread(str(synth / ann['seg_file_name']), cv2.IMREAD_UNCHANGED)
        assert image.shape == (480, 640, 3) and seg.shape == (480, 640) and seg.dtype == np.uint8
        assert set(np.unique(seg)) <= {0, 1, 2} and (seg == 1).any()


# ---------------------------------------------------------------------------------------------
# Determinism

def test_same_seed_gives_the_same_data_whatever_the_workers(synth, tmp_path):
    """Frame i depends on (seed, split, i) only: the first frames made by two worker processes
    equal those made in this process."""
    generate(tmp_path, 4, 2, SEED, workers=2)
    for split, count in (('train', 4), ('evaluation', 2)):
        data, ref = load(tmp_path, split), load(synth, split)
        assert data['info'] == ref['info']
        assert data['annotations'] == ref['annotations'][:count]
        for img, ann in zip(data['images'], data['annotations']):
            for name in (img['file_name'], ann['seg_file_name']):
                assert (tmp_path / name).read_bytes() == (synth / name).read_bytes(), name


def test_a_fresh_process_made_the_same_frames(synth_set, tmp_path):
    """conftest's synth_set was written by the generator's command line, in a fresh process, with
    seed 3; the same seed here, in a process whose global random generators other tests (and
    this one) have moved, gives the same first frames, byte for byte."""
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    generate(tmp_path, 2, 1, 3, workers=1)
    for split, count in (('train', 2), ('evaluation', 1)):
        data, ref = load(tmp_path, split), load(synth_set, split)
        assert data['info'] == {**ref['info'], 'seed': 3}
        assert data['annotations'] == ref['annotations'][:count]
        for img, ann in zip(data['images'], data['annotations']):
            for name in (img['file_name'], ann['seg_file_name']):
                assert (tmp_path / name).read_bytes() == (synth_set / name).read_bytes(), name


def test_frames_are_made_again_identically(synth, scenes):
    made, _ = scenes
    for split, img, ann in frames(synth):
        again = made[split, img['id']].annotation()
        assert again == {k: v for k, v in ann.items() if k not in ('id', 'image_id', 'category_id',
                                                                    'seg_file_name')}


def test_another_seed_gives_other_data(synth, tmp_path):
    generate(tmp_path, 2, 0, SEED + 1, workers=1)
    ours, theirs = load(synth, 'train')['annotations'][:2], load(tmp_path, 'train')['annotations']
    for a, b in zip(ours, theirs):
        assert a['mano_param'] != b['mano_param']
        assert (synth / 'train/rgb/000000.jpg').read_bytes() != (tmp_path / 'train/rgb/000000.jpg').read_bytes()


def test_interrupted_run_leaves_no_annotation_over_new_frames(tmp_path, monkeypatch, capsys):
    """A complete set, then a run with another seed stopped after two frames: the old annotation
    file must not survive next to the new frames."""
    import SYNTH.generate as gen
    generate(tmp_path, 2, 0, SEED, workers=1)
    assert annotation_path(tmp_path, 'train').is_file()
    make, made = gen._make_and_write, []

    def stop_at_third(task):
        if len(made) == 2:
            raise KeyboardInterrupt
        made.append(task)
        return make(task)
    monkeypatch.setattr(gen, '_make_and_write', stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, 4, 0, SEED + 1, workers=1)
    assert not annotation_path(tmp_path, 'train').exists()
    assert not list((tmp_path / 'annotations').iterdir())           # no temporary file either
    assert 'incomplete and have no annotation file' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Ground truth against independent computations

def test_mano_params_reproduce_the_joints(synth, layer):
    for _, _, ann in frames(synth):
        _, joints = mano(layer, ann)
        np.testing.assert_allclose(joints, ann['joints_coord_cam'], atol=2e-6)   # 0.002 mm


def test_the_whole_hand_is_inside_the_frame(synth, layer):
    for _, _, ann in frames(synth):
        verts, _ = mano(layer, ann)
        f, c = np.array(ann['cam_param']['focal']), np.array(ann['cam_param']['princpt'])
        uv = f * verts[:, :2] / verts[:, 2:] + c
        assert (verts[:, 2] > 0).all() and (uv >= 0).all() and (uv < [640, 480]).all()


def test_joints_img_is_the_projection_of_the_joints(synth):
    for _, _, ann in frames(synth):
        xyz = np.array(ann['joints_coord_cam'])
        f, c = np.array(ann['cam_param']['focal']), np.array(ann['cam_param']['princpt'])
        np.testing.assert_allclose(f * xyz[:, :2] / xyz[:, 2:] + c, ann['joints_img'], atol=1e-3)


def test_segmentation_and_occlusion_agree_with_a_re_render(synth, scenes, layer):
    """Hand mesh from the annotation's MANO parameters, objects from the re-made scene, rendered
    to depth here: the visible hand is where the hand alone is the front surface."""
    made, maker = scenes
    r = maker.renderer
    for split, img, ann in frames(synth):
        verts, _ = mano(layer, ann)
        K = intrinsics(ann['cam_param']['focal'], ann['cam_param']['princpt'])
        hand = RenderMesh(verts, layer.faces.numpy())
        objects = [RenderMesh(*obj.mesh()) for obj in made[split, img['id']].scene.objects]
        hand_depth = r.depth([hand], K)
        full_depth = r.depth([hand, *objects], K)
        silhouette = hand_depth > 0
        visible = silhouette & (full_depth >= hand_depth * (1 - 1e-5))
        seg = cv2.imread(str(synth / ann['seg_file_name']), cv2.IMREAD_UNCHANGED)
        assert ((seg == 1) != visible).sum() <= 0.005 * silhouette.sum()
        assert ((seg == 2) != ((full_depth > 0) & ~visible)).sum() <= 0.005 * silhouette.sum()
        assert ann['occlusion'] == pytest.approx(1 - visible.sum() / silhouette.sum(), abs=0.005)
        ys, xs = np.nonzero(silhouette)
        np.testing.assert_allclose(ann['bbox'], [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                                 ys.max() - ys.min() + 1], atol=1)


def point_triangle_distance(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(P, 3) points, (T, 3, 3) triangles -> (P,) distance to the nearest triangle: the nearest
    point is inside a triangle (then it is the projection) or on one of its edges."""
    a, b, c = (tri[None, :, i] for i in range(3))
    x = p[:, None]
    n = np.cross(b - a, c - a)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    proj = x - ((x - a) * n).sum(-1, keepdims=True) * n
    inside = np.ones(proj.shape[:2], bool)
    for u, v in ((a, b), (b, c), (c, a)):
        inside &= (np.cross(v - u, proj - u) * n).sum(-1) >= 0
    best = np.where(inside, np.linalg.norm(x - proj, axis=-1), np.inf)
    for u, v in ((a, b), (b, c), (c, a)):
        t = np.clip(((x - u) * (v - u)).sum(-1) / ((v - u) ** 2).sum(-1), 0, 1)[..., None]
        best = np.minimum(best, np.linalg.norm(x - (u + t * (v - u)), axis=-1))
    return best.min(axis=1)


def winding_number(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(P, 3) points, (T, 3, 3) triangles of a closed mesh -> (P,) generalised winding number
    (1 inside, 0 outside): the triangles' solid angles (Van Oosterom & Strackee) over 4 pi."""
    a, b, c = (tri[None, :, i] - p[:, None] for i in range(3))
    la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
    num = (a * np.cross(b, c)).sum(-1)
    den = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
    return (2 * np.arctan2(num, den)).sum(axis=1) / (4 * np.pi)


def test_objects_touch_the_hand_without_cutting_into_it(synth, scenes, layer):
    made, _ = scenes
    for split, img, ann in frames(synth):
        objs = made[split, img['id']].scene.objects
        assert len(objs) == ann['num_objects'] >= 1
        verts, _ = mano(layer, ann)
        for obj in objs:
            ov, of = obj.mesh()
            reach = np.linalg.norm(ov - obj.centre, axis=1).max() + 0.004
            near = verts[np.linalg.norm(verts - obj.centre, axis=1) < reach]
            assert len(near), 'no hand vertex near the object'
            dist = point_triangle_distance(near, ov[of])
            signed = np.where(winding_number(near, ov[of]) > 0.5, -dist, dist)
            assert signed.min() < 0.003, 'object does not touch the hand'      # within 3 mm
            assert signed.min() > -0.003, 'object cuts into the hand'          # at most 3 mm deep


def test_distance_helpers_on_a_cube():
    """The reference geometry above, checked on a unit cube (12 triangles)."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    pts = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 1.2], [2.0, 2.0, 2.0], [0.9, 0.5, 0.5]])
    np.testing.assert_allclose(point_triangle_distance(pts, corners[faces]),
                               [0.5, 0.2, np.sqrt(3), 0.1], atol=1e-12)
    np.testing.assert_allclose(np.abs(winding_number(pts, corners[faces])), [1, 0, 0, 1], atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Picture and command line

def _inside(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Tile pixels whose whole footprint in the frame lies well inside ``mask`` (3 px from its
    edge, beyond the drawn outline)."""
    core = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8))
    return cv2.resize(core.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.999


def test_grid_picture(synth, tmp_path):
    """2 x 2 tiles of the first four frames, in order: background as in the frame, the visible
    hand and the objects tinted (12 %) and outlined with their label colours, and a black box
    with the occlusion written in white in the corner."""
    png = tmp_path / 'grid.png'
    write_grid(synth, png, count=4)
    grid = cv2.imread(str(png))[..., ::-1].astype(np.float64)
    assert grid.shape == (384, 512, 3)                         # 2 x 2 tiles of 256 x 192
    data = load(synth, 'train')
    tints = {1: np.array([40, 220, 60]), 2: np.array([230, 60, 220])}   # utils.vis.LABEL_COLOURS
    for k, (img, ann) in enumerate(zip(data['images'][:4], data['annotations'][:4])):
        tile = grid[192 * (k // 2):192 * (k // 2 + 1), 256 * (k % 2):256 * (k % 2 + 1)]
        frame = cv2.imread(str(synth / img['file_name']))[..., ::-1]
        small = cv2.resize(frame, (256, 192), interpolation=cv2.INTER_AREA).astype(np.float64)
        seg = cv2.imread(str(synth / ann['seg_file_name']), cv2.IMREAD_UNCHANGED)
        text = np.zeros((192, 256), bool)
        text[:19, :125] = True
        background = _inside(seg == 0, (256, 192)) & ~text
        assert background.sum() > 1000
        assert np.abs(tile[background] - small[background]).max() <= 2, k    # this frame, untouched
        for label, tint in tints.items():
            inside = _inside(seg == label, (256, 192)) & ~text
            if inside.sum() < 20:
                continue
            np.testing.assert_allclose(tile[inside], 0.88 * small[inside] + 0.12 * tint, atol=2.5)
            outline = np.all(np.abs(tile - tint) <= 2, axis=-1) & ~text
            assert outline.sum() > 10, (k, label)
        box = tile[:18, :124]
        assert np.median(box) == 0 and (box.min(-1) > 200).sum() > 30    # white text on black
    with pytest.raises(UserError, match='needs 16 train frames'):
        write_grid(synth, png)


@pytest.mark.parametrize('argv, message', [
    (['--num-train', '-1'], '--num-train is -1'),
    (['--num-train', '0', '--num-eval', '0'], 'nothing to generate'),
    (['--workers', '0'], '--workers is 0'),
    (['--seed', '-3'], '--seed is -3'),
    (['--num-train', '8', '--grid', 'g.png'], '--grid needs 16 training frames'),
])
def test_bad_arguments_are_user_errors(argv, message):
    with pytest.raises(UserError, match=message):
        parse_args(argv)


def test_unwritable_output_is_a_user_error(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(UserError, match='cannot create the output folder'):
        generate(blocker / 'out', 1, 0, SEED, workers=1)


def test_closing_one_renderer_keeps_the_others_working():
    """pyrender ends the EGL display shared by a process's renderers when one is deleted;
    MeshRenderer.close must not break the renderers still open."""
    tri = RenderMesh(np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.0, 0.1, 1.0]]),
                     np.array([[0, 1, 2], [0, 2, 1]]))
    K = intrinsics((100, 100), (32, 24))
    first, second = MeshRenderer(64, 48), MeshRenderer(64, 48)
    before = second.depth([tri], K)
    # the triangle projects to (22, 14), (42, 14), (32, 34): 200 pixels at depth 1 m
    covered = before > 0
    assert np.allclose(before[covered], 1.0, atol=1e-4) and 170 < covered.sum() < 230
    ys, xs = np.nonzero(covered)
    assert xs.min() >= 21 and xs.max() <= 42 and ys.min() >= 13 and ys.max() <= 34
    assert covered[24, 32] and not covered[5, 5]
    first.close()
    np.testing.assert_array_equal(second.depth([tri], K), before)
    second.close()
