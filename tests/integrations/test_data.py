"""The callbacks' data for the gradient pass: a copy of the training dataset read with another
transform (pass_transform), whatever wraps it, the original left unchanged."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import ConcatDataset, Subset, TensorDataset

from torch_dash_optim.integrations._data import check_pass_options, with_pass_transform

from ._common import need

datasets = need("torchvision.datasets")
T = need("torchvision.transforms")


def _fake(n: int, offset: int, transform) -> object:
    return datasets.FakeData(size=n, image_size=(3, 4, 4), num_classes=3, transform=transform, random_offset=offset)


def _flip():
    return T.Compose([T.ToTensor(), T.RandomHorizontalFlip(p=1.0)])  # an "augmentation" that always acts


def test_the_transform_is_replaced_in_a_copy_inside_concat_and_subset():
    parts = [_fake(6, 0, _flip()), Subset(_fake(8, 100, _flip()), [5, 1, 2])]
    grown = ConcatDataset(parts)
    plain = with_pass_transform(grown, T.ToTensor(), who="DASHCallback")
    assert len(plain) == len(grown) == 9 and plain.cumulative_sizes == grown.cumulative_sizes
    for i in range(len(grown)):
        (x, y), (xa, ya) = plain[i], grown[i]
        assert y == ya and torch.equal(xa, x.flip(-1)) and not torch.equal(xa, x)
    # The training dataset still augments; the copy shares its data and wrappers' indices.
    assert isinstance(parts[0].transform, T.Compose) and isinstance(parts[1].dataset.transform, T.Compose)
    assert plain.datasets[1].indices == [5, 1, 2] and plain.datasets[0] is not parts[0]


def test_torchvision_transforms_follow_the_new_transform():
    """VisionDataset keeps ``transforms`` (transform and target_transform together) beside ``transform``."""
    base = datasets.FakeData(size=4, image_size=(3, 4, 4), num_classes=3, transform=_flip(),
                             target_transform=lambda y: y + 10)
    plain = with_pass_transform(base, T.ToTensor(), who="DASHCallback")
    assert type(plain.transforms).__name__ == "StandardTransform"
    assert plain.transforms.transform is plain.transform and plain.transforms.target_transform is base.target_transform
    assert base.transforms.transform is base.transform  # the original is untouched
    assert plain[0][1] == base[0][1] >= 10


def test_a_hugging_face_style_dataset_gets_with_transform():
    class HFLike:  # datasets.Dataset's API: with_transform returns a new dataset, set_transform changes it
        def __init__(self, fn=None):
            self.fn, self.rows = fn, [{"x": [1.0, 2.0]}, {"x": [3.0, 4.0]}]

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return self.fn({k: [v] for k, v in self.rows[i].items()}) if self.fn else self.rows[i]

        def with_transform(self, fn):
            return HFLike(fn)

    augmenting = HFLike(lambda batch: {"x": [[-v for v in x] for x in batch["x"]]})
    plain = with_pass_transform(augmenting, lambda batch: batch, who="DASHCallback")
    assert plain is not augmenting and plain[1] == {"x": [[3.0, 4.0]]} and augmenting[1] == {"x": [[-3.0, -4.0]]}


def test_a_dataset_without_a_transform_is_refused_and_named():
    grown = ConcatDataset([_fake(2, 0, T.ToTensor()), TensorDataset(torch.zeros(2, 3))])
    with pytest.raises(TypeError, match=r"found no transform to replace .* TensorDataset has no 'transform'"):
        with_pass_transform(grown, T.ToTensor(), who="DASHCallback")

    class Frozen(torch.utils.data.Dataset):
        @property
        def transform(self):
            return None

    with pytest.raises(TypeError, match=r"cannot replace the transform .* \(Frozen\): its 'transform' attribute"):
        with_pass_transform(Frozen(), T.ToTensor(), who="DASHCallback")


def test_pass_transform_must_be_callable():
    with pytest.raises(TypeError, match=r"pass_transform must be callable, .*; got str"):
        check_pass_options(None, None, "eval")
