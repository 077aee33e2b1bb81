"""The InteractHand network, built from a config, and its parameter table.

``get_model(conf, mode)`` builds :class:`Model` from ``conf``; ``Model.forward(inputs, targets,
meta_info, mode)`` returns weighted losses ('train') or predictions ('test'), as docs/DESIGN.md
describes.
"""
from __future__ import annotations

import torch
from torch import nn

from config import MODEL_FIELDS, Config
from nets.backbone import FPN
from nets.iic import CGBlock, IET
from nets.let import LET, SelfAttention
from nets.localiser import HandLocaliser
from nets.loss import compute_losses, loss_weights
from nets.mano_head import ground_truth_mesh, root_relative_mesh
from nets.regressor import Regressor
from nets.segmentation import SegmentationHead, hand_feature, hand_image
from utils.mano import ManoLayer

MODES = ('train', 'test')


class Model(nn.Module):
    """InteractHand: image (B, 3, S, S) -> hand mesh, joints and (optionally) segmentation.

    FPN -> original feature F_o (B, C, S/8, S/8); segmentation head -> hand view -> hand feature
    F_h; IIC: IET(F_h asks F_o) then CGBlock(with F_h); LET refines; the regressor predicts 2D
    joints and MANO parameters. Each of ``use_seg`` / ``use_iet`` / ``use_cgblock`` / ``use_let``
    turns its part off (no segmentation: F_h = F_o; no IET: F_h goes on alone; no CGBlock: the IET
    output goes on alone; no LET: a plain global self-attention block); all off is the one-view
    HandOccNet-style baseline. With ``localiser_size`` > 0 it also holds the hand localiser
    (nets/localiser.py), which finds the hand in a whole frame (:meth:`locate`); trained from
    ``inputs['frame']`` when the training items carry it.

    Args:
        conf: the settings: the architecture fields (``config.MODEL_FIELDS``), ``mano_path``, the
            loss weights, ``mesh_grad_scale`` and ``mesh_loss_gt_root``.
        pretrained: ImageNet weights for the backbone (default: ``conf.pretrained``).
    """

    def __init__(self, conf: Config, pretrained: bool | None = None):
        super().__init__()
        size, dim = conf.input_img_shape[0], conf.feat_dim
        feat_size = size // 8
        pretrained = conf.pretrained if pretrained is None else pretrained
        self.img_size, self.hand_branch = size, conf.hand_branch
        # the architecture it was built with, as a snapshot's config stores it (tuples as lists)
        self.architecture = {k: v for k, v in conf.to_dict().items() if k in MODEL_FIELDS}
        self.backbone = FPN(conf.backbone, dim, pretrained, with_p2=conf.use_seg)
        self.seg_head = SegmentationHead(dim) if conf.use_seg else None
        self.iet = (IET(dim, conf.iet_heads, conf.iet_depth, conf.mlp_ratio, feat_size)
                    if conf.use_iet else None)
        self.cgblock = CGBlock(dim) if conf.use_cgblock else None
        self.refiner = (LET(dim, conf.let_heads, conf.let_depth, conf.let_stripe, conf.mlp_ratio)
                        if conf.use_let else
                        SelfAttention(dim, conf.let_heads, conf.let_depth, conf.mlp_ratio, feat_size))
        self.regressor = Regressor(dim, feat_size, ManoLayer(conf.mano_path, fingertips=conf.fingertips),
                                   conf.mesh_grad_scale)
        self.localiser = HandLocaliser() if conf.localiser_size else None
        self.localiser_size = conf.localiser_size
        self.loss_weights = loss_weights(conf)
        self.mesh_loss_gt_root = conf.mesh_loss_gt_root

    @property
    def mano_layer(self) -> ManoLayer:
        """The MANO layer the predictions (and the ground-truth mesh in training) go through."""
        return self.regressor.mano_head.mano

    @property
    def hand_model_id(self) -> str:
        """Which hand model the network was built with ('mano:<hash>' or 'builtin:<hash>')."""
        return self.mano_layer.model_id

    def check_image(self, img: torch.Tensor) -> None:
        """Raise ValueError unless img is (B, 3, S, S) with S = conf.input_img_shape."""
        s = self.img_size
        if img.dim() != 4 or img.shape[1] != 3 or tuple(img.shape[2:]) != (s, s):
            raise ValueError(f"inputs['img'] must have shape (B, 3, {s}, {s}) (3 colour channels, "
                             f'the configured input_img_shape {s}x{s}), got {tuple(img.shape)}; '
                             'resize the crops or set input_img_shape to match')

    def locate(self, frame: torch.Tensor) -> torch.Tensor:
        """frame (B, 3, L, L) whole frames letterboxed to ``localiser_size``, RGB 0..1 -> the hand
        localiser's output (B, 5, L/4, L/4) (``nets.localiser.decode`` turns it into boxes)."""
        if self.localiser is None:
            raise ValueError('this network has no hand localiser (localiser_size=0)')
        return self.localiser(frame)

    def views(self, img: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """img (B, 3, S, S) -> the feature maps along the pipeline, each (B, C, S/8, S/8): ``full``
        (F_o), ``hand`` (F_h; F_o without segmentation), ``iic`` (after IET and CGBlock) and
        ``refined`` (after LET), and ``seg``, the segmentation logits (B, 3, S/4, S/4) or None."""
        full, p2 = self.backbone(img)
        seg = None
        hand = full
        if self.seg_head is not None:
            seg = self.seg_head(p2)
            if self.hand_branch == 'image':
                hand, _ = self.backbone(hand_image(img, seg), with_p2=False)
            else:
                hand = hand_feature(full, seg)
        x = self.iet(hand, full) if self.iet is not None else hand
        if self.cgblock is not None:
            x = self.cgblock(x, hand)
        return {'full': full, 'hand': hand, 'iic': x, 'refined': self.refiner(x), 'seg': seg}

    def features(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """img (B, 3, S, S) -> fused, refined feature (B, C, S/8, S/8) and segmentation logits
        (B, 3, S/4, S/4) (None without segmentation)."""
        v = self.views(img)
        return v['refined'], v['seg']

    def forward(self, inputs: dict, targets: dict | None = None, meta_info: dict | None = None,
                mode: str = 'test') -> dict[str, torch.Tensor]:
        """inputs['img'] (B, 3, S, S) in 0..1 (and, to train the hand localiser, ``inputs['frame']``
        (B, 3, L, L) with ``targets['frame_box']`` (B, 4)).

        'train': ``targets`` as in docs/DESIGN.md -> weighted scalar losses (see nets/loss.py).
        'test': ``joints_coord_cam`` (B, 21, 3), ``mesh_coord_cam`` (B, 778, 3) root-relative metres,
        ``joints_coord_img`` (B, 21, 2) in 0..1, ``mano_pose`` (B, 48), ``mano_shape`` (B, 10), and
        ``seg`` (B, 3, S/4, S/4) class probabilities when segmentation is on.
        ``meta_info`` is not needed by the network; it is accepted for the common call signature.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        img = inputs['img']
        self.check_image(img)
        feat, seg = self.features(img)
        pred = self.regressor(feat)
        if mode == 'train':
            if targets is None:
                raise ValueError("mode 'train' needs targets (see docs/DESIGN.md, data contracts)")
            rotmat, verts = ground_truth_mesh(self.mano_layer, targets['mano_pose'],
                                              targets['mano_shape'])
            if self.mesh_loss_gt_root:  # vertex and joint losses see the predicted articulation only
                pred = dict(pred)
                aligned = torch.cat([rotmat[:, :1], pred['rotmat'][:, 1:]], dim=1)
                pred['verts'], pred['joints'] = root_relative_mesh(self.mano_layer, aligned, pred['shape'])
            gt = {'verts': verts, 'joints': targets['joints_coord_cam'], 'rotmat': rotmat,
                  'shape': targets['mano_shape'], 'joints_img': targets['joints_img']}
            if seg is not None:
                pred['seg'], gt['seg'] = seg, targets['seg']
            if self.localiser is not None and 'frame' in inputs:
                pred['frame_heat'], gt['frame_box'] = self.localiser(inputs['frame']), targets['frame_box']
            return compute_losses(pred, gt, self.loss_weights)
        out = {'joints_coord_cam': pred['joints'], 'mesh_coord_cam': pred['verts'],
               'joints_coord_img': pred['joints_img'], 'mano_pose': pred['pose'],
               'mano_shape': pred['shape']}
        if seg is not None:
            out['seg'] = seg.float().softmax(dim=1)
        return out


def get_model(conf: Config, mode: str) -> Model:
    """The network as ``conf`` describes it; ImageNet weights (``conf.pretrained``) are fetched only
    for 'train' (in 'test' a checkpoint replaces all weights). 'test' returns it in eval mode."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    model = Model(conf, pretrained=conf.pretrained and mode == 'train')
    return model.train() if mode == 'train' else model.eval()


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per part: each top-level child, with the regressor split into its
    children; ``total`` last. Parts that are switched off are absent."""
    counts: dict[str, int] = {}
    for name, child in model.named_children():
        parts = child.named_children() if isinstance(child, Regressor) else [('', child)]
        for sub, module in parts:
            n = sum(p.numel() for p in module.parameters() if p.requires_grad)
            if n:
                counts[f'{name}.{sub}' if sub else name] = n
    counts['total'] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts


def parameter_summary(model: nn.Module) -> str:
    """:func:`parameter_counts` as a printable table (millions of parameters)."""
    counts = parameter_counts(model)
    width = max(len(k) for k in counts)
    return '\n'.join(f'{name:<{width}}  {n / 1e6:8.3f} M' for name, n in counts.items())
