"""The models of the protocol: small 1-D and 2-D CNNs, an MLP, ResNet-18 (CIFAR variant), VGG-16-BN.

:class:`CNN1d` is the embedded default on MNIST-1D: its conv kernels give DASH units of 3-5
weights (one per ``(out, in)`` kernel slice), where the direction of a unit's gradient carries
information, as in the paper's 3x3 kernels. :class:`CNN2d` is the default on MNIST: the
paper's building block (3x3 conv, BatchNorm, ReLU) twice, small enough for a CPU. The other
models follow the DASH authors' architectures: the MLP is ``Linear`` layers with optional
BatchNorm and ReLU between them; ResNet-18 has the 3x3 stride-1 stem (CIFAR variant, with
the max-pool the authors keep) and a ``fc`` head; VGG-16-BN has the ``(7, 7)`` average pool
and the 4096-4096 classifier with dropout.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["CNN1d", "CNN2d", "MODELS", "MLP", "PatchCNN", "build_model", "resnet18", "vgg16_bn"]


class MLP(nn.Module):
    """A multi-layer perceptron on flattened inputs.

    Parameters
    ----------
    in_features:
        Size of a flattened input.
    num_classes:
        Number of outputs.
    width:
        Hidden width.
    depth:
        Number of Linear layers (2: one hidden layer; 3: two hidden layers, "512x512").
    batch_norm:
        Put a ``BatchNorm1d`` after each hidden Linear layer (as the authors' ``mlp``).

    Examples
    --------
    >>> MLP(40, 10, width=16, depth=3)(torch.randn(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, in_features: int, num_classes: int, width: int = 512, depth: int = 3, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth={depth} must be >= 1 (the number of Linear layers)")
        layers: list[nn.Module] = [nn.Flatten()]
        size = in_features
        for _ in range(depth - 1):
            layers.append(nn.Linear(size, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            size = width
        layers.append(nn.Linear(size, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch.

        Parameters
        ----------
        x:
            A batch of inputs, of shape ``(N, ...)`` with ``in_features`` values after the
            batch dimension.

        Returns
        -------
        Tensor
            The logits, of shape ``(N, num_classes)``.
        """
        return self.net(x)


class CNN1d(nn.Module):
    """A small 1-D CNN for signals: Conv1d + ReLU layers, then a Linear head.

    Each conv layer has ``width`` channels, "same" padding and stride ``stride``; the feature
    map of the last one is flattened into the ``Linear`` head.

    Parameters
    ----------
    length:
        Length of an input signal (a 1-D input of shape ``(length,)`` or ``(1, length)``).
    num_classes:
        Number of outputs.
    width:
        Channels of every conv layer.
    kernels:
        Kernel size of each conv layer (one layer per entry).
    stride:
        Stride of every conv layer.
    in_channels:
        Channels of the input.

    Examples
    --------
    >>> model = CNN1d(40, 10, width=8)
    >>> model(torch.randn(2, 40)).shape
    torch.Size([2, 10])
    >>> [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    [(8, 1, 5), (8, 8, 3), (8, 8, 3)]
    """

    def __init__(
        self,
        length: int,
        num_classes: int,
        width: int = 32,
        kernels: Sequence[int] = (5, 3, 3),
        stride: int = 2,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if not kernels or any(int(k) < 1 for k in kernels):
            raise ValueError(f"kernels={tuple(kernels)!r} must be one or more sizes >= 1")
        if width < 1 or stride < 1:
            raise ValueError(f"width={width} and stride={stride} must be >= 1")
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        cin, size = in_channels, length
        for k in kernels:
            layers += [nn.Conv1d(cin, width, int(k), stride, int(k) // 2), nn.ReLU()]
            cin, size = width, (size + 2 * (int(k) // 2) - int(k)) // stride + 1
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch.

        Parameters
        ----------
        x:
            A batch of signals, of shape ``(N, length)`` (one channel) or
            ``(N, in_channels, length)``.

        Returns
        -------
        Tensor
            The logits, of shape ``(N, num_classes)``.
        """
        if x.ndim == 2:
            x = x.unsqueeze(1)
        return self.head(torch.flatten(self.features(x), 1))


class PatchCNN(nn.Module):
    """A small CNN over the patches of a ``features`` input, with BatchNorm after each conv.

    The first conv reads one patch at a time (kernel and stride ``patch_dim``), so each of its
    ``width`` kernels is one DASH unit that sees exactly one patch; the second mixes
    neighbouring patches (kernel 3); a global average pool over patches feeds the ``Linear``
    head. The convs have no bias and are each followed by ``BatchNorm1d`` and ReLU, as in
    the DASH authors' models.

    Parameters
    ----------
    length:
        Values per input (``patches * patch_dim``).
    num_classes:
        Number of outputs.
    patch_dim:
        Values per patch.
    width:
        Channels of both conv layers.

    Examples
    --------
    >>> model = PatchCNN(256, 10, patch_dim=32, width=8)
    >>> model(torch.randn(4, 256)).shape
    torch.Size([4, 10])
    >>> tuple(model.conv1.weight.shape)
    (8, 1, 32)
    """

    def __init__(self, length: int, num_classes: int, patch_dim: int = 32, width: int = 64) -> None:
        super().__init__()
        if patch_dim < 1 or length % patch_dim:
            raise ValueError(f"length={length} must be a multiple of patch_dim={patch_dim}")
        if width < 1:
            raise ValueError(f"width={width} must be >= 1")
        self.conv1 = nn.Conv1d(1, width, patch_dim, stride=patch_dim, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch.

        Parameters
        ----------
        x:
            A batch of shape ``(N, length)`` or ``(N, 1, length)``.

        Returns
        -------
        Tensor
            The logits, of shape ``(N, num_classes)``.
        """
        if x.ndim == 2:
            x = x.unsqueeze(1)
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.head(h.mean(2))


class CNN2d(nn.Module):
    """A small CNN for small images: two blocks of 3x3 conv, BatchNorm, ReLU and 2x2 max-pool.

    The first block has ``width`` channels, the second ``2 * width``; the convs have no bias
    (BatchNorm follows each, as in the DASH authors' models) and "same" padding, and the
    ``Linear`` head reads the flattened ``(2 * width, H // 4, W // 4)`` map. On 28x28 digits
    with ``width=16``: 20,538 parameters; by default DASH has one unit per ``(out, in)`` 3x3
    kernel, 16 in the first conv and 512 in the second.

    Parameters
    ----------
    input_shape:
        Shape of one image, ``(C, H, W)`` with ``H`` and ``W`` at least 4.
    num_classes:
        Number of outputs.
    width:
        Channels of the first block (the second has twice as many).

    Examples
    --------
    >>> model = CNN2d((1, 28, 28), 10, width=4)
    >>> model(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> tuple(model.conv1.weight.shape), tuple(model.conv2.weight.shape), model.head.in_features
    ((4, 1, 3, 3), (8, 4, 3, 3), 392)
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 16) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(int(s) for s in input_shape[1:]) < 4 or int(input_shape[0]) < 1:
            raise ValueError(f"input_shape={tuple(input_shape)!r} must be an image shape (C, H, W) with H, W >= 4")
        if width < 1:
            raise ValueError(f"width={width} must be >= 1")
        channels, height, wide = (int(s) for s in input_shape)
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(2 * width * (height // 4) * (wide // 4), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch.

        Parameters
        ----------
        x:
            A batch of images, of shape ``(N, C, H, W)``.

        Returns
        -------
        Tensor
            The logits, of shape ``(N, num_classes)``.
        """
        h = self.pool(torch.relu(self.bn1(self.conv1(x))))
        h = self.pool(torch.relu(self.bn2(self.conv2(h))))
        return self.head(torch.flatten(h, 1))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with a 3x3 stride-1 stem (the CIFAR variant of the authors' code).

    Parameters
    ----------
    num_classes:
        Outputs of the ``fc`` head.
    in_channels:
        Input channels.
    width:
        Channels of the first stage (64 is the standard model, 11.2M parameters; the stages
        have ``width * (1, 2, 4, 8)``); smaller widths are for smoke runs.
    maxpool:
        Keep the max-pool after the stem, as the authors' code does; ``False`` gives the
        common CIFAR ResNet-18.

    Examples
    --------
    >>> ResNet18(10)(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in ResNet18(10, width=4, maxpool=False).parameters())
    44622
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64, maxpool: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if maxpool else nn.Identity()
        blocks: list[nn.Module] = []
        cin = width
        for i, cout in enumerate(width * k for k in (1, 2, 4, 8)):
            for j in range(2):
                blocks.append(_BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layers(x)), 1))


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16BN(nn.Module):
    """VGG-16 with BatchNorm, the ``(7, 7)`` average pool and a 4096-4096 classifier.

    Parameters
    ----------
    num_classes:
        Number of outputs.
    in_channels:
        Channels of the input images.
    width_divisor:
        Divide every conv width and the classifier width by this (1: the real VGG-16).

    Examples
    --------
    >>> VGG16BN(10, width_divisor=16)(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width_divisor: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = max(1, int(v) // width_divisor)
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = max(1, 4096 // width_divisor)
        self.classifier = nn.Sequential(
            nn.Linear(cin * 49, hidden),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def resnet18(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Build :class:`ResNet18` for inputs of shape ``(C, H, W)``.

    Parameters
    ----------
    input_shape:
        The shape of one input, ``(C, H, W)``.
    num_classes:
        Number of outputs.

    Returns
    -------
    torch.nn.Module
        A new, randomly initialised :class:`ResNet18`.

    Examples
    --------
    >>> resnet18((3, 32, 32), 10).fc.out_features
    10
    """
    return ResNet18(num_classes, in_channels=int(input_shape[0]))


def vgg16_bn(input_shape: Sequence[int], num_classes: int, width_divisor: int = 1) -> nn.Module:
    """Build :class:`VGG16BN` for inputs of shape ``(C, H, W)``.

    ``width_divisor`` divides every width (1: the real VGG-16, 134M parameters; larger values
    give a small model of the same layout, for tests).

    Parameters
    ----------
    input_shape:
        The shape of one input, ``(C, H, W)``.
    num_classes:
        Number of outputs.
    width_divisor:
        Divides every width (1: the real VGG-16).

    Returns
    -------
    torch.nn.Module
        A new, randomly initialised :class:`VGG16BN`.

    Examples
    --------
    >>> vgg16_bn((3, 32, 32), 100, width_divisor=16).classifier[-1].out_features
    100
    """
    return VGG16BN(num_classes, in_channels=int(input_shape[0]), width_divisor=width_divisor)


#: Model names accepted by :func:`build_model`.
MODELS: tuple[str, ...] = ("patchcnn", "cnn1d", "cnn2d", "mlp", "resnet18", "vgg16")


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width: int = 512,
    depth: int = 3,
    batch_norm: bool = False,
    kernels: Sequence[int] = (5, 3, 3),
    patch_dim: int = 32,
) -> Callable[[], nn.Module]:
    """Return a factory of fresh models of the named architecture.

    The factory is a :func:`functools.partial`, so it can be sent to worker processes
    (``--jobs``).

    Parameters
    ----------
    name:
        One of :data:`MODELS`.
    input_shape:
        Shape of one input, without the batch dimension.
    num_classes:
        Number of classes.
    width, depth, batch_norm:
        The MLP's settings (see :class:`MLP`); ``width`` is also the channels of ``cnn1d``
        and of ``cnn2d``'s first block (see :class:`CNN2d`).
    kernels:
        The conv kernel sizes of ``cnn1d`` (see :class:`CNN1d`).
    patch_dim:
        The patch length of ``patchcnn`` (see :class:`PatchCNN`); ``width`` is its channels.

    Examples
    --------
    >>> factory = build_model("mlp", (40,), 10, width=32)
    >>> factory()(torch.randn(4, 40)).shape
    torch.Size([4, 10])
    """
    if name == "mlp":
        in_features = math.prod(int(s) for s in input_shape)
        return functools.partial(MLP, in_features, num_classes, width=width, depth=depth, batch_norm=batch_norm)
    if name == "patchcnn":
        if len(input_shape) not in (1, 2) or (len(input_shape) == 2 and input_shape[0] != 1):
            raise ValueError(
                f"model 'patchcnn' needs 1-D signals of shape (length,) or (1, length); got {tuple(input_shape)}"
            )
        return functools.partial(PatchCNN, int(input_shape[-1]), num_classes, patch_dim=patch_dim, width=width)
    if name == "cnn1d":
        if len(input_shape) not in (1, 2) or (len(input_shape) == 2 and input_shape[0] != 1):
            raise ValueError(
                f"model 'cnn1d' needs 1-D signals of shape (length,) or (1, length); got {tuple(input_shape)}; "
                "use --model resnet18 or vgg16 for images"
            )
        return functools.partial(CNN1d, int(input_shape[-1]), num_classes, width=width, kernels=tuple(kernels))
    if name in ("cnn2d", "resnet18", "vgg16"):
        if len(input_shape) != 3:
            raise ValueError(
                f"model {name!r} needs image inputs of shape (C, H, W); got {tuple(input_shape)}; "
                "use --model mlp for vectors"
            )
        if name == "cnn2d":
            return functools.partial(CNN2d, tuple(int(s) for s in input_shape), num_classes, width=width)
        build = resnet18 if name == "resnet18" else vgg16_bn
        return functools.partial(build, tuple(input_shape), num_classes)
    raise ValueError(f"unknown model {name!r}; use one of {', '.join(map(repr, MODELS))}")
