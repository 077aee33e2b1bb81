"""MANO head: a feature vector -> 16 joint rotations (6D) and 10 shape parameters -> hand mesh."""
from __future__ import annotations

import torch
from torch import nn

from utils.mano import ManoLayer
from utils.rotation import matrix_to_rot6d, rot6d_to_matrix

NUM_ROTATIONS, NUM_BETAS = 16, 10


def root_relative_mesh(mano: ManoLayer, rotmat: torch.Tensor, shape: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """rotmat (B, 16, 3, 3) full joint rotations (hands_mean included), shape (B, 10) ->
    verts (B, 778, 3), joints (B, 21, 3) in metres with the wrist at the origin.

    Runs in float32 even under autocast: the kinematic chain multiplies 4 rotations deep and
    bf16/fp16 would cost millimetres.
    """
    with torch.autocast(device_type=rotmat.device.type, enabled=False):
        out = mano.forward_rotmat(rotmat.float(), shape.float())
    root = out.joints[:, :1]
    return out.verts - root, out.joints - root


def ground_truth_mesh(mano: ManoLayer, pose: torch.Tensor, shape: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """pose (B, 48) axis-angle relative to hands_mean, shape (B, 10) -> full joint rotations
    (B, 16, 3, 3) and root-relative verts (B, 778, 3), in float32 even under autocast."""
    with torch.autocast(device_type=pose.device.type, enabled=False):
        rotmat = mano.pose_to_rotmat(pose.float())
    verts, _ = root_relative_mesh(mano, rotmat, shape)
    return rotmat, verts


class ManoHead(nn.Module):
    """MANO head: vector (B, D) -> rotations (B, 16, 3, 3), pose (B, 48) axis-angle relative to
    hands_mean, shape (B, 10), verts (B, 778, 3) and joints (B, 21, 3), root-relative metres.

    The rotations are predicted in the continuous 6D form (two matrix columns) and made orthonormal
    by Gram-Schmidt. The pose layer starts with tiny weights and a bias equal to the model's mean
    pose (identity root rotation, ``hands_mean`` fingers, mean shape), so the first prediction is
    the mean hand while every layer still receives gradients.
    """

    def __init__(self, in_dim: int, mano: ManoLayer):
        super().__init__()
        hidden = (in_dim, in_dim // 2)
        self.base = nn.Sequential(nn.Linear(in_dim, hidden[0]), nn.LeakyReLU(inplace=True),
                                  nn.Linear(hidden[0], hidden[1]), nn.LeakyReLU(inplace=True))
        self.pose = nn.Linear(hidden[1], NUM_ROTATIONS * 6)
        self.shape = nn.Linear(hidden[1], NUM_BETAS)
        self.mano = mano
        with torch.no_grad():
            mean_rotmat = mano.pose_to_rotmat(torch.zeros(1, mano.pose_dim, dtype=mano.hands_mean.dtype))
            nn.init.normal_(self.pose.weight, std=1e-3)
            self.pose.bias.copy_(matrix_to_rot6d(mean_rotmat).reshape(-1))
            nn.init.normal_(self.shape.weight, std=1e-3)
            nn.init.zeros_(self.shape.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.base(x)
        rot6d, shape = self.pose(h).float(), self.shape(h).float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            rotmat = rot6d_to_matrix(rot6d.view(-1, NUM_ROTATIONS, 6))
            pose = self.mano.rotmat_to_pose(rotmat)
        verts, joints = root_relative_mesh(self.mano, rotmat, shape)
        return {'rotmat': rotmat, 'pose': pose, 'shape': shape, 'verts': verts, 'joints': joints}
