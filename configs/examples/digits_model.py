"""Your model: a function of the data's shape and your own arguments that returns a torch module."""

from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int, width: int = 32, depth: int = 1) -> nn.Module:
    channels = input_shape[0]  # (C, H, W): (1, 8, 8) for the digits
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, num_classes))
