"""Testing: one pass of a trained network over a test split, predictions mirrored back to each
hand's own side, fingertips taken as the test set defines them, and the metrics where the split
has ground truth. ``test.py`` and the validation during training (``val_every``) both use
:class:`Tester`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from config import Config
from inference import inference_forward
from loaders import build_loader, build_split, to_device
from runtime import Runtime
from utils.mano import FINGERTIPS, TIP_JOINTS
from utils.metrics import HandMetrics, IoUCounts, pa_mpjpe_by_bucket, seg_iou
from utils.transforms import apply_affine


def joints_to_image(joints_img: np.ndarray, img2crop: np.ndarray, size: int) -> np.ndarray:
    """Predicted 2D joints (B, 21, 2) in 0..1 of the crop -> (B, 21, 2) pixels of the original
    image, through the inverse of each item's ``img2crop`` (B, 2, 3) (mirroring included)."""
    full = np.concatenate([img2crop, np.tile([[[0.0, 0.0, 1.0]]], (len(img2crop), 1, 1))], axis=1)
    return np.stack([apply_affine(j * size, np.linalg.inv(m)) for j, m in zip(joints_img, full)])


@dataclass
class TestResult:
    """What a pass over a test set gives: predictions (root-relative, metres, mirrored back to the
    original side, fingertip joints at the test set's ``fingertips`` vertices), absolute wrist
    positions, the predicted 2D joints in the original images with each image's camera and id,
    and, when the set has ground truth, the metrics."""
    joints: np.ndarray                 # (N, 21, 3)
    verts: np.ndarray                  # (N, 778, 3)
    root_joint_cam: np.ndarray         # (N, 3)
    joints_2d: np.ndarray              # (N, 21, 2) original-image pixels
    focal: np.ndarray                  # (N, 2) pixels
    princpt: np.ndarray                # (N, 2) pixels
    image_ids: np.ndarray              # (N,) the annotation file's image ids
    metrics: HandMetrics | None = None
    occlusion: np.ndarray | None = None  # (N,) where the dataset records it (SYNTH), else None
    seg_counts: IoUCounts | None = None  # hand-class IoU counts, when the model segments
    # The first NUM_EXAMPLES samples as the network saw them, for a picture: 'img' (K, S, S, 3)
    # uint8 RGB crops, 'joints_img' (K, 21, 2) predicted, in 0..1 of the crop, and where available
    # 'seg' (K, S/4, S/4) predicted labels and 'joints_img_gt' (K, 21, 2).
    examples: dict[str, np.ndarray] | None = None

    def summary(self) -> dict:
        """The metrics (``utils.metrics.SUMMARY_KEYS``, mm and 0..1), the hand IoU and the
        PA-MPJPE per occlusion bucket, where each applies; empty without ground truth."""
        if self.metrics is None:
            return {}
        out = dict(self.metrics.summary())
        if self.occlusion is not None:
            out['pa_mpjpe_by_occlusion'] = pa_mpjpe_by_bucket(self.metrics.per_sample()['pa_mpjpe'],
                                                              self.occlusion)
        if self.seg_counts is not None:
            out['seg_iou_hand'] = self.seg_counts.iou
        return out


