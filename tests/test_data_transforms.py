"""utils.transforms and utils.preprocessing: projection, crop boxes, the crop affine (scale,
rotation, mirroring, label-map pixel centres), augmentation ranges, and the MANO facts the loaders
rely on (rotating the global pose rotates the joints; mirrored poses give mirrored hands)."""
import numpy as np
import pytest
import torch

from utils.mano import ManoLayer
from utils.preprocessing import (AugParams, bbox_from_joints, crop_affine, label_affine,
                                 process_bbox, sample_aug, warp_image, warp_labels, whole_image_box)
from utils.transforms import (apply_affine, cam2pixel, mirror_pose, mirror_x, pixel2cam,
                              rotate_global_pose, rotate_points, rotation_z)

FOCAL, PRINCPT = np.array([610.0, 600.0]), np.array([321.0, 237.5])


def test_cam2pixel_matches_the_pinhole_matrix_and_pixel2cam_inverts_it():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 1.0], size=(50, 3))
    k = np.array([[FOCAL[0], 0, PRINCPT[0]], [0, FOCAL[1], PRINCPT[1]], [0, 0, 1]])
    hom = pts @ k.T
    uv = cam2pixel(pts, FOCAL, PRINCPT)
    np.testing.assert_allclose(uv, hom[:, :2] / hom[:, 2:], atol=1e-9)
    np.testing.assert_allclose(pixel2cam(uv, pts[:, 2], FOCAL, PRINCPT), pts, atol=1e-12)


def test_rotation_z_rotates_projections_about_the_principal_point():
    rng = np.random.default_rng(1)
    pts = rng.uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 1.0], size=(20, 3))
    rot = rotation_z(25.0)
    uv = cam2pixel(pts, [500, 500], [0, 0])
    uv_rot = cam2pixel(rotate_points(pts, rot), [500, 500], [0, 0])
    c, s = np.cos(np.deg2rad(25)), np.sin(np.deg2rad(25))
    np.testing.assert_allclose(uv_rot, uv @ np.array([[c, -s], [s, c]]).T, atol=1e-9)


def test_bbox_from_joints_is_the_expanded_extent():
    joints = np.array([[10.0, 20.0], [50.0, 30.0], [30.0, 60.0]])
    np.testing.assert_allclose(bbox_from_joints(joints, 1.5), [0, 10, 60, 60])


def test_process_bbox_clips_squares_and_drops_boxes_outside_the_image():
    assert process_bbox(np.array([700.0, 10, 50, 50]), 640, 480) is None
    assert process_bbox(np.array([-80.0, -80, 50, 50]), 640, 480) is None
    assert process_bbox(np.array([10.0, 10, 0, 50]), 640, 480) is None
    x, y, w, h = process_bbox(np.array([100.0, 200, 40, 100]), 640, 480, expansion=1.5)
    np.testing.assert_allclose([x + w / 2, y + h / 2, w, h], [120, 250, 150, 150], rtol=1e-6)
    x, y, w, h = process_bbox(np.array([-20.0, 100, 60, 30]), 640, 480)  # clipped to x >= 0 first
    np.testing.assert_allclose([x + w / 2, y + h / 2, w, h], [20, 115, 40, 40], rtol=1e-6)
    x, y, w, h = process_bbox(np.array([10.0, 10, 60, 30]), 640, 480, aspect_ratio=2.0)
    assert abs(w / h - 2.0) < 1e-6


def test_crop_affine_maps_the_box_onto_the_crop():
    box, size = np.array([100.0, 50.0, 80.0, 80.0]), 256
    a = crop_affine(box, size, AugParams())
    corners = [[0, 0], [size, size]]
    np.testing.assert_allclose(apply_affine([[100, 50], [180, 130]], a), corners, atol=1e-9)
    # mirrored: the box's right edge becomes the crop's left edge
    a = crop_affine(box, size, AugParams(), flip=True, img_width=640)
    np.testing.assert_allclose(apply_affine([[180, 50], [100, 130]], a), corners, atol=1e-9)
    # scale 1.25 shows a 1.25x larger box; rotation: the box axes turned by +rot become crop axes
    a = crop_affine(box, size, AugParams(scale=1.25, rot=30.0))
    c, s = np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))
    centre, half = np.array([140.0, 90.0]), 1.25 * 40
    pts = [centre, centre + half * np.array([c, s]), centre + half * np.array([-s, c])]
    np.testing.assert_allclose(apply_affine(pts, a), [[128, 128], [256, 128], [128, 256]], atol=1e-9)


