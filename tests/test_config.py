"""Config: presets, per-dataset schedules, --set overrides with types, and the errors for bad values."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from config import Config, ConfigError, PRESETS, SCHEDULES, add_common_args, config_from_args, parse_gpu, parse_set
from errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_reference():
    c = Config().update()
    assert c.input_img_shape == (256, 256) and c.train_batch_size == 16 and c.lr == 1e-4
    assert (c.lambda_mano_verts, c.lambda_mano_joints, c.lambda_mano_pose, c.lambda_mano_shape,
            c.lambda_joints_img) == (1e4, 1e4, 10, 0.1, 100)


def test_schedule_follows_trainset_then_preset_then_explicit():
    c = Config().update(trainset='DEX_YCB')
    assert c.end_epoch == 25 and c.lr_dec_factor == 0.9 and c.lr_dec_epoch == tuple(range(1, 25))
    c.update(trainset='HO3D')
    assert c.end_epoch == 80 and c.lr_dec_factor == 0.7
    c.update(preset='cpu')
    assert c.backbone == PRESETS['cpu']['backbone'] and c.end_epoch == PRESETS['cpu']['end_epoch']
    c.update(end_epoch='3')
    assert c.end_epoch == 3 and c.preset == 'cpu'
    c.update(preset='paper')  # explicit overrides survive a later preset change
    assert c.end_epoch == 3 and c.backbone == 'resnet50'
    fresh = Config()
    assert fresh.end_epoch == SCHEDULES['HO3D']['end_epoch'] and fresh.preset is None


def test_constructor_fields_are_explicit_settings():
    """Config(field=value) is the same as Config().update(field=value): typed, checked, and kept
    over a later preset."""
    c = Config(lr='3e-3', trainset='DEX_YCB')
    assert c.lr == 3e-3 and c.end_epoch == SCHEDULES['DEX_YCB']['end_epoch']
    assert c.update(preset='cpu').lr == 3e-3 and c.backbone == PRESETS['cpu']['backbone']
    with pytest.raises(ConfigError, match="bad value 'fast' for 'lr'"):
        Config(lr='fast')
    # a value equal to the default is still the caller's choice, kept over the preset
    assert Config(preset='cpu', lr=Config().lr).lr == Config().lr != PRESETS['cpu']['lr']


@pytest.mark.parametrize('key, text, value', [
    ('lr', '3e-4', 3e-4), ('use_let', 'false', False), ('use_let', 'True', True),
    ('input_img_shape', '192,192', (192, 192)), ('lr_dec_epoch', '[5, 7]', (5, 7)),
    ('feat_dim', '128', 128), ('hand_branch', 'feature', 'feature'),
])
def test_set_values_are_typed(key, text, value):
    assert getattr(Config().update(**{key: text}), key) == value


@pytest.mark.parametrize('fields, words', [
    ({'nope': 1}, ["'nope'", 'allowed keys', 'lambda_seg']),
    ({'lr': 'fast'}, ["'fast'", "'lr'", 'a number']),
    ({'end_epoch': '2.5'}, ["'2.5'", 'an integer']),
    ({'use_seg': 'maybe'}, ["'maybe'", 'true or false']),
    ({'backbone': 'vgg16'}, ["'vgg16'", 'resnet18, resnet34, resnet50']),
    ({'trainset': 'COCO'}, ["'COCO'", 'HO3D, DEX_YCB, SYNTH']),
    ({'input_img_shape': '200,200'}, ['(200, 200)', 'multiple of 32']),
    ({'let_stripe': '5'}, ['let_stripe=5', 'divisor']),
    ({'mesh_grad_scale': '-1'}, ['-1', "'mesh_grad_scale'", '0..1']),
    ({'input_img_shape': '256x256'}, ["'256x256'", 'e.g. 256,256']),
    ({'lr_dec_epoch': 'abc'}, ["'abc'", 'e.g. 10,20,30']),
    ({'lr': '0'}, ["'lr'", 'above 0']),
    ({'lr': 'nan'}, ['nan', "'lr'", 'finite']),
    ({'lambda_mano_shape': 'inf'}, ['inf', 'finite']),
    ({'lr_dec_factor': '1.5'}, ['1.5', "'lr_dec_factor'", '(0, 1]']),
    ({'lambda_seg': '-5'}, ['-5', "'lambda_seg'", '0 or more']),
    ({'mlp_ratio': '0'}, ["'mlp_ratio'", 'above 0']),
    ({'let_depth': '0'}, ["'let_depth'", 'at least 1']),
])
def test_bad_values_name_value_and_allowed(fields, words):
    c = Config().update()
    before = c.to_dict()
    with pytest.raises(ConfigError) as err:
        c.update(**fields)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert c.to_dict() == before  # a failed update changes nothing


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'fast'; allowed presets: paper, cpu"):
        Config().update(preset='fast')


@pytest.mark.parametrize('text, ids', [('0-3', [0, 1, 2, 3]), ('0,2', [0, 2]), ('cpu', []),
                                       ('1', [1]), ('0-1,3', [0, 1, 3])])
def test_parse_gpu(text, ids):
    assert parse_gpu(text) == ids


@pytest.mark.parametrize('text', ['a', '3-1', '0,,1', '-1', '0,0', 'gpu'])
def test_parse_gpu_rejects(text):
    with pytest.raises(ConfigError, match=f"bad --gpu value '{text}'"):
        parse_gpu(text)


def test_command_line_options_make_a_config():
    parser = argparse.ArgumentParser()
    add_common_args(parser, datasets=('trainset',))
    args = parser.parse_args(['--preset', 'cpu', '--trainset', 'SYNTH', '--set', 'lr=0.01', 'use_iet=0',
                              '--set', 'end_epoch=3'])
    conf = config_from_args(args)
    assert conf.trainset == 'SYNTH' and conf.lr == 0.01 and conf.use_iet is False and conf.preset == 'cpu'
    assert conf.end_epoch == 3  # a second --set adds to the first instead of replacing it
    assert config_from_args(args) is not conf and Config().lr != 0.01   # nothing shared
    with pytest.raises(ConfigError, match="bad --set item 'lr'"):
        parse_set(['lr'])


SPY = '''
import builtins, json, os, sys
sys.path[:0] = [{common!r}, {main!r}]
calls = []
def spy(name, real):
    def wrapper(*args, **kwargs):
        mode = args[1] if len(args) > 1 else kwargs.get('mode', 'r')
        if name != 'open' or any(c in str(mode) for c in 'wax+'):
            calls.append([name, str(args[0])])
        return real(*args, **kwargs)
    return wrapper
os.mkdir, os.makedirs, builtins.open = spy('mkdir', os.mkdir), spy('makedirs', os.makedirs), spy('open', builtins.open)
import config
config.Config().update(preset='cpu')
sys.stderr.write(json.dumps(calls))
'''


def test_import_has_no_side_effects(tmp_path):
    """Importing config and building a Config create no file or folder and print nothing: every
    call that could (mkdir, makedirs, open for writing) is recorded, in a fresh process."""
    code = SPY.format(common=str(ROOT / 'common'), main=str(ROOT / 'main'))
    res = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == '' and res.stderr == '[]'
    assert list(tmp_path.iterdir()) == []


def test_output_folder_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / 'file').write_text('not a folder')
    c = Config().update(output_dir=str(tmp_path / 'file' / 'out'))
    with pytest.raises(UserError, match='cannot create the output folder .*--set output_dir') as err:
        c.make_dirs()
    assert str(tmp_path / 'file' / 'out') in str(err.value)
