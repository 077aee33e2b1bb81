"""The image encoder: a Feature Pyramid Network (FPN) on a torchvision ResNet.

Images come in as RGB in 0..1 and are normalised with the ImageNet statistics here, so the rest of
the code never sees normalised pixels. ImageNet weights come from torchvision's weight cache
(``torch.hub``); where they cannot be had, :func:`imagenet_state_dict` says where to put the file.
"""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT_S = 30


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation inside the block, so a blocked network fails instead of hanging."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def imagenet_weight_file(name: str) -> tuple[str, Path]:
    """The download URL of ResNet ``name``'s ImageNet weights (torchvision's IMAGENET1K_V1) and the
    file torchvision's cache keeps them in: ``<torch.hub dir>/checkpoints/<file name>``."""
    url = torchvision.models.get_model_weights(name)['IMAGENET1K_V1'].url
    return url, Path(torch.hub.get_dir()) / 'checkpoints' / url.rsplit('/', 1)[-1]


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of ResNet ``name`` from the torch.hub cache, downloading them if missing.

    Raises :class:`UserError` naming the exact file to provide when the download fails.
    """
    url, path = imagenet_weight_file(name)
    cached = path.is_file()
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return torch.hub.load_state_dict_from_url(url, map_location='cpu', check_hash=True,
                                                      weights_only=True)
    except Exception as err:  # any failure here means: no usable weights (offline, bad file, bad hash)
        if cached:
            raise UserError(f'cannot read the ImageNet weights of {name} from {path} ({err}); delete '
                            'it to download it again, or pass --set pretrained=False') from None
        raise UserError(f'cannot download the ImageNet weights of {name} ({err}); download {url} '
                        f'and save it as {path}, or pass --set pretrained=False to start from '
                        'random weights') from None


class FPN(nn.Module):
    """FPN (Feature Pyramid Network): ResNet trunk plus a top-down path with lateral 1x1 convs.

    image (B, 3, H, W) in 0..1 -> F (B, C, H/8, W/8) and, when ``with_p2``, the 1/4 level
    (B, C, H/4, W/4) for the segmentation head (else None). C = ``dim``.
    """

    def __init__(self, name: str = 'resnet50', dim: int = 256, pretrained: bool = False,
                 with_p2: bool = True):
        super().__init__()
        resnet = getattr(torchvision.models, name)()
        if pretrained:
            resnet.load_state_dict(imagenet_state_dict(name))
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        expansion = type(resnet.layer1[0]).expansion  # 1 for ResNet-18/34, 4 for ResNet-50
        widths = [w * expansion for w in (64, 128, 256, 512)]  # channels of c2, c3, c4, c5
        self.with_p2 = with_p2
        self.lat5 = nn.Conv2d(widths[3], dim, 1)
        self.lat4 = nn.Conv2d(widths[2], dim, 1)
        self.lat3 = nn.Conv2d(widths[1], dim, 1)
        self.smooth3 = nn.Conv2d(dim, dim, 3, padding=1)
        # The 1/4 level feeds only the segmentation head, so it stays a cheap lateral + top-down sum.
        self.lat2 = nn.Conv2d(widths[0], dim, 1) if with_p2 else None
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, img: torch.Tensor, with_p2: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """img (B, 3, H, W) in 0..1 -> (B, C, H/8, W/8), (B, C, H/4, W/4) or None.

        ``with_p2=False`` skips the 1/4 level even when the module has one (second, hand-view pass).
        """
        x = (img - self.mean) / self.std
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        p4 = self.lat4(c4) + F.interpolate(self.lat5(c5), size=c4.shape[-2:], mode='nearest')
        p3 = self.lat3(c3) + F.interpolate(p4, size=c3.shape[-2:], mode='nearest')
        p2 = None
        if self.with_p2 and with_p2:
            p2 = self.lat2(c2) + F.interpolate(p3, size=c2.shape[-2:], mode='nearest')
        return self.smooth3(p3), p2
