"""The demo (demo/demo.py), the inference API under it (common/inference.py) and the closed-form
placement fits (utils/fit.py).

The demo tests run on a checkpoint trained here for two optimisation steps on a tiny SYNTH set
(cpu preset) and saved in the Trainer's snapshot format; they check the five output files and
how they agree with each other and with an independent MANO forward pass, folder mode, and the
user errors.
"""
import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.optimize import least_squares
from torchvision import transforms

import inference
from checkpoints import save_checkpoint
from config import Config
from errors import UserError
from utils.fit import (FitError, default_focal, fit_translation, fit_weak_perspective, image_center,
                       reprojection_error)
from utils.mano import JOINT_NAMES, ManoLayer
from utils.render import OverlayRenderer
from utils.preprocessing import AugParams, crop_affine, label_affine, warp_labels
from utils.transforms import cam2pixel
from utils.vis import (FINGER_COLOURS, FINGERS, LABEL_COLOURS, WRIST_COLOUR, colour_labels, draw_skeleton,
                       prediction_sheet)

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = ('_mesh.obj', '_overlay.png', '_keypoints.png', '_seg.png', '_result.json')


def _load_demo():
    spec = importlib.util.spec_from_file_location('demo_script', ROOT / 'demo' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


# ---------------------------------------------------------------- the fits

def _hand_joints(seed: int) -> np.ndarray:
    """(21, 3) root-relative joints of a random pose of the hand model in use, float64."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(1, 48, generator=g) * 0.4
    with torch.no_grad():
        _, joints = ManoLayer()(pose, torch.zeros(1, 10))
    return (joints[0] - joints[0, 0]).double().numpy()


@pytest.mark.parametrize('seed', range(3))
def test_fit_translation_is_exact_on_noiseless_joints(seed):
    rng = np.random.default_rng(seed)
    joints = _hand_joints(seed)
    t = np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.1), rng.uniform(0.3, 0.9)])
    focal, princpt = np.array([610.0, 590.0]), np.array([330.0, 236.0])
    uv = cam2pixel(joints + t, focal, princpt)
    fitted = fit_translation(joints, uv, focal, princpt)
    np.testing.assert_allclose(fitted, t, atol=1e-9)
    assert reprojection_error(joints + fitted, uv, focal, princpt).max() < 1e-6


def test_fit_translation_on_noisy_joints_is_within_a_pixel_and_optimal():
    rng = np.random.default_rng(7)
    joints = _hand_joints(7)
    t, focal, princpt = np.array([0.04, -0.03, 0.5]), 620.0, np.array([320.0, 240.0])
    clean = cam2pixel(joints + t, (focal, focal), princpt)
    noisy = clean + rng.normal(scale=1.0, size=clean.shape)
    fitted = fit_translation(joints, noisy, focal, princpt)
    # the fitted hand projects within 1 px of the noiseless joints
    assert reprojection_error(joints + fitted, clean, focal, princpt).mean() < 1.0
    # and its pixel error is that of the geometric least-squares optimum (found iteratively)
    best = least_squares(lambda tt: (cam2pixel(joints + tt, (focal, focal), princpt) - noisy).ravel(), t).x
    rms = lambda tt: np.sqrt((reprojection_error(joints + tt, noisy, focal, princpt) ** 2).mean())  # noqa: E731
    assert rms(fitted) <= rms(best) + 1e-3


def test_fit_translation_does_not_pull_disagreeing_joints_towards_the_camera():
    """2D joints of another pose: the fit is still (nearly) the geometric least-squares optimum."""
    joints, other = _hand_joints(3), _hand_joints(4)
    focal, princpt = 600.0, np.array([320.0, 240.0])
    uv = cam2pixel(other + [0.05, 0.02, 0.7], (focal, focal), princpt)
    fitted = fit_translation(joints, uv, focal, princpt)
    best = least_squares(lambda tt: (cam2pixel(joints + tt, (focal, focal), princpt) - uv).ravel(),
                         [0.05, 0.02, 0.7]).x
    rms = lambda tt: np.sqrt((reprojection_error(joints + tt, uv, focal, princpt) ** 2).mean())  # noqa: E731
    assert rms(fitted) <= 1.01 * rms(best)
    assert fitted[2] == pytest.approx(best[2], rel=0.02)


def test_fit_translation_refuses_a_hand_behind_the_camera():
    joints = _hand_joints(5)
    focal, princpt = 600.0, np.array([320.0, 240.0])
    uv = cam2pixel(joints + [0.0, 0.0, 0.5], (focal, focal), princpt)
    with pytest.raises(FitError, match='no camera in front'):
        fit_translation(joints, 2 * princpt - uv, focal, princpt)   # the image turned by 180 degrees


def test_scale_and_translation_are_not_both_identifiable():
    """A hand twice as large, twice as far, has the same image: the fit returns exactly 2 t."""
    joints = _hand_joints(1)
    t, focal, princpt = np.array([-0.05, 0.02, 0.45]), 600.0, np.array([320.0, 240.0])
    uv = cam2pixel(joints + t, (focal, focal), princpt)
    np.testing.assert_allclose(fit_translation(2 * joints, uv, focal, princpt), 2 * t, atol=1e-9)


def test_fit_weak_perspective_is_exact():
    joints = _hand_joints(2)
    uv = 1234.5 * joints[:, :2] + np.array([300.0, 210.0])
    scale, offset = fit_weak_perspective(joints, uv)
    assert scale == pytest.approx(1234.5)
    np.testing.assert_allclose(offset, [300.0, 210.0], atol=1e-9)


# ---------------------------------------------------------------- image-space helpers

def test_box_from_labels_keeps_split_hand_and_drops_specks():
    labels = np.zeros((100, 120), np.uint8)
    labels[20:40, 10:30] = 1          # hand above an object
    labels[45:60, 15:35] = 1          # hand below it
    labels[40:45, 5:40] = 2
    labels[90, 110] = 1               # a speck
    np.testing.assert_array_equal(inference.box_from_labels(labels), [10, 20, 24, 39])
    assert inference.box_from_labels(np.zeros((10, 10), np.uint8)) is None


def test_seg_to_image_inverts_the_data_pipeline_crop():
    """Labels warped into a crop's 1/4 map the way the datasets do, as one-hot probabilities,
    come back to the same labels inside the crop."""
    labels = np.zeros((240, 320), np.uint8)
    cv2.circle(labels, (150, 120), 45, 1, -1)
    cv2.rectangle(labels, (170, 90), (230, 130), 2, -1)
    box, size = np.array([80.0, 50.0, 160.0, 160.0]), 128
    img2crop = crop_affine(box, size, AugParams())
    small = warp_labels(labels, label_affine(img2crop, labels.shape, labels.shape), size // 4)
    probs = np.eye(3, dtype=np.float32)[small].transpose(2, 0, 1)
    back = inference.seg_to_image(probs, img2crop, labels.shape)
    inside = np.zeros_like(labels, bool)
    inside[50:210, 80:240] = True
    assert (back[inside] == labels[inside]).mean() > 0.95
    assert (back[~inside] == 0).all()


def test_draw_skeleton_colours_joints_by_finger():
    joints = np.zeros((21, 2))
    joints[0] = (128, 240)
    for f in range(5):
        for k in range(4):
            joints[1 + 4 * f + k] = (30 + 48 * f, 200 - 45 * k)
    img = np.full((256, 256, 3), 30, np.uint8)
    out = draw_skeleton(img, joints)
    assert tuple(out[240, 128]) == WRIST_COLOUR
    for j in range(1, 21):
        u, v = joints[j].astype(int)
        assert tuple(out[v, u]) == FINGER_COLOURS[FINGERS[(j - 1) // 4]]
    assert (out[:5, :5] == img[:5, :5]).all() and (img == 30).all()


def test_colour_labels_tints_only_labelled_pixels():
    img = np.full((40, 60, 3), 100, np.uint8)
    labels = np.zeros((40, 60), np.uint8)
    labels[10:30, 5:25], labels[10:30, 35:55] = 1, 2
    out = colour_labels(img, labels, alpha=0.5)
    hand, obj = np.array(LABEL_COLOURS[1]), np.array(LABEL_COLOURS[2])
    np.testing.assert_allclose(out[20, 15], 0.5 * 100 + 0.5 * hand, atol=1)
    np.testing.assert_allclose(out[20, 45], 0.5 * 100 + 0.5 * obj, atol=1)
    assert (out[10, 5:25] == hand).all()                       # the outline
    assert (out[labels == 0] == 100).all()


# ---------------------------------------------------------------- the demo end to end

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny SYNTH set, and a snapshot after two training steps in output/model_dump/ of a
    temporary output_dir: (output_dir, snapshot path, an evaluation image)."""
    from SYNTH.generate import generate
    from SYNTH.SYNTH import SYNTH
    from model import get_model

    root = tmp_path_factory.mktemp('demo')
    synth = root / 'synth'
    generate(synth, num_train=2, num_eval=1, seed=5, workers=1)
    conf = Config().update(preset='cpu', trainset='SYNTH', synth_root=str(synth), output_dir=str(root / 'output'))
    torch.manual_seed(0)
    np.random.seed(0)                                     # the loader's augmentation
    dataset = SYNTH(transforms.ToTensor(), 'train', synth, conf.input_img_shape[0])
    inputs, targets, meta = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    model = get_model(conf, 'train')
    opt = torch.optim.Adam(model.parameters(), lr=conf.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(conf.lr_dec_epoch))
    for _ in range(2):
        loss = sum(model(inputs, targets, meta, 'train').values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    sched.step()
    path = conf.model_dir / 'snapshot_1.pth.tar'
    save_checkpoint({'epoch': 1, 'network': model.state_dict(), 'optimizer': opt.state_dict(),
                     'scheduler': sched.state_dict(), 'config': conf.to_dict(), 'preset': conf.preset,
                     'hand_model': model.hand_model_id}, path)
    return root / 'output', path, synth / 'evaluation' / 'rgb' / '000000.jpg'


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    verts, faces, comments = [], [], []
    for line in path.read_text().splitlines():
        kind, _, rest = line.partition(' ')
        if kind == 'v':
            verts.append([float(v) for v in rest.split()])
        elif kind == 'f':
            faces.append([int(v) for v in rest.split()])
        elif kind == '#':
            comments.append(rest)
    return np.array(verts), np.array(faces), comments


def _mano_mesh(result: dict) -> np.ndarray:
    """(778, 3) root-relative mesh of the JSON's MANO parameters, by the layer itself."""
    pose = torch.tensor([result['mano_pose']], dtype=torch.float64)
    shape = torch.tensor([result['mano_shape']], dtype=torch.float64)
    with torch.no_grad():
        verts, joints = ManoLayer(dtype=torch.float64)(pose, shape)
    return (verts[0] - joints[0, 0]).numpy()


def _png(path: Path) -> np.ndarray:
    return cv2.imread(str(path))[..., ::-1]


def test_demo_with_fit_writes_five_consistent_files(trained, tmp_path, monkeypatch):
    """--fit on a network stub whose crops all get one consistent prediction (its 2D joints the
    exact projection of its 3D joints moved by t, in the demo's default camera): the fit recovers
    t, and the five files agree with it, with each other and with an independent MANO pass of the
    JSON's pose and shape."""
    output_dir, ckpt, image = trained
    img = _png(image)
    h, w = img.shape[:2]
    t = np.array([0.03, -0.02, 0.6])
    truth = _consistent_prediction(t, default_focal(w, h), image_center(w, h))
    crops = []

    def predict_crop(self, image_rgb, crop_box):
        crops.append(np.array(crop_box, dtype=np.float64))
        return dataclasses.replace(truth, crop_box=np.asarray(crop_box, dtype=np.float32))
    monkeypatch.setattr(inference.HandReconstructor, 'predict_crop', predict_crop)

    uv = truth.joints_2d
    box = [*uv.min(0), *(uv.max(0) - uv.min(0))]                       # the hand's own box
    out = tmp_path / 'vis'
    demo.main(['--input', str(image), '--checkpoint', str(ckpt), '--gpu', 'cpu', '--out', str(out), '--fit',
               '--bbox', *(f'{v:.3f}' for v in box)])
    name = image.stem
    assert sorted(p.name for p in out.iterdir()) == sorted(name + s for s in SUFFIXES)
    result = json.loads((out / f'{name}_result.json').read_text())

    verts, faces, comments = _read_obj(out / f'{name}_mesh.obj')
    assert verts.shape == (778, 3) and faces.shape == (1538, 3)
    np.testing.assert_array_equal(faces, ManoLayer().faces.numpy() + 1)

    for key in ('mano_pose', 'mano_shape', 'joints_3d_root_relative_m', 'joints_2d_px', 'box',
                'hand_model', 'checkpoint', 'fit', 'joint_names', 'epoch', 'warnings'):
        assert key in result, key
    np.testing.assert_allclose(result['mano_pose'], truth.pose, atol=1e-6)
    np.testing.assert_allclose(result['joints_3d_root_relative_m'], truth.joints_rel, atol=1e-6)
    np.testing.assert_allclose(result['joints_2d_px'], truth.joints_2d, atol=1e-3)
    assert result['joint_names'] == list(JOINT_NAMES) and result['warnings'] == []
    assert result['checkpoint'] == str(ckpt) and result['hand_model'] == ManoLayer().model_id

    # the crop the network saw: a square 1.5x the hand box, about the same centre
    assert len(crops) == 1
    np.testing.assert_allclose(crops[0], result['box']['crop_box'], atol=0.01)
    assert result['box']['source'] == '--bbox'
    np.testing.assert_allclose(result['box']['hand_box'], box, atol=0.01)
    hx, hy, hw, hh = result['box']['hand_box']
    cx, cy, cw, ch = result['box']['crop_box']
    assert cw == pytest.approx(ch) and cw == pytest.approx(1.5 * max(hw, hh), rel=1e-3)
    np.testing.assert_allclose([cx + cw / 2, cy + ch / 2], [hx + hw / 2, hy + hh / 2], atol=0.01)

    # the fit: the documented default camera, the translation recovered, nothing left over
    fit = result['fit']
    assert fit['focal_px'] == [max(w, h)] * 2
    np.testing.assert_allclose(fit['princpt_px'], [(w - 1) / 2, (h - 1) / 2])
    assert 'failed' not in fit
    np.testing.assert_allclose(fit['translation_m'], t, atol=1e-6)
    np.testing.assert_allclose(fit['joints_3d_camera_m'], truth.joints_rel + t, atol=2e-6)
    assert fit['reprojection_error_px']['max'] < 1e-3
    assert any('fitted translation' in c for c in comments)
    # OBJ = the MANO mesh of the JSON's pose and shape, root-relative, moved by the translation
    np.testing.assert_allclose(verts, _mano_mesh(result) + t, atol=2e-6)

    # the skeleton is drawn at the reported 2D joints; the other pictures have the image's size
    keypoints = _png(out / f'{name}_keypoints.png')
    for u, v in np.round(uv).astype(int):
        assert np.abs(keypoints[v, u].astype(int) - img[v, u].astype(int)).max() > 0
    assert _png(out / f'{name}_seg.png').shape == img.shape
    overlay = _png(out / f'{name}_overlay.png')
    assert overlay.shape == img.shape
    wrist = np.round(uv[0]).astype(int)
    assert np.abs(overlay[wrist[1], wrist[0]].astype(int) - img[wrist[1], wrist[0]].astype(int)).max() > 3


def _consistent_prediction(t: np.ndarray, focal: float, princpt: np.ndarray) -> 'inference.Prediction':
    """A prediction whose 2D joints are the exact projection of its 3D joints moved by t."""
    pose = torch.randn(1, 48, generator=torch.Generator().manual_seed(11)) * 0.4
    with torch.no_grad():
        verts, joints = ManoLayer(dtype=torch.float64)(pose.double(), torch.zeros(1, 10, dtype=torch.float64))
    root = joints[0, 0]
    joints_rel, verts_rel = (joints[0] - root).numpy(), (verts[0] - root).numpy()
    uv = cam2pixel(joints_rel + t, (focal, focal), princpt)
    return inference.Prediction(joints_rel, verts_rel, uv, pose[0].numpy(), np.zeros(10), None,
                                crop_box=np.array([0.0, 0.0, 100.0, 100.0]))


def test_fitted_placement_and_its_overlay():
    """--fit on a consistent prediction: the translation is recovered, the OBJ mesh moved by it,
    and the overlay covers exactly where that mesh projects with the reported camera."""
    w, h = 320, 240
    t = np.array([0.03, -0.02, 0.6])
    pred = _consistent_prediction(t, default_focal(w, h), image_center(w, h))
    placement = inference.fitted_placement(pred, w, h, None)
    np.testing.assert_allclose(placement.info['translation_m'], t, atol=1e-6)
    np.testing.assert_allclose(placement.verts, pred.verts_rel + t, atol=1e-6)
    assert placement.info['reprojection_error_px']['max'] < 1e-3
    assert placement.K[0, 0] == placement.K[1, 1] == max(w, h)

    img = np.full((h, w, 3), 40, np.uint8)
    renderer = OverlayRenderer(ManoLayer().faces.numpy().astype(np.int64))
    try:
        overlay = renderer.render(img, placement.render_verts, placement.K)
    finally:
        renderer.close()
    rows, cols = np.nonzero(np.abs(overlay.astype(int) - img.astype(int)).max(-1) > 3)
    uv = cam2pixel(placement.verts, np.diag(placement.K)[:2], placement.K[:2, 2])
    assert len(rows) > 500
    assert cols.min() >= uv[:, 0].min() - 2 and cols.max() <= uv[:, 0].max() + 2
    assert rows.min() >= uv[:, 1].min() - 2 and rows.max() <= uv[:, 1].max() + 2


def test_shape_warnings_flag_implausible_betas():
    assert inference.shape_warnings(np.full(10, 2.5)) == []
    shape = np.zeros(10)
    shape[3] = -12.34
    (warning,) = inference.shape_warnings(shape)
    assert '|beta| = 12.3' in warning


def test_unfitted_placements():
    """Weak perspective: the overlay camera maps the wrist's depth plane exactly as u = s x + a;
    a failed --fit falls back to it and says why."""
    w, h = 320, 240
    c = image_center(w, h)
    pred = _consistent_prediction(np.array([0.0, 0.0, 0.5]), 400.0, c)
    placement = inference.weak_perspective_placement(pred, w, h)
    s, a = placement.info['scale_px_per_m'], np.array(placement.info['offset_px'])
    flat = pred.verts_rel.copy()
    flat[:, 2] = 0.0
    camera = flat + (placement.render_verts - pred.verts_rel)
    np.testing.assert_allclose(cam2pixel(camera, np.diag(placement.K)[:2], placement.K[:2, 2]),
                               s * flat[:, :2] + a, atol=1e-3)
    np.testing.assert_allclose(placement.verts, pred.verts_rel + [0, 0, inference.NOMINAL_DEPTH])

    pred.joints_2d = 2 * c - pred.joints_2d                        # turned by 180 degrees
    failed = inference.fitted_placement(pred, w, h, 500.0)
    assert 'no camera in front' in failed.info['failed'] and failed.info['focal_px'] == [500.0, 500.0]
    assert 'fit failed' in failed.message
    np.testing.assert_allclose(failed.verts, pred.verts_rel + [0, 0, inference.NOMINAL_DEPTH])


def test_demo_default_checkpoint_clipped_box_and_no_fit(trained, tmp_path, capsys):
    output_dir, ckpt, image = trained
    out = tmp_path / 'vis'
    w, h = _png(image).shape[1::-1]
    demo.main(['--input', str(image), '--gpu', 'cpu', '--out', str(out), '--bbox', str(w - 100), '50', '300', '200',
               '--set', f'output_dir={output_dir}'])
    captured = capsys.readouterr()
    assert 'sticks out' in captured.err and 'no --bbox' not in captured.out + captured.err
    assert f'{image.name}: hand box {w - 100} 50 99 200 (x y w h) from --bbox' in captured.out
    result = json.loads((out / f'{image.stem}_result.json').read_text())
    assert result['checkpoint'] == str(ckpt)                      # found in output_dir/model_dump
    assert result['box']['source'] == '--bbox'
    np.testing.assert_allclose(result['box']['hand_box'], [w - 100, 50, 99, 200])
    assert 'fit' not in result and result['placement']['scale_px_per_m'] != 0
    verts, _, comments = _read_obj(out / f'{image.stem}_mesh.obj')
    np.testing.assert_allclose(verts, _mano_mesh(result) + [0, 0, inference.NOMINAL_DEPTH], atol=2e-4)
    assert any('nominal' in c for c in comments)


def test_demo_folder_skips_what_is_not_an_image(trained, tmp_path, capsys):
    output_dir, ckpt, image = trained
    folder = tmp_path / 'in'
    folder.mkdir()
    shutil.copy(image, folder / 'hand.jpg')
    (folder / 'notes.txt').write_text('not an image\n')
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(40))
    cv2.imwrite(str(folder / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    out = tmp_path / 'vis'
    # a box for every image: the briefly trained hand localiser finds no hand (tests/test_localiser.py
    # covers folders without --bbox)
    summary = demo.main(['--input', str(folder), '--checkpoint', str(ckpt), '--gpu', 'cpu', '--out', str(out),
                         '--bbox', '200', '150', '150', '150'])
    assert summary['processed'] == ['hand']
    assert set(summary['skipped']) == {'notes.txt', 'broken.png', 'dot.png'}
    assert 'cannot be read as an image' in summary['skipped']['notes.txt']
    assert f'is only 1x1 pixels; pass an image at least {demo.MIN_SIDE}' in summary['skipped']['dot.png']
    captured = capsys.readouterr()
    assert '1 of 4 file(s) processed, 3 skipped' in captured.out and 'notes.txt' in captured.out
    assert sorted(p.name for p in out.iterdir()) == sorted('hand' + s for s in SUFFIXES)


def test_demo_user_errors(trained, tmp_path, monkeypatch):
    output_dir, ckpt, image = trained
    empty = tmp_path / 'empty_output'
    import quickstart
    assert demo.QUICKSTART_DIR == quickstart.OUT                        # where make quickstart writes
    monkeypatch.setattr(demo, 'QUICKSTART_DIR', tmp_path / 'no_quickstart')
    with pytest.raises(UserError, match='no checkpoint found') as err:
        demo.main(['--input', str(image), '--gpu', 'cpu', '--set', f'output_dir={empty}'])
    text = str(err.value)
    assert str(empty / 'model_dump') in text and str(tmp_path / 'no_quickstart' / 'model_dump') in text
    assert 'make quickstart' in text

    bad = tmp_path / 'photo.jpg'
    bad.write_text('hello')
    with pytest.raises(UserError, match=f'{bad} cannot be read as an image'):
        demo.main(['--input', str(bad), '--checkpoint', str(ckpt), '--gpu', 'cpu'])
    with pytest.raises(UserError, match='entirely outside'):
        demo.main(['--input', str(image), '--checkpoint', str(ckpt), '--gpu', 'cpu',
                   '--bbox', '5000', '10', '50', '50'])
    with pytest.raises(UserError, match='does not exist'):
        demo.main(['--input', str(tmp_path / 'nothing.jpg'), '--checkpoint', str(ckpt), '--gpu', 'cpu'])
    with pytest.raises(UserError, match=f'checkpoint {ckpt.parent} is a folder'):
        demo.main(['--input', str(image), '--checkpoint', str(ckpt.parent), '--gpu', 'cpu'])
    for extra, words in ((['--bbox', '10', '20', 'nan', '100'], r'--bbox 10 20 nan 100: give four finite'),
                         (['--bbox', '10', '20', '0.5', '0.5'], f'at least {demo.MIN_BOX} pixels'),
                         (['--fit', '--focal', 'inf'], '--focal inf must be a positive, finite')):
        with pytest.raises(UserError, match=words):
            demo.main(['--input', str(image), '--checkpoint', str(ckpt), '--gpu', 'cpu', *extra])


def test_prediction_sheet_puts_joints_and_labels_where_they_are():
    """Joints in 0..1 of a 64 px crop land on the matching pixel of a 160 px tile (crop pixel
    centres at integers: u -> (u + 0.5) * 2.5 - 0.5); rows: prediction, segmentation, truth."""
    crops = np.full((2, 64, 64, 3), 90, np.uint8)
    pred = np.full((2, 21, 2), 0.5)
    pred[1] = [0.25, 0.75]
    gt = np.full((2, 21, 2), 0.6)
    seg = np.zeros((2, 16, 16), np.int64)
    seg[1, 8:, 8:] = 2                                           # object in sample 1's lower right
    sheet = prediction_sheet(crops, pred, seg, gt)
    assert sheet.shape == (480, 320, 3)
    pinky = FINGER_COLOURS['pinky']                              # the last joint drawn, on top
    assert tuple(sheet[80, 80]) == pinky                         # (0.5 * 64 + 0.5) * 2.5 - 0.5 = 80.75
    assert tuple(sheet[121, 160 + 41]) == pinky                  # x 41.25, y 120.75 in tile 2
    assert tuple(sheet[80, 160 + 80]) == (90, 90, 90)            # nothing drawn where no joint is
    tinted = sheet[160 + 130, 160 + 130]                         # row 2, inside the object
    assert tuple(tinted) != (90, 90, 90) and tuple(sheet[160 + 40, 160 + 40]) == (90, 90, 90)
    assert tuple(sheet[320 + 97, 97]) == pinky                   # truth row: 0.6 -> pixel 96.75
    assert prediction_sheet(crops, pred).shape == (160, 320, 3)
    with pytest.raises(ValueError, match='joints_pred'):
        prediction_sheet(crops, pred[:, :20])
