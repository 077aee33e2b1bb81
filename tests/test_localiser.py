"""The hand localiser (nets/localiser.py) and finding the hand without a box: the training frames
and their boxes agree with the image, the heatmap and its decoding, the loss, the box mapped back
to the image, no hand found, a folder of images, and snapshots from before the localiser."""
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision import transforms

from checkpoints import load_checkpoint, model_config_from, save_checkpoint
from config import Config
from errors import UserError
from inference import MIN_HAND_SCORE, REFINE_WINDOW, HandReconstructor, load_model
from model import get_model
from nets.localiser import STRIDE, HandLocaliser, decode
from nets.loss import centre_heatmap, localiser_loss
from SYNTH.SYNTH import SYNTH
from utils.preprocessing import HAND, AugParams, crop_affine, whole_image_box

ROOT = Path(__file__).resolve().parents[1]
L = 128


def _logits_for(box: np.ndarray, size: int = L // STRIDE, peak: float = 8.0) -> torch.Tensor:
    """A localiser output (1, 5, s, s) whose heatmap peaks at the centre of ``box`` (0..1), whose
    size channels hold log(w, h) and offset channels the centre's place from each cell's corner
    (so that the peak cell, or a tied neighbour, decodes to the centre)."""
    heat = centre_heatmap(torch.as_tensor(np.asarray(box, np.float32)[None]), size)[0]
    out = torch.zeros(1, 5, size, size)
    out[0, 0] = peak * heat - 6.0                      # logits: about -6 far away, +2 at the peak
    out[0, 1:3] = torch.tensor(np.log(box[2:]), dtype=torch.float32)[:, None, None]
    centre = (np.asarray(box[:2]) + np.asarray(box[2:]) / 2) * size          # in cells
    corner = torch.arange(size, dtype=torch.float32)
    out[0, 3] = (float(centre[0]) - corner)[None, :]
    out[0, 4] = (float(centre[1]) - corner)[:, None]
    return out


@pytest.mark.parametrize('box', [np.array([0.2, 0.3, 0.2, 0.25]), np.array([0.61, 0.05, 0.12, 0.3])])
def test_decode_recovers_the_box_of_a_heatmap(box):
    got, score = decode(_logits_for(box))
    np.testing.assert_allclose(got[0].numpy(), box, atol=0.01)
    assert score.item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item(), abs=0.02)


def test_loss_is_lower_for_the_right_box_and_trains_the_localiser():
    box = torch.tensor([[0.3, 0.4, 0.2, 0.2]])
    right = localiser_loss(_logits_for(box[0].numpy()), box)
    wrong = localiser_loss(_logits_for(np.array([0.6, 0.1, 0.2, 0.2])), box)
    small = localiser_loss(_logits_for(np.array([0.35, 0.45, 0.1, 0.1])), box)   # right centre, half size
    assert right < small < wrong
    torch.manual_seed(0)
    net = HandLocaliser()
    frames, boxes = torch.rand(4, 3, 64, 64), torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.2, 0.3],
                                                            [0.2, 0.6, 0.3, 0.2], [0.6, 0.2, 0.25, 0.25]])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(60):                                         # it can fit four frames
        loss = localiser_loss(net(frames), boxes)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    net.eval()
    got, _ = decode(net(frames))
    assert (got[:, :2] + got[:, 2:] / 2 - boxes[:, :2] - boxes[:, 2:] / 2).abs().max() < 0.08


@pytest.mark.parametrize('zoom', [False, True])
def test_training_frames_show_the_hand_inside_their_box(synth_set, monkeypatch, zoom):
    """inputs['frame'] is the image seen through the window (the whole frame, or a zoom around the
    hand), colour-jittered; the hand pixels of the segmentation map warped the same way lie inside
    targets['frame_box'] and fill most of it."""
    import dataset as dataset_module
    windows = []

    def window(hand_box, width, height, rng=None):
        x, y, w, h = hand_box
        win = (np.array([x - w, y - h, 3 * max(w, h), 3 * max(w, h)], np.float32) if zoom
               else whole_image_box(width, height))
        windows.append(win)
        return win
    monkeypatch.setattr(dataset_module, 'sample_frame_window', window)
    ds = SYNTH(transforms.ToTensor(), 'train', synth_set, 96, frame_size=L)
    for idx in range(6):
        inputs, targets, _ = ds[(idx, 3)]
        frame, box = inputs['frame'].permute(1, 2, 0).numpy() * 255, targets['frame_box'] * L
        assert frame.shape == (L, L, 3) and targets['frame_box'].shape == (4,)
        e = ds.entries[idx]
        affine = crop_affine(windows[-1], L, AugParams())[:2]
        img = cv2.imread(str(e.img_path))[..., ::-1].astype(np.float32)
        warped = cv2.warpAffine(img, affine, (L, L))
        ratio = frame.reshape(-1, 3).sum(0) / np.maximum(warped.reshape(-1, 3).sum(0), 1)
        assert np.all((ratio > 0.75) & (ratio < 1.25))                     # the colour scale only
        assert np.abs(frame / ratio - warped).mean() < 3
        seg = cv2.imread(str(e.mask_path), cv2.IMREAD_GRAYSCALE)
        hand = cv2.warpAffine((seg == HAND).astype(np.uint8), affine, (L, L), flags=cv2.INTER_NEAREST) > 0
        ys, xs = np.nonzero(hand)
        inside = (xs >= box[0] - 2) & (xs <= box[0] + box[2] + 2) & (ys >= box[1] - 2) & (ys <= box[1] + box[3] + 2)
        assert inside.mean() > 0.6                                           # fingers' skin beyond the joints
        covered = hand[int(box[1]):int(box[1] + box[3]) + 1, int(box[0]):int(box[0] + box[2]) + 1].mean()
        assert covered > 0.15