class Tester:
    """Runs a network (weights already loaded) over ``conf.testset``'s test split (or the given
    ``dataset``); scores it when the set has ground truth. Several GPUs: DataParallel; one GPU
    with ``conf.cuda_graphs``: replayed CUDA graphs (``inference.inference_forward``)."""

    NUM_EXAMPLES = 8

    def __init__(self, conf: Config, runtime: Runtime, model: nn.Module, dataset: Dataset | None = None):
        self.conf, self.rt = conf, runtime
        self.dataset = dataset if dataset is not None else build_split(conf, 'test')
        self.bare = model
        if len(runtime.gpu_ids) > 1 and not runtime.distributed:
            self.model = nn.DataParallel(model, device_ids=runtime.gpu_ids)
        else:
            self.model = inference_forward(model, conf, runtime.device)

    @torch.no_grad()
    def run(self, progress: bool = True) -> TestResult:
        """One pass over the split (the model in eval mode; its training mode is restored after)."""
        was_training = self.bare.training
        self.bare.eval()
        try:
            return self._run(progress)
        finally:
            self.bare.train(was_training)

    def _run(self, progress: bool) -> TestResult:
        loader = build_loader(self.conf, self.dataset, self.rt)
        has_gt = self.dataset.has_gt
        metrics = HandMetrics() if has_gt else None
        seg_counts = None
        tips = list(FINGERTIPS[getattr(self.dataset, 'fingertips', 'manopth')])
        size = self.conf.input_img_shape[0]
        joints, verts, roots, occlusion, joints_2d, cams, ids = [], [], [], [], [], [], []
        examples: dict[str, list[np.ndarray]] = {}
        for inputs, targets, meta in tqdm(loader, desc=f'test {self.conf.testset}', dynamic_ncols=True,
                                          disable=not progress, leave=False):
            out = self.model(to_device(inputs, self.rt.device), {}, {}, 'test')
            if sum(len(a) for a in examples.get('img', [])) < self.NUM_EXAMPLES:
                self._keep_examples(examples, inputs, targets if has_gt else None, out)
            x_sign = (1.0 - 2.0 * meta['flip'].float())[:, None]  # (B, 1): -1 mirrors a flipped sample back
            j, v = out['joints_coord_cam'].float().cpu(), out['mesh_coord_cam'].float().cpu()
            j[..., 0] *= x_sign
            v[..., 0] *= x_sign
            j[:, list(TIP_JOINTS)] = v[:, tips]   # the test set's fingertips, whatever the network's
            j, v = j.numpy(), v.numpy()
            joints.append(j)
            verts.append(v)
            roots.append(meta['root_joint_cam'].numpy())
            occlusion.append(meta['occlusion'].numpy())
            joints_2d.append(joints_to_image(out['joints_coord_img'].float().cpu().numpy(),
                                             meta['img2crop'].double().numpy(), size))
            cams.append(np.concatenate([meta['focal'].numpy(), meta['princpt'].numpy()], axis=1))
            ids.append(self._image_ids(meta['idx'].numpy()))
            if has_gt:
                metrics.update(j, targets['joints_coord_cam'].numpy(), v, targets['mesh_coord_cam'].numpy())
                if 'seg' in out:
                    counts = seg_iou(out['seg'].argmax(1).cpu().numpy(), targets['seg'].numpy())
                    seg_counts = counts if seg_counts is None else seg_counts + counts
        occ = np.concatenate(occlusion)
        kept = {k: np.concatenate(v)[:self.NUM_EXAMPLES] for k, v in examples.items()}
        cam = np.concatenate(cams).astype(np.float64)
        return TestResult(np.concatenate(joints), np.concatenate(verts), np.concatenate(roots),
                          np.concatenate(joints_2d), cam[:, :2], cam[:, 2:], np.concatenate(ids),
                          metrics, occ if (occ >= 0).all() else None, seg_counts, kept or None)

    def _image_ids(self, idx: np.ndarray) -> np.ndarray:
        """(B,) dataset indices -> the annotation file's image ids (the indices themselves for a
        dataset without entries)."""
        entries = getattr(self.dataset, 'entries', None)
        return np.array([entries[i].image_id for i in idx] if entries is not None else idx, dtype=np.int64)

    @staticmethod
    def _keep_examples(examples: dict[str, list[np.ndarray]], inputs: dict, targets: dict | None,
                       out: dict[str, torch.Tensor]) -> None:
        """Append a batch's crops and predictions (and ground-truth 2D joints) to ``examples``."""
        img = (inputs['img'].permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8)
        batch = {'img': img, 'joints_img': out['joints_coord_img'].float()}
        if 'seg' in out:
            batch['seg'] = out['seg'].argmax(1)
        if targets is not None:
            batch['joints_img_gt'] = targets['joints_img']
        for key, value in batch.items():
            examples.setdefault(key, []).append(value.cpu().numpy())
