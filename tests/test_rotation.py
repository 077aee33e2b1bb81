"""Rotation helpers: round trips and agreement with scipy, including angle 0 and angles near pi."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.spatial.transform import Rotation

from utils.rotation import (axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d,
                            mean_rotation, rot6d_to_matrix, skew)

unit = st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3).filter(lambda v: np.linalg.norm(v) > 1e-3)


def _aa(axis, angle):
    axis = np.asarray(axis) / np.linalg.norm(axis)
    return torch.tensor(axis * angle, dtype=torch.float64)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)   # reproducible
@given(unit, st.one_of(st.floats(0, 1e-7), st.floats(0, np.pi - 1e-3), st.floats(np.pi - 1e-3, np.pi - 1e-9)))
def test_axis_angle_matrix_agrees_with_scipy_and_round_trips(axis, angle):
    aa = _aa(axis, angle)
    mat = axis_angle_to_matrix(aa)
    ref = Rotation.from_rotvec(aa.numpy()).as_matrix()
    assert np.abs(mat.numpy() - ref).max() < 1e-12
    back = matrix_to_axis_angle(mat)
    # angles just below pi: the recovered rotation must be the same rotation
    assert np.abs(axis_angle_to_matrix(back).numpy() - ref).max() < 1e-9
    if angle < np.pi - 1e-3:
        assert (back - aa).abs().max() < 1e-9


def test_exactly_pi_and_zero():
    for aa in ([0.0, 0, 0], [np.pi, 0, 0], [0, 0, -np.pi], [np.pi / np.sqrt(2), -np.pi / np.sqrt(2), 0]):
        aa = torch.tensor(aa, dtype=torch.float64)
        mat = axis_angle_to_matrix(aa)
        back = matrix_to_axis_angle(mat)
        assert torch.allclose(axis_angle_to_matrix(back), mat, atol=1e-12)
        assert abs(back.norm() - aa.norm()) < 1e-9


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=6, max_size=6).filter(
    lambda v: np.linalg.norm(v[:3]) > 1e-2 and np.linalg.norm(np.cross(v[:3], v[3:])) > 1e-2 * np.linalg.norm(v[:3]) * np.linalg.norm(v[3:]) + 1e-6))
def test_rot6d_gives_rotations_and_round_trips(v):
    mat = rot6d_to_matrix(torch.tensor(v, dtype=torch.float64))
    assert torch.allclose(mat @ mat.T, torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert abs(torch.det(mat) - 1) < 1e-10
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(mat)), mat, atol=1e-10)


def test_batched_shapes_and_gradients_at_zero():
    aa = torch.zeros(4, 16, 3, requires_grad=True)
    mat = axis_angle_to_matrix(aa)
    assert mat.shape == (4, 16, 3, 3)
    matrix_to_axis_angle(mat).sum().backward()
    assert torch.isfinite(aa.grad).all()
    near_pi = torch.tensor([[np.pi - 1e-6, 0.0, 0.0]], requires_grad=True)
    matrix_to_axis_angle(axis_angle_to_matrix(near_pi)).sum().backward()
    assert torch.isfinite(near_pi.grad).all()


@pytest.mark.parametrize('aa', [[0.0, 0.0, 0.0], [1e-9, -2e-9, 0.5e-9], [0.3, -1.2, 0.7],
                                [0.0, 0.0, np.pi - 1e-4]])
def test_axis_angle_to_matrix_gradient_is_exact(aa):
    """Analytic gradient against finite differences, including at angle 0, where it must be
    d R / d aa_i = skew(e_i)."""
    aa = torch.tensor(aa, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,), eps=1e-6, atol=1e-8)
    if aa.detach().norm() == 0:
        jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, aa)          # (3, 3, 3)
        expected = torch.stack([skew(e) for e in torch.eye(3, dtype=torch.float64)], dim=-1)
        assert torch.allclose(jac, expected, atol=1e-12)


@pytest.mark.parametrize('spread', [0.1, 1.0, 2.0])
def test_mean_rotation_is_scipys_chordal_mean(spread):
    """Against scipy's Rotation.mean (the chordal L2 mean, computed there from quaternions)."""
    rng = np.random.default_rng(int(spread * 10))
    centre = Rotation.random(random_state=rng)
    rots = centre * Rotation.from_rotvec(rng.normal(size=(50, 3)) * spread)
    mean = mean_rotation(torch.tensor(rots.as_matrix()))
    assert torch.allclose(mean, torch.tensor(rots.mean().as_matrix()), atol=1e-10)
    assert torch.allclose(mean @ mean.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.det(mean) > 0


def test_mean_rotation_of_symmetric_pairs_is_the_centre():
    centre = Rotation.from_rotvec([0.4, -2.0, 1.1])
    turns = Rotation.from_rotvec(np.array([[1.2, 0.0, 0.0], [0.0, 0.7, 0.3]]))
    rots = Rotation.concatenate([centre * turns, centre * turns.inv()])
    mean = mean_rotation(torch.tensor(rots.as_matrix()))
    assert torch.allclose(mean, torch.tensor(centre.as_matrix()), atol=1e-12)
    with pytest.raises(ValueError, match=r'\(N, 3, 3\)'):
        mean_rotation(torch.eye(3))
