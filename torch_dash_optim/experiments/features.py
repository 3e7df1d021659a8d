"""The ``features`` data set: signals drawn from the DASH paper's data model.

The paper explains the warm-start gap with a data model (its theoretical framework): an input
is a row of patches; one patch carries a *feature* of the input's class, the others carry
*noise* that does not depend on the class and differs from sample to sample. Each class has a
*common* feature, which most of its samples carry, and *rare* features, which few do. A
network can fit a training sample either by learning its feature or by memorizing its noise.
A warm-started network has memorized the first chunks' noise, so their samples stop pushing
it towards the rare features; a cold start learns more of them.

:func:`make_features` draws such a data set from a seed, on the CPU, in well under a second:

* an orthonormal basis of ``R^patch_dim`` is drawn; ``classes * (1 + rare)`` of its vectors
  are the features, the rest span the noise space, orthogonal to every feature (as in the
  paper's model);
* a sample of class ``y`` carries class ``y``'s common feature with probability
  ``1 - rare * rare_freq``, else one of its ``rare`` rare features (each with probability
  ``rare_freq``), scaled by ``feature_strength`` and put in one patch chosen at random;
* every other patch is Gaussian noise in the noise space, of standard deviation
  ``noise_std`` per dimension.

The generator also keeps what the mechanism analysis needs: the feature vectors, and for every
sample which patch holds its feature and which feature it is.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

__all__ = ["FeatureDraws", "FeatureSpec", "FeaturesData", "make_features"]


@dataclass(frozen=True)
class FeatureSpec:
    """How :func:`make_features` draws the data set.

    Attributes
    ----------
    num_train, num_test:
        Sizes of the training and test sets.
    classes:
        Number of classes.
    rare:
        Rare features per class (each class also has one common feature).
    rare_freq:
        Probability that a sample carries one given rare feature of its class.
    patches:
        Patches per input.
    patch_dim:
        Values per patch; an input has ``patches * patch_dim`` values.
    feature_strength:
        Norm of a feature in its patch.
    noise_std:
        Standard deviation, per noise-space dimension, of a noise patch.
    seed:
        The generator's seed; the same spec gives the same tensors on every machine.

    Examples
    --------
    >>> FeatureSpec().input_length
    1024
    >>> FeatureSpec(rare=5, rare_freq=0.25)
    Traceback (most recent call last):
    ...
    ValueError: rare=5 features at rare_freq=0.25 each leave no room for the common feature: make rare * rare_freq < 1
    """

    num_train: int = 2000
    num_test: int = 2000
    classes: int = 10
    rare: int = 3
    rare_freq: float = 0.1
    patches: int = 8
    patch_dim: int = 128
    feature_strength: float = 1.0
    noise_std: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_train", "num_test", "patches", "patch_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.classes < 2:
            raise ValueError(f"classes={self.classes!r} must be >= 2")
        if self.rare < 0 or not 0 <= self.rare_freq <= 1:
            raise ValueError(f"rare={self.rare!r} must be >= 0 and rare_freq={self.rare_freq!r} in [0, 1]")
        if self.rare * self.rare_freq >= 1:
            raise ValueError(
                f"rare={self.rare} features at rare_freq={self.rare_freq} each leave no room for the common "
                "feature: make rare * rare_freq < 1"
            )
        if self.num_features >= self.patch_dim:
            raise ValueError(
                f"{self.num_features} features ({self.classes} classes x {1 + self.rare}) need patch_dim > "
                f"{self.num_features} so that noise has a space of its own; got patch_dim={self.patch_dim}"
            )
        if self.feature_strength <= 0 or self.noise_std < 0:
            raise ValueError(
                f"feature_strength={self.feature_strength!r} must be > 0 and noise_std={self.noise_std!r} >= 0"
            )

    @property
    def num_features(self) -> int:
        """The number of features of all classes together, ``classes * (1 + rare)``."""
        return self.classes * (1 + self.rare)

    @property
    def input_length(self) -> int:
        """The number of values in one input, ``patches * patch_dim``."""
        return self.patches * self.patch_dim

    @property
    def noise_to_feature(self) -> float:
        """The typical norm of a noise patch over that of a feature, ``noise_std * sqrt(noise dims) / strength``.

        A noise patch has ``patch_dim - num_features`` Gaussian coordinates of standard
        deviation ``noise_std`` (its norm is about ``noise_std`` times their square root); a
        feature has norm ``feature_strength``.

        Examples
        --------
        >>> round(FeatureSpec().noise_to_feature, 2)  # 88 noise dimensions at std 1, feature of norm 1
        9.38
        """
        return self.noise_std * math.sqrt(self.patch_dim - self.num_features) / self.feature_strength


@dataclass
class FeaturesData:
    """A drawn data set and what generated it.

    Attributes
    ----------
    spec:
        The settings it was drawn with.
    features:
        ``(num_features, patch_dim)``: feature ``c * (1 + rare) + k`` is class ``c``'s common
        feature for ``k = 0`` and its ``k``-th rare one for ``k >= 1``.
    noise_basis:
        ``(patch_dim - num_features, patch_dim)``: orthonormal rows spanning the noise space.
    train, test:
        ``TensorDataset(x, y)`` with ``x`` of shape ``(N, patches * patch_dim)``.
    train_feature, test_feature:
        Per sample, the index of the feature it carries (a row of ``features``).
    train_patch, test_patch:
        Per sample, the patch holding that feature (the others hold noise).

    Examples
    --------
    >>> from torch_dash_optim.experiments.features import FeatureSpec, make_features
    >>> data = make_features(FeatureSpec(num_train=20, num_test=10, seed=1))
    >>> data.spec.num_train, tuple(data.train_patch.shape), int(data.train_patch.max()) < data.spec.patches
    (20, (20,), True)
    """

    spec: FeatureSpec
    features: Tensor
    noise_basis: Tensor
    train: TensorDataset
    test: TensorDataset
    train_feature: Tensor
    test_feature: Tensor
    train_patch: Tensor
    test_patch: Tensor

    def is_rare(self, feature: Tensor) -> Tensor:
        """Return, per feature index, whether it is a rare feature.

        Examples
        --------
        >>> data = make_features(FeatureSpec(num_train=20, num_test=10))
        >>> data.is_rare(torch.tensor([0, 1, 4])).tolist()
        [False, True, False]
        """
        return feature % (1 + self.spec.rare) != 0


def _draw(
    n: int, spec: FeatureSpec, features: Tensor, noise_basis: Tensor, g: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    y = torch.randint(0, spec.classes, (n,), generator=g)
    # which feature of its class a sample carries: 0 (common) or 1..rare
    probs = torch.tensor([1 - spec.rare * spec.rare_freq] + [spec.rare_freq] * spec.rare, dtype=torch.float64)
    k = torch.multinomial(probs, n, replacement=True, generator=g)
    feature = y * (1 + spec.rare) + k
    patch = torch.randint(0, spec.patches, (n,), generator=g)
    coeffs = torch.randn(n, spec.patches, noise_basis.shape[0], generator=g, dtype=torch.float64)
    x = spec.noise_std * coeffs @ noise_basis  # (n, patches, patch_dim)
    x[torch.arange(n), patch] = spec.feature_strength * features[feature]
    return x.reshape(n, -1).float(), y, feature, patch


def make_features(spec: FeatureSpec | None = None) -> FeaturesData:
    """Draw the ``features`` data set (see the module's docstring) from ``spec.seed``.

    Parameters
    ----------
    spec:
        The settings (default: :class:`FeatureSpec`'s).

    Returns
    -------
    FeaturesData
        The training and test sets, the features, the noise space, and per sample its feature
        and the patch holding it.

    Examples
    --------
    >>> data = make_features(FeatureSpec(num_train=50, num_test=20, seed=3))
    >>> tuple(data.train.tensors[0].shape), tuple(data.test.tensors[0].shape)
    ((50, 1024), (20, 1024))
    >>> bool(torch.equal(data.train.tensors[0], make_features(FeatureSpec(num_train=50, num_test=20,
    ...                                                                      seed=3)).train.tensors[0]))
    True
    >>> float((data.features @ data.noise_basis.T).abs().max()) < 1e-6
    True
    """
    spec = spec or FeatureSpec()
    g = torch.Generator().manual_seed(spec.seed)
    basis, _ = torch.linalg.qr(torch.randn(spec.patch_dim, spec.patch_dim, generator=g, dtype=torch.float64))
    basis = basis.T  # rows are orthonormal
    features, noise_basis = basis[: spec.num_features], basis[spec.num_features :]
    x, y, f, p = _draw(spec.num_train, spec, features, noise_basis, g)
    xt, yt, ft, pt = _draw(spec.num_test, spec, features, noise_basis, g)
    return FeaturesData(
        spec,
        features.float(),
        noise_basis.float(),
        TensorDataset(x, y),
        TensorDataset(xt, yt),
        f,
        ft,
        p,
        pt,
    )


@functools.lru_cache(maxsize=4)
def _drawn(spec: FeatureSpec) -> FeaturesData:
    return make_features(spec)


@dataclass(frozen=True)
class FeatureDraws:
    """The ``features`` data set drawn per data seed with given settings: ``draws(seed)`` is ``(train, test)``.

    What :func:`~torch_dash_optim.experiments.run_protocol` takes as ``data=`` to give each seed
    a draw of its own with settings other than the default (the noise sweep of
    :mod:`~torch_dash_optim.experiments.mechanism`, say): data seed ``s`` draws
    ``make_features(replace(spec, seed=s))``. It is picklable, so worker processes draw their
    seeds' data themselves (a draw takes well under a second and the last few are cached).

    Attributes
    ----------
    spec:
        The settings; its ``seed`` is replaced by the data seed.

    Examples
    --------
    >>> draws = FeatureDraws(FeatureSpec(num_train=40, num_test=10, noise_std=0.5))
    >>> train, test = draws(3)
    >>> len(train), len(test), draws.data(3).spec.seed
    (40, 10, 3)
    >>> bool(torch.equal(train.tensors[0], draws(4)[0].tensors[0]))
    False
    """

    spec: FeatureSpec = field(default_factory=FeatureSpec)

    def data(self, seed: int) -> FeaturesData:
        """The whole draw of data seed ``seed``: the sets, the features and what each sample carries."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be an integer >= 0 (the data seed)")
        return _drawn(replace(self.spec, seed=seed))

    def __call__(self, seed: int) -> tuple[TensorDataset, TensorDataset]:
        drawn = self.data(seed)
        return drawn.train, drawn.test
