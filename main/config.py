"""Configuration: defaults, presets, per-dataset schedules and command-line overrides.

There is no shared, global configuration: each entry script (``main/``, ``demo/``, ``bench/``,
the data scripts) makes its own :class:`Config` with :func:`config_from_args` or ``Config()``, and
hands it, or the values it needs, to what it builds. :meth:`Config.update` applies, in this order:
the defaults, the learning-rate schedule of ``trainset`` (as in the reference), the chosen preset,
then every field the caller set explicitly. Importing this module has no side effects: folders are
created by :meth:`Config.make_dirs`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from errors import UserError
from paths import DEFAULT_MANO_DIR, ROOT

QUICKSTART_DIR = ROOT / 'output' / 'quickstart'   # everything `make quickstart` writes but its data
DATASETS = ('HO3D', 'DEX_YCB', 'SYNTH')
BACKBONES = ('resnet18', 'resnet34', 'resnet50')


class ConfigError(UserError):
    """A bad configuration value or key."""


def _choice(*allowed: str) -> dict:
    return {'choices': allowed}


@dataclass(init=False)
class Config:
    """Every setting of InteractHand; field names follow the reference HandOccNet config.

    ``Config(preset=None, **fields)`` is ``Config().update(preset, **fields)``: every field given
    is an explicit setting (typed, checked, and kept over presets and schedules), even when it
    equals the default.
    """

    # datasets and folders
    trainset: str = field(default='HO3D', metadata=_choice(*DATASETS))
    testset: str = field(default='HO3D', metadata=_choice(*DATASETS))
    ho3d_root: str = str(ROOT / 'data' / 'HO3D' / 'data')
    dexycb_root: str = str(ROOT / 'data' / 'DEX_YCB' / 'data')
    ho3d_version: str = field(default='v2', metadata=_choice('v2', 'v3'))  # which HO3D files are read
    dexycb_setup: str = field(default='s0', metadata=_choice('s0', 's1', 's2', 's3'))  # DexYCB split
    synth_root: str = str(ROOT / 'data' / 'SYNTH' / 'data')
    mano_path: str = str(DEFAULT_MANO_DIR)
    output_dir: str = str(ROOT / 'output')

    # network
    input_img_shape: tuple = (256, 256)
    backbone: str = field(default='resnet50', metadata=_choice(*BACKBONES))
    pretrained: bool = True
    feat_dim: int = 256
    hand_branch: str = field(default='image', metadata=_choice('image', 'feature'))
    use_seg: bool = True
    use_iet: bool = True
    use_cgblock: bool = True
    use_let: bool = True
    iet_depth: int = 1
    iet_heads: int = 8
    let_depth: int = 1
    let_heads: int = 8
    let_stripe: int = 4
    mlp_ratio: float = 2.0
    localiser_size: int = 128  # side of the whole-frame input of the hand localiser; 0: none
    # The vertices the five fingertip joints are (utils.mano.FINGERTIPS): each training set's joints
    # use their own definition ('ho3d' for HO3D, 'manopth' for the others; see SCHEDULES).
    fingertips: str = field(default='manopth', metadata=_choice('manopth', 'ho3d'))

    # losses (reference weights; see common/nets/loss.py for the segmentation weight)
    lambda_mano_verts: float = 1e4
    lambda_mano_joints: float = 1e4
    lambda_mano_pose: float = 10.0
    lambda_mano_shape: float = 0.1
    lambda_joints_img: float = 100.0
    lambda_seg: float = 1.0
    lambda_loc: float = 1.0
    # Gradient of the MANO losses into the shared features (hand head, LET, IIC, backbone): 1 is
    # end to end, as the paper trains from ImageNet weights. From scratch, the mesh losses' large,
    # at first uninformative gradient swamps the 2D and segmentation losses and no feature forms
    # (on SYNTH at the cpu preset, 2D joints and hand IoU stay at chance: 2D error 0.2 of the crop,
    # IoU 0.3; with 0 they reach 0.06 and 0.98 on a 64-image fit in 300 steps), so the cpu preset
    # uses 0: the features learn from 2D joints and masks, the MANO regressor reads them.
    mesh_grad_scale: float = 1.0
    # Vertex and joint losses on the mesh posed with the ground-truth global rotation and the
    # predicted finger rotations and shape (the pose loss still trains the global rotation). While
    # the global rotation is still a guess, the plain losses are smallest for a shrunken hand, and
    # a network trained from scratch collapses there (betas beyond +-10, PA-MPJPE 30-45 mm on
    # SYNTH at the cpu preset). False (the paper) for the paper preset.
    mesh_loss_gt_root: bool = False

    # training
    lr: float = 1e-4
    localiser_lr_factor: float = 3.0   # the hand localiser learns at lr times this (own parameters)
    lr_dec_epoch: tuple = (10, 20, 30, 40, 50, 60, 70)
    lr_dec_factor: float = 0.7
    end_epoch: int = 80
    train_batch_size: int = 16
    test_batch_size: int = 64
    ckpt_freq: int = 10
    val_every: int = 0        # evaluate on the test split every N epochs (and at the end); 0: never
    num_thread: int = -1      # DataLoader workers per process; -1: from the cores available
    amp: str = field(default='none', metadata=_choice('none', 'bf16', 'fp16'))
    channels_last: bool = False   # channels-last memory format for the network in training
    compile: bool = False         # torch.compile the network's forward pass in training
    cuda_graphs: bool = False     # test.py and the demo replay the forward pass as CUDA graphs
    seed: int = 0

    def update(self, preset: str | None = None, **fields_: Any) -> 'Config':
        """Apply ``preset`` and field overrides (values may be strings, as from ``--set``).

        Overrides accumulate over calls; the dataset schedule follows the final ``trainset``.
        Raises :class:`ConfigError` for an unknown preset, unknown key or bad value.
        """
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; allowed presets: {', '.join(PRESETS)}")
        known = {f.name: f for f in fields(Config)}
        parsed = {}
        for key, value in fields_.items():
            if key not in known:
                raise ConfigError(f"unknown config key '{key}'; allowed keys: {', '.join(known)}")
            parsed[key] = _coerce(known[key], value)
        explicit = {**self._explicit, **parsed}
        chosen = preset if preset is not None else self._preset

        values = {f.name: f.default for f in fields(Config)}
        values.update(SCHEDULES[explicit.get('trainset', values['trainset'])])
        if chosen is not None:
            values.update(PRESETS[chosen])
        values.update(explicit)
        _check(values)
        for key, value in values.items():
            setattr(self, key, value)
        self._preset, self._explicit = chosen, explicit
        return self

    def __init__(self, preset: str | None = None, **fields_: Any):
        self._preset: str | None = None
        self._explicit: dict[str, Any] = {}
        self.update(preset=preset, **fields_)

    @property
    def preset(self) -> str | None:
        """The preset applied last, if any."""
        return self._preset

    # folders (created by make_dirs, never at import)
    @property
    def model_dir(self) -> Path:
        return Path(self.output_dir) / 'model_dump'

    @property
    def log_dir(self) -> Path:
        return Path(self.output_dir) / 'log'

    @property
    def result_dir(self) -> Path:
        return Path(self.output_dir) / 'result'

    @property
    def vis_dir(self) -> Path:
        return Path(self.output_dir) / 'vis'

    def make_dirs(self) -> None:
        """Create the output folders; one that cannot be made is a :class:`UserError`."""
        for d in (self.model_dir, self.log_dir, self.result_dir, self.vis_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f'cannot create the output folder {d} ({err.strerror or err}); pick a '
                                'writable one with --set output_dir=FOLDER') from None

    def to_dict(self) -> dict:
        """Plain JSON-able dict of all fields (stored in checkpoints)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# The fields that define the network's architecture and the joints it gives: a snapshot is tested