def test_warps_mirror_exactly_and_labels_keep_their_values():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_image(img, mirror_x(32), 32), img[:, ::-1])
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(48, 64))
    a = crop_affine(np.array([5.0, 0, 48, 48]), 64, AugParams(scale=0.9, rot=17.0))
    out = warp_labels(labels, a, 64)
    assert set(np.unique(out)) <= {0, 1, 2, 255}


def test_label_affine_matches_pixel_centres_between_resolutions():
    # a label map at 1/4 of the image size, crop = whole image: label pixel j is crop cell j
    a = label_affine(np.eye(3), (120, 160), (480, 640), stride=4)
    np.testing.assert_allclose(a, np.eye(3), atol=1e-12)
    # a full-size label map: small pixel j covers image pixels 4j .. 4j+3, centre 4j + 1.5
    a = label_affine(np.eye(3), (480, 640), (480, 640), stride=4)
    np.testing.assert_allclose(apply_affine([[1.5, 5.5]], a), [[0, 1]], atol=1e-12)
    labels = np.tile(np.arange(1, 161, dtype=np.uint8), (120, 1))
    out = warp_labels(labels, label_affine(np.eye(3), (120, 160), (480, 640)), 160)
    np.testing.assert_array_equal(out[:120], labels)
    assert np.all(out[120:] == 0)  # below the image: padding


def test_augmentation_ranges_follow_the_reference():
    rng = np.random.default_rng(3)
    draws = [sample_aug(rng) for _ in range(4000)]
    scale = np.array([d.scale for d in draws])
    rot = np.array([d.rot for d in draws])
    color = np.stack([d.color for d in draws])
    assert scale.min() >= 0.75 and scale.max() <= 1.25 and abs(scale.mean() - 1) < 0.01
    assert abs((rot != 0).mean() - 0.6) < 0.03 and np.abs(rot).max() <= 60
    assert 25 < rot[rot != 0].std() < 30   # N(0, 30 deg) clipped at 2 std
    assert color.min() >= 0.8 and color.max() <= 1.2 and color.shape == (4000, 3)


@pytest.fixture(scope='module')
def layers():
    return {s: ManoLayer(side=s, dtype=torch.float64) for s in ('right', 'left')}


def _joints(layer, pose, shape):
    with torch.no_grad():
        _, j = layer(torch.as_tensor(pose)[None].double(), torch.as_tensor(shape)[None].double())
    return (j[0] - j[0, :1]).numpy()


def test_rotating_the_global_pose_rotates_the_root_relative_joints(layers):
    rng = np.random.default_rng(4)
    for angle in (-50.0, 12.0, 59.0):
        pose, shape = rng.normal(0, 0.5, 48), rng.normal(0, 1, 10)
        rot = rotation_z(angle)
        np.testing.assert_allclose(_joints(layers['right'], rotate_global_pose(pose, rot), shape),
                                   _joints(layers['right'], pose, shape) @ rot.T, atol=1e-6)


def test_mirrored_pose_on_the_right_model_is_the_mirrored_left_hand(layers):
    rng = np.random.default_rng(5)
    pose, shape = rng.normal(0, 0.5, 48), rng.normal(0, 1, 10)
    left = _joints(layers['left'], pose, shape)
    right = _joints(layers['right'], mirror_pose(pose), shape)
    np.testing.assert_allclose(right, left * np.array([-1, 1, 1]), atol=1e-6)


@pytest.mark.parametrize('width, height, aspect', [(640, 480, 1.0), (300, 900, 1.0), (640, 480, 0.75)])
def test_whole_image_box_holds_the_image_at_the_aspect(width, height, aspect):
    x, y, w, h = whole_image_box(width, height, aspect)
    assert w / h == pytest.approx(aspect)
    assert x <= 0 and y <= 0 and x + w >= width - 1 and y + h >= height - 1      # every pixel centre
    assert (x + w / 2, y + h / 2) == pytest.approx(((width - 1) / 2, (height - 1) / 2))
    assert min(x + w - (width - 1), y + h - (height - 1)) == pytest.approx(0, abs=1e-3)  # tight
