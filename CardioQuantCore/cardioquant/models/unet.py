"""The residual UNet every CardioQuant network uses: MONAI's `monai.networks.nets.UNet` (Kerfoot et al. 2018),
built here from torch.nn in MONAI's module layout, so that MONAI's state dicts load into it unchanged and it gives
MONAI's outputs (Testing/test_unet.py checks both, for every architecture in the manifest).

Why not MONAI's class itself: `import monai` imports every MONAI submodule (data, transforms, apps, with scipy.signal,
pandas and TorchScript compilation among them), about 2 s of a fresh process on 2 cores, while this network is
nothing but convolutions. A scar case's whole command took 6-7 s of which MONAI's import was 2 s; the analysis
itself is 0.2 s. MONAI is still what trains the networks (its losses); 3D volumes are tiled by
cardioquant.models.sliding_window, MONAI's Gaussian-blended windows rewritten for the same reason.

The layout (MONAI 1.6.1): each level is Sequential(down, SkipConnection(deeper levels), up), the bottom a down unit
of stride 1. A down unit is a ResidualUnit (`num_res_units` convolutions, each followed by instance norm, dropout
and PReLU, with a strided or 1x1 convolution on the residual path when the shape changes) or, with no residual
units, one such convolution. An up unit is a transposed convolution (stride of its level) with the same norm,
dropout and activation, then (with residual units) one more convolution whose top-level copy ends on the bare
convolution: the network's output is logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _convolution_type(spatial_dims: int, transposed: bool = False) -> type[nn.Module]:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, not {spatial_dims}")
    return getattr(nn, f"Conv{'Transpose' if transposed else ''}{spatial_dims}d")


class NormDropoutActivation(nn.Sequential):
    """MONAI's ADN in its default order (N, D, A): instance norm, dropout, PReLU; named N, D and A as there."""

    def __init__(self, spatial_dims: int, channels: int, dropout: float):
        super().__init__()
        self.add_module("N", getattr(nn, f"InstanceNorm{spatial_dims}d")(channels))
        self.add_module("D", nn.Dropout(dropout))
        self.add_module("A", nn.PReLU())


class Convolution(nn.Sequential):
    """A convolution ('conv') with 'same' padding, followed by norm, dropout and activation ('adn') unless
    `conv_only`. Transposed, it upsamples by `stride` exactly (output padding stride - 1)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int, kernel_size: int,
                 dropout: float, transposed: bool = False, conv_only: bool = False):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, not {kernel_size}")
        convolution = _convolution_type(spatial_dims, transposed)
        extra = {"output_padding": stride - 1} if transposed else {}
        self.add_module("conv", convolution(in_channels, out_channels, kernel_size, stride=stride,
                                            padding=(kernel_size - 1) // 2, **extra))
        if not conv_only:
            self.add_module("adn", NormDropoutActivation(spatial_dims, out_channels, dropout))


class ResidualUnit(nn.Module):
    """`subunits` convolutions ('conv': unit0, unit1, ...; the first carries the stride) plus the input on the
    residual path ('residual': the identity, or a convolution where the stride or the channels change)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int, kernel_size: int,
                 subunits: int, dropout: float, last_conv_only: bool = False):
        super().__init__()
        self.conv = nn.Sequential()
        channels, unit_stride, subunits = in_channels, stride, max(1, subunits)
        for n in range(subunits):
            self.conv.add_module(f"unit{n}", Convolution(spatial_dims, channels, out_channels, unit_stride,
                                                         kernel_size, dropout,
                                                         conv_only=last_conv_only and n == subunits - 1))
            channels, unit_stride = out_channels, 1
        self.residual: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            size, padding = (kernel_size, (kernel_size - 1) // 2) if stride != 1 else (1, 0)
            self.residual = _convolution_type(spatial_dims)(in_channels, out_channels, size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.residual(x)


class SkipConnection(nn.Module):
    """The deeper levels' output ('submodule') concatenated to their input along the channels."""

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


class UNet(nn.Module):
    """MONAI's UNet with its defaults (PReLU, instance norm, norm-dropout-activation order) and the arguments the
    manifest uses; `kernel_size` and `up_kernel_size` are single odd integers."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int],
                 strides: Sequence[int], kernel_size: int = 3, up_kernel_size: int = 3, num_res_units: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        if len(channels) < 2 or len(strides) < len(channels) - 1:
            raise ValueError("a UNet needs at least 2 channel counts and one stride per level below the top")
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.kernel_size, self.up_kernel_size = kernel_size, up_kernel_size
        self.num_res_units, self.dropout = num_res_units, dropout
        self.model = self._level(in_channels, out_channels, list(channels), list(strides), top=True)

    def _level(self, in_channels: int, out_channels: int, channels: list[int], strides: list[int],
               top: bool) -> nn.Module:
        width, stride = channels[0], strides[0]
        if len(channels) > 2:
            deeper, up_channels = self._level(width, width, channels[1:], strides[1:], top=False), 2 * width
        else:
            deeper, up_channels = self._down(width, channels[1], 1), width + channels[1]
        return nn.Sequential(self._down(in_channels, width, stride), SkipConnection(deeper),
                             self._up(up_channels, out_channels, stride, top))

    def _down(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        if self.num_res_units > 0:
            return ResidualUnit(self.spatial_dims, in_channels, out_channels, stride, self.kernel_size,
                                self.num_res_units, self.dropout)
        return Convolution(self.spatial_dims, in_channels, out_channels, stride, self.kernel_size, self.dropout)

    def _up(self, in_channels: int, out_channels: int, stride: int, top: bool) -> nn.Module:
        upsample = Convolution(self.spatial_dims, in_channels, out_channels, stride, self.up_kernel_size,
                               self.dropout, transposed=True, conv_only=top and self.num_res_units == 0)
        if self.num_res_units == 0:
            return upsample
        return nn.Sequential(upsample, ResidualUnit(self.spatial_dims, out_channels, out_channels, 1,
                                                    self.kernel_size, 1, self.dropout, last_conv_only=top))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