# with the values it was trained with (see checkpoints.model_config_from).
MODEL_FIELDS = ('input_img_shape', 'backbone', 'feat_dim', 'hand_branch', 'use_seg', 'use_iet',
                'use_cgblock', 'use_let', 'iet_depth', 'iet_heads', 'let_depth', 'let_heads',
                'let_stripe', 'mlp_ratio', 'fingertips', 'localiser_size')
# What a snapshot written before a field of MODEL_FIELDS existed was trained with.
LEGACY_MODEL_FIELDS = {'fingertips': 'manopth', 'localiser_size': 0}

# Per training set: the reference's learning-rate schedule, and the fingertip vertices of the set's
# joints (the loaders' ``fingertips``; HO3D's annotations use HO3D's own, utils.mano.FINGERTIPS).
SCHEDULES: dict[str, dict] = {
    'HO3D': dict(lr=1e-4, lr_dec_epoch=tuple(range(10, 80, 10)), lr_dec_factor=0.7, end_epoch=80,
                 fingertips='ho3d'),
    'DEX_YCB': dict(lr=1e-4, lr_dec_epoch=tuple(range(1, 25)), lr_dec_factor=0.9, end_epoch=25,
                    fingertips='manopth'),
    'SYNTH': dict(lr=1e-4, lr_dec_epoch=tuple(range(10, 80, 10)), lr_dec_factor=0.7, end_epoch=80,
                  fingertips='manopth'),
}

