"""Every command-line tool answers --help (so each one at least imports and builds its parser);
the quickstart, which takes no options, must not start its job on --help or on a stray option;
scripts inside package folders run with the source folders on PYTHONPATH."""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import bootstrap
from config import ROOT

TOOLS = ['main/train.py', 'main/test.py', 'main/evaluate.py', 'main/quickstart.py', 'demo/demo.py',
         'demo/hand_model.py', 'data/SYNTH/generate.py', 'bench/speed.py', 'bench/mano_speed.py',
         'bench/data_speed.py', 'bench/run_all.py', 'bench/synth_accuracy.py', 'bench/train_speed.py',
         'common/builtin_hand/build.py', 'bench/throughput.py', 'data/HO3D/build_annotations.py',
         'data/DEX_YCB/build_annotations.py', 'data/HO3D/fingertips.py', 'docs/architecture.py',
         'bench/hand_finding.py', 'bench/interaction_probe.py', 'bench/localiser_fit.py']


def test_every_tool_is_listed():
    found = {str(p.relative_to(ROOT)) for d in ('main', 'demo', 'bench', 'docs') for p in (ROOT / d).glob('*.py')}
    found |= {str(p.relative_to(ROOT)) for p in (ROOT / 'data').glob('*/*.py') if p.stem != p.parent.name
              and p.stem != '__init__' and 'argparse' in p.read_text()}
    found.add('common/builtin_hand/build.py')
    assert found - {'main/bootstrap.py', 'main/config.py', 'main/model.py', 'bench/timing.py'} == set(TOOLS)


@pytest.mark.parametrize('tool', TOOLS)
def test_help(tool, capsys, monkeypatch):
    """``tool --help``, run in this process (the way ``python tool`` runs it, as ``__main__``; one
    torch import for all tools instead of one each): usage on stdout, exit status 0."""
    monkeypatch.setattr(sys, 'argv', [str(ROOT / tool), '--help'])
    monkeypatch.setattr(sys, 'path', [str((ROOT / tool).parent), *sys.path])   # as python puts the script's folder
    bootstrap.prepare_path()                                                    # as its import of bootstrap does
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / tool), run_name='__main__')
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith('usage:')


def test_quickstart_refuses_options_instead_of_running():
    res = subprocess.run([sys.executable, str(ROOT / 'main' / 'quickstart.py'), '--epochs', '3'],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2 and 'unrecognized arguments: --epochs 3' in res.stderr
    assert '=== ' not in res.stdout


@pytest.mark.parametrize('tool', ['data/SYNTH/generate.py', 'common/builtin_hand/build.py'])
def test_scripts_inside_packages_run_with_the_source_folders_on_pythonpath(tool):
    """Users of the reference put the project folders on PYTHONPATH; a script inside a package
    folder (data/SYNTH/, common/builtin_hand/) must still import its package, not a module of
    the same name beside it (data/SYNTH/SYNTH.py shadowed the package SYNTH)."""
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(str(ROOT / d) for d in ('common', 'main', 'data'))}
    res = subprocess.run([sys.executable, str(ROOT / tool), '--help'], cwd=ROOT / Path(tool).parent,
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith('usage:'), res.stderr[-2000:]
