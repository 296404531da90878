"""Hand-built ResNets (18/34/50/101/152), written the way torchvision's ``resnet.py`` reads.

Parameter and buffer names and shapes are identical to torchvision's and timm's ``resnetNN``
(``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer2.0.downsample.0``/``.1``, ``fc``), so one
state dict loads strictly into any of the three (``drop_path``, stochastic depth, has no
weights). The model also speaks the small part of timm's API the rest of comp relies on:
``forward_features``/``forward_head``, ``get_classifier``, ``reset_classifier``, ``num_features``
and ``group_matcher``.

Reference: He et al., "Deep Residual Learning for Image Recognition" (2015). The Bottleneck puts
its stride on the 3x3 convolution ("ResNet v1.5"), as torchvision and timm do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "RESNETS",
           "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.drop_path = _drop_path(drop_path)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero, so the block begins as the identity."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.drop_path(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, and a shortcut (ResNet50+)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = _drop_path(drop_path)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero, so the block begins as the identity."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.drop_path(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


def _drop_path(prob: float) -> nn.Module:
    """Stochastic depth on a residual branch (timm's ``DropPath``); the identity when off."""
    return DropPath(prob) if prob > 0 else nn.Identity()


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """Stem (7x7 conv, BN, ReLU, max-pool), four stages of residual blocks, global pool, fc.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: the number of blocks in each of the four stages.
        num_classes: outputs of ``fc``; 0 leaves no classifier (the model returns features).
        in_chans: input channels.
        drop_rate: dropout probability on the pooled features, before ``fc``.
        drop_path_rate: stochastic depth of the last block; block ``i`` of ``n`` drops its
            residual branch with ``drop_path_rate * i / (n - 1)``, timm's linear rule.
        zero_init_last: zero the last BN gamma of every residual branch.
    """

    def __init__(self, block: Block, layers: list[int], num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 zero_init_last: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.inplanes = 64
        total = sum(layers)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        ends = [sum(layers[:k]) for k in range(5)]  # each stage's first and last block index
        stage_rates = [rates[ends[k]:ends[k + 1]] for k in range(4)]

        self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, stage_rates[0])
        self.layer2 = self._make_layer(block, 128, stage_rates[1], stride=2)
        self.layer3 = self._make_layer(block, 256, stage_rates[2], stride=2)
        self.layer4 = self._make_layer(block, 512, stage_rates[3], stride=2)

        self.num_features = 512 * block.expansion
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = self._make_fc(num_classes)
        self.init_weights(zero_init_last)

    def _make_layer(self, block: Block, planes: int, drop_paths: list[float], stride: int = 1) -> nn.Sequential:
        """One stage of ``len(drop_paths)`` blocks, each with its stochastic depth: the first block
        may change resolution/width (with a 1x1 conv shortcut)."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, drop_path=drop_paths[0])]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, drop_path=p) for p in drop_paths[1:]]
        return nn.Sequential(*layers)

    def _make_fc(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def init_weights(self, zero_init_last: bool = True) -> None:
        """Kaiming-normal convolutions, unit BN; optionally zero the last BN of each branch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    # ------------------------------------------------------------------ timm-style API

    def get_classifier(self) -> nn.Module:
        """The classifier head (``fc``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh head of ``num_classes`` outputs (0: no classifier)."""
        self.num_classes = num_classes
        ref = self.conv1.weight
        self.fc = self._make_fc(num_classes).to(device=ref.device, dtype=ref.dtype)
        self.fc.train(self.training)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Regexes grouping parameters into stem and stages (or blocks), as timm's ResNet does."""
        return dict(stem=r"^conv1|bn1|maxpool", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the four stages: an ``N x num_features x H/32 x W/32`` feature map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout, and (unless ``pre_logits``) the classifier."""
        x = torch.flatten(self.global_pool(x), 1)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def resnet18(**kwargs) -> ResNet:
    """ResNet-18: BasicBlock, [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlock, [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50: Bottleneck, [3, 4, 6, 3]."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101: Bottleneck, [3, 4, 23, 3]."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs) -> ResNet:
    """ResNet-152: Bottleneck, [3, 8, 36, 3]."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


RESNETS: dict[str, Callable[..., ResNet]] = {
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
    "resnet101": resnet101, "resnet152": resnet152,
}