PRESETS: dict[str, dict] = {
    # The paper's setting: ResNet-50 FPN, 256 px crops, reference hyper-parameters.
    'paper': dict(backbone='resnet50', pretrained=True, input_img_shape=(256, 256), feat_dim=256,
                  iet_heads=8, let_heads=8, let_stripe=4, train_batch_size=16),
    # Small and fast for CPU-only machines: ResNet-18, 96 px crops, the hand view gated on the
    # feature map (one backbone pass; it pays for 96 px instead of 64 px at the same step time),
    # narrow features, no downloads; channels-last training steps (8 % faster on 2 CPU cores,
    # bench/train_speed.py).
    'cpu': dict(backbone='resnet18', pretrained=False, input_img_shape=(96, 96), feat_dim=64,
                hand_branch='feature',
                iet_heads=4, let_heads=4, let_stripe=4, train_batch_size=16, test_batch_size=32,
                lr=1e-3, lr_dec_epoch=(8, 12), lr_dec_factor=0.3, end_epoch=15, ckpt_freq=1,
                num_thread=2, mesh_grad_scale=0.0, mesh_loss_gt_root=True, channels_last=True),
}

_TRUE = {'true', '1', 'yes', 'on'}
_FALSE = {'false', '0', 'no', 'off'}


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn ``value`` (possibly a string from the command line) into the field's type."""
    kind, given = type(f.default), value
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in _TRUE | _FALSE:
                    raise ValueError
                value = value.lower() in _TRUE
            elif not isinstance(value, bool):
                raise ValueError
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif kind is tuple:
            if isinstance(value, str):
                text = value.strip()
                value = json.loads(text) if text.startswith('[') else [v for v in text.split(',') if v]
            value = tuple(int(v) for v in value)
        elif kind is str:
            value = str(value)
    except (TypeError, ValueError, json.JSONDecodeError):
        raise ConfigError(f"bad value {given!r} for '{f.name}'; expected {_describe(f)}") from None
    choices = f.metadata.get('choices')
    if choices and value not in choices:
        raise ConfigError(f"bad value {value!r} for '{f.name}'; allowed: {', '.join(choices)}")
    return value