def _seeing_localiser(frame: torch.Tensor) -> torch.Tensor:
    """A stand-in localiser that sees: the box (0..1) of the bright pixels in the frame it gets."""
    ys, xs = np.nonzero(frame[0, 0].numpy() > 0.5)
    size = frame.shape[-1]
    return _logits_for(np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]) / size)


@pytest.mark.parametrize('refine, mirror', [(0.0, False), (REFINE_WINDOW, False), (REFINE_WINDOW, True)])
def test_found_box_maps_back_to_the_image(monkeypatch, refine, mirror):
    """A localiser that finds a bright rectangle in whatever it is shown gives that rectangle in
    image pixels: the letterbox of the whole frame, the window of the second look and the mirror
    image undone. A score under MIN_HAND_SCORE means no hand."""
    conf = Config(preset='cpu', pretrained=False)
    model = get_model(conf, 'test')
    rec = HandReconstructor(model, conf)
    w, h = 640, 480
    img = np.zeros((h, w, 3), np.uint8)
    hand_img = np.array([400.0, 100.0, 120.0, 90.0])           # x, y, w, h in the image
    img[100:190, 400:520] = 255
    monkeypatch.setattr(model, 'locate', _seeing_localiser)
    box, source, score = rec.find_box(img, refine=refine, mirror=mirror)
    assert source == 'localiser' and score > MIN_HAND_SCORE
    pixel = w / L if refine == 0 else refine * hand_img[2] / L        # one localiser pixel in the image
    np.testing.assert_allclose(box, hand_img, atol=1.5 * pixel)
    monkeypatch.setattr(model, 'locate', lambda frame: _logits_for(np.array([0.4, 0.4, 0.2, 0.2]), peak=0.0))
    with pytest.raises(UserError, match='no hand found .*--bbox'):
        rec.find_box(img, refine=refine, mirror=mirror)


def _load_demo():
    spec = importlib.util.spec_from_file_location('demo_script_localiser', ROOT / 'demo' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_folder_without_bbox_skips_images_without_a_hand(tmp_path, monkeypatch, capsys):
    """A folder, no --bbox: the image where the localiser finds a hand is processed with that box
    (source and score in its result), the one where it finds none is skipped with the reason."""
    conf = Config(preset='cpu', pretrained=False)
    model = get_model(conf, 'test')
    ckpt = tmp_path / 'snapshot_1.pth.tar'
    save_checkpoint({'epoch': 1, 'network': model.state_dict(), 'config': conf.to_dict(),
                     'hand_model': model.hand_model_id}, ckpt)
    folder = tmp_path / 'in'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ('hand.png', 'empty.png'):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    box01 = np.array([0.4, 0.4, 0.2, 0.15])
    import inference
    real_find = inference.HandReconstructor.find_box

    def find_box(self, img):       # a hand in the first image only, told apart by its pixels
        hand = np.array_equal(img, cv2.imread(str(folder / 'hand.png'))[..., ::-1])
        self.model.locate = lambda frame: _logits_for(box01, peak=8.0 if hand else 0.0)
        return real_find(self, img)
    monkeypatch.setattr(inference.HandReconstructor, 'find_box', find_box)
    demo = _load_demo()
    out = tmp_path / 'vis'
    summary = demo.main(['--input', str(folder), '--checkpoint', str(ckpt), '--gpu', 'cpu', '--out', str(out)])
    assert summary['processed'] == ['hand'] and list(summary['skipped']) == ['empty.png']
    assert 'no hand found' in summary['skipped']['empty.png'] and '--bbox' in summary['skipped']['empty.png']
    result = json.loads((out / 'hand_result.json').read_text())
    assert result['box']['source'] == 'the hand localiser' and result['box']['score'] > MIN_HAND_SCORE
    assert 'hand localiser finds each hand box' in capsys.readouterr().err


def test_snapshots_from_before_the_localiser_load_without_one(tmp_path):
    """A snapshot whose config has no localiser_size (written before it existed) rebuilds a network
    without the localiser, and the demo falls back to the first pass over the whole frame."""
    conf = Config(preset='cpu', pretrained=False, localiser_size=0)
    model = get_model(conf, 'test')
    stored = {k: v for k, v in conf.to_dict().items() if k not in ('localiser_size', 'fingertips')}
    path = tmp_path / 'snapshot_3.pth.tar'
    save_checkpoint({'epoch': 3, 'network': model.state_dict(), 'config': stored}, path)
    assert model_config_from(load_checkpoint(path))['localiser_size'] == 0
    loaded, loaded_conf = load_model(path)
    assert loaded.localiser is None and loaded_conf.localiser_size == 0 and loaded_conf.fingertips == 'manopth'
    rec = HandReconstructor(loaded, loaded_conf)
    box, source, score = rec.find_box(np.full((200, 260, 3), 90, np.uint8))
    assert source in ('mask', 'joints') and score is None and box.shape == (4,)
