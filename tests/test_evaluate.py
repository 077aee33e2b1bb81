"""main/evaluate.py end to end: challenge-format files in, metrics table and JSON out, clear errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import evaluate
from errors import UserError
from utils.metrics import HandMetrics
from utils.submission import read_submission, to_ho3d, write_submission

SCRIPT = Path(__file__).resolve().parents[1] / 'main' / 'evaluate.py'
KEYS = {'mpjpe', 'pa_mpjpe', 'pa_mpvpe', 'st_mpjpe', 'f5', 'f15', 'auc'}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


def write_gt(folder: Path, joints: np.ndarray, verts: np.ndarray) -> tuple[Path, Path]:
    hj, hv = to_ho3d(joints, verts)
    xyz, vj = folder / 'evaluation_xyz.json', folder / 'evaluation_verts.json'
    xyz.write_text(json.dumps(hj.tolist()))
    vj.write_text(json.dumps(hv.tolist()))
    return xyz, vj


@pytest.fixture()
def data(tmp_path):
    """Ground truth of 5 hands and a prediction: a rotated, scaled, shifted copy, slightly noisy."""
    rng = np.random.default_rng(11)
    joints = rng.normal(scale=0.03, size=(5, 21, 3)) + np.array([0.0, 0.0, 0.5])
    verts = rng.normal(scale=0.03, size=(5, 778, 3)) + np.array([0.0, 0.0, 0.5])
    rot = Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix()
    move = lambda x: 1.1 * x @ rot.T + np.array([0.01, 0.02, -0.03])  # noqa: E731
    pred_j = move(joints) + rng.normal(scale=0.002, size=joints.shape)
    pred_v = move(verts)
    xyz, vj = write_gt(tmp_path, joints, verts)
    pred = tmp_path / 'pred3.json'
    write_submission(pred_j, pred_v, pred, tmp_path / 'pred3.zip')
    return dict(tmp=tmp_path, xyz=xyz, verts=vj, pred=pred, gt=(joints, verts))


def test_end_to_end_json_and_table(data):
    out = data['tmp'] / 'metrics' / 'm.json'
    res = run('--pred', str(data['pred']), '--gt-joints', str(data['xyz']),
              '--gt-verts', str(data['verts']), '--out', str(out))
    assert res.returncode == 0, res.stderr
    metrics = json.loads(out.read_text())
    assert set(metrics) == KEYS
    pred_j, pred_v = read_submission(data['pred'])    # as written: rounded to 1 um
    ref = HandMetrics()
    ref.update(pred_j, data['gt'][0], pred_v, data['gt'][1])
    for key, value in ref.summary().items():
        assert metrics[key] == pytest.approx(value, rel=1e-9)
    # the mesh is a similarity copy (up to the 1 um rounding): aligned error ~0 mm, F-scores 1
    assert metrics['pa_mpvpe'] < 1e-3 and metrics['f5'] == 1.0 and metrics['f15'] == 1.0
    assert metrics['mpjpe'] > 10 * metrics['pa_mpjpe'] > 0
    for label in ('MPJPE', 'PA-MPJPE', 'PA-MPVPE', 'ST-MPJPE', 'F@5mm', 'F@15mm', 'AUC'):
        assert label in res.stdout
    assert f"{metrics['pa_mpjpe']:7.2f} mm" in res.stdout


def test_zip_prediction_gives_same_metrics(data):
    from_json, n = evaluate.evaluate(data['pred'], data['xyz'], data['verts'])
    from_zip, _ = evaluate.evaluate(data['tmp'] / 'pred3.zip', data['xyz'], data['verts'])
    assert n == 5 and from_zip == from_json


def test_help():
    res = run('--help')
    assert res.returncode == 0
    assert '--pred' in res.stdout and '--gt-joints' in res.stdout and '--out' in res.stdout


def test_missing_file_is_one_clear_line(data):
    missing = data['tmp'] / 'nothing.json'
    res = run('--pred', str(missing), '--gt-joints', str(data['xyz']),
              '--gt-verts', str(data['verts']))
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (f'error: {missing} does not exist; '
                                                   f'give the path of an existing file.')


def test_count_mismatch_names_the_files(data):
    joints, verts = data['gt']
    short = data['tmp'] / 'short'
    short.mkdir()
    xyz, vj = write_gt(short, joints[:4], verts[:4])
    res = run('--pred', str(data['pred']), '--gt-joints', str(xyz), '--gt-verts', str(vj))
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and res.stderr.strip().endswith(errors[0])
    assert f'{data["pred"]} has 5 predictions but {xyz} has 4' in errors[0]


@pytest.mark.parametrize('which, content, message', [
    ('pred', '[[1, 2]', 'not valid JSON'),
    ('xyz', json.dumps([[[0.0, 0.0]] * 21] * 5), '21x3'),
    ('verts', json.dumps([[[0.0, 0.0, 0.0]] * 21] * 5), '778x3'),
])
def test_bad_files_raise_user_errors_naming_them(data, which, content, message):
    data[which].write_text(content)
    with pytest.raises(UserError, match=message) as err:
        evaluate.main(['--pred', str(data['pred']), '--gt-joints', str(data['xyz']),
                       '--gt-verts', str(data['verts'])])
    assert str(data[which]) in str(err.value)


def test_unwritable_out_is_named_before_any_work(data):
    blocker = data['tmp'] / 'a_file'
    blocker.write_text('')
    res = run('--pred', str(data['tmp'] / 'nothing.json'), '--gt-joints', str(data['xyz']),
              '--gt-verts', str(data['verts']), '--out', str(blocker / 'metrics.json'))
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f'error: --out {blocker / "metrics.json"}: {blocker} is a file, not a folder; pick another path')


def test_millimetre_predictions_are_flagged_and_metres_are_not(data, capsys):
    evaluate.evaluate(data['pred'], data['xyz'], data['verts'])
    assert 'warning' not in capsys.readouterr().err            # 1.1x the size: fine
    pred_j, pred_v = read_submission(data['pred'])
    mm = data['tmp'] / 'pred_mm.json'
    write_submission(pred_j * 1000, pred_v * 1000, mm, data['tmp'] / 'pred_mm.zip')
    summary, _ = evaluate.evaluate(mm, data['xyz'], data['verts'])
    err = capsys.readouterr().err
    assert f'the hands in {mm} are 1.1e+03 times the size' in err and 'millimetres' in err
    assert summary['pa_mpjpe'] < 5                              # scale removed: still meaningful