def _describe(f: dataclasses.Field) -> str:
    kind = type(f.default)
    if kind is tuple:
        return f"comma-separated integers, e.g. {','.join(map(str, f.default))}"
    return {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string'}[kind]


def _check(v: dict) -> None:
    """Checks across fields, after all overrides are applied."""
    shape = v['input_img_shape']
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] % 32 or shape[0] < 64:
        raise ConfigError(f"bad value {shape} for 'input_img_shape'; use a square size that is a "
                          'multiple of 32 and at least 64, e.g. 128,128 or 256,256')
    feat = shape[0] // 8
    if feat % v['let_stripe']:
        raise ConfigError(f"let_stripe={v['let_stripe']} does not divide the feature size {feat} "
                          f"(input {shape[0]} px / 8); pick a divisor of {feat}")
    for heads in ('iet_heads', 'let_heads'):
        if v[heads] < 1 or v['feat_dim'] % v[heads]:
            raise ConfigError(f"{heads}={v[heads]} does not divide feat_dim={v['feat_dim']}; "
                              'pick a divisor of feat_dim')
    if v['let_heads'] % 2:
        raise ConfigError(f"let_heads={v['let_heads']} must be even (half the heads attend along "
                          'rows, half along columns)')
    for f in fields(Config):
        if type(f.default) is float and not math.isfinite(v[f.name]):
            raise ConfigError(f"bad value {v[f.name]} for '{f.name}'; it must be a finite number")
    for key, ok, rule in (('lr', v['lr'] > 0, 'above 0'),
                          ('lr_dec_factor', 0 < v['lr_dec_factor'] <= 1, 'in (0, 1]'),
                          ('mlp_ratio', v['mlp_ratio'] > 0, 'above 0'),
                          *((k, v[k] >= 0, '0 or more') for k in v if k.startswith('lambda_'))):
        if not ok:
            raise ConfigError(f"bad value {v[key]} for '{key}'; it must be {rule}")
    for key in ('train_batch_size', 'test_batch_size', 'end_epoch', 'ckpt_freq', 'feat_dim',
                'iet_depth', 'let_depth'):
        if v[key] < 1:
            raise ConfigError(f"bad value {v[key]} for '{key}'; it must be at least 1")
    if v['localiser_size'] and (v['localiser_size'] < 64 or v['localiser_size'] % 16):
        raise ConfigError(f"bad value {v['localiser_size']} for 'localiser_size'; use 0 (no hand "
                          'localiser) or a multiple of 16 of at least 64, e.g. 128')
    if v['val_every'] < 0:
        raise ConfigError(f"bad value {v['val_every']} for 'val_every'; it must be 0 (off) or more")
    if v['num_thread'] < -1:
        raise ConfigError(f"bad value {v['num_thread']} for 'num_thread'; it must be 0 or more, or -1 "
                          '(as many as the cores allow)')
    if not 0 <= v['mesh_grad_scale'] <= 1:
        raise ConfigError(f"bad value {v['mesh_grad_scale']} for 'mesh_grad_scale'; it must be in 0..1")


def parse_set(items: Sequence[str]) -> dict[str, str]:
    """``['lr=1e-3', 'use_let=false']`` -> ``{'lr': '1e-3', 'use_let': 'false'}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ConfigError(f"bad --set item '{item}'; write key=value, e.g. --set lr=1e-3")
        out[key.strip()] = value.strip()
    return out


def parse_gpu(text: str) -> list[int]:
    """``'0-3'`` -> [0, 1, 2, 3]; ``'0,2'`` -> [0, 2]; ``'cpu'`` -> []."""
    text = text.strip().lower()
    if text == 'cpu':
        return []
    ids: list[int] = []
    try:
        for part in text.split(','):
            if '-' in part:
                lo, hi = (int(p) for p in part.split('-'))
                if hi < lo:
                    raise ValueError
                ids.extend(range(lo, hi + 1))
            else:
                ids.append(int(part))
    except ValueError:
        raise ConfigError(f"bad --gpu value '{text}'; use a range (0-3), a list (0,2) or cpu") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"bad --gpu value '{text}'; use a range (0-3), a list (0,2) or cpu")
    return ids


def add_common_args(parser: argparse.ArgumentParser, datasets: Sequence[str] = ()) -> None:
    """The options every entry point shares: --gpu, --preset, --set and the dataset choices."""
    parser.add_argument('--gpu', default='0', help="GPUs to use: 0-3, 0,2 or cpu (default 0; "
                        'the CPU is used when CUDA is missing)')
    parser.add_argument('--preset', choices=sorted(PRESETS), help='paper: ResNet-50, 256 px; '
                        'cpu: small and fast for CPU-only machines')
    parser.add_argument('--set', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                        help='override any config field, e.g. --set lr=1e-3 use_let=false '
                        '(may be given more than once)')
    for name in datasets:
        parser.add_argument(f'--{name}', help=f"dataset name: {', '.join(DATASETS)}")


def args_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The config fields set on the command line: ``--set`` items and the dataset choices."""
    fields_ = parse_set(args.set)
    for name in ('trainset', 'testset'):
        value = getattr(args, name, None)
        if value is not None:
            fields_[name] = value
    return fields_


def config_from_args(args: argparse.Namespace) -> Config:
    """A new :class:`Config` from parsed command-line options (``--preset``, ``--set`` and the
    dataset choices)."""
    return Config().update(preset=args.preset, **args_overrides(args))
