"""The ``features`` data set (the paper's data model) and the PatchCNN model made for it."""

from __future__ import annotations

import pytest
import torch

from torch_dash_optim.experiments.datasets import DATASETS, GENERATED_DATASETS, dataset_setup, load_dataset
from torch_dash_optim.experiments.features import FeatureSpec, make_features
from torch_dash_optim.experiments.models import PatchCNN, build_model

SMALL = FeatureSpec(num_train=400, num_test=200, seed=5)


def test_same_seed_same_tensors_other_seed_other_tensors() -> None:
    other = FeatureSpec(num_train=400, num_test=200, seed=6)
    a, b, c = make_features(SMALL), make_features(SMALL), make_features(other)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_each_input_has_its_class_feature_in_one_patch_and_noise_orthogonal_to_features() -> None:
    data = make_features(SMALL)
    spec = data.spec
    x, y = data.train.tensors
    patches = x.reshape(len(x), spec.patches, spec.patch_dim)
    n = torch.arange(len(x))
    # the feature patch is exactly the scaled feature, and the feature belongs to the class
    assert torch.allclose(patches[n, data.train_patch], spec.feature_strength * data.features[data.train_feature])
    assert torch.equal(data.train_feature // (1 + spec.rare), y)
    # every other patch lies in the noise space: no component along any feature
    noise = patches.clone()
    noise[n, data.train_patch] = 0
    assert float((noise @ data.features.T).abs().max()) < 1e-4
    assert float(noise.std()) > 0.5 * spec.noise_std


def test_rare_features_have_the_asked_frequency() -> None:
    data = make_features(FeatureSpec(num_train=20000, num_test=10, rare=3, rare_freq=0.1))
    share = float(data.is_rare(data.train_feature).float().mean())
    assert abs(share - 0.3) < 0.02


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rare": 4, "rare_freq": 0.3}, "rare \\* rare_freq < 1"),
        ({"patch_dim": 40}, "need patch_dim > 40"),
        ({"classes": 1}, "classes=1"),
        ({"noise_std": -1.0}, "noise_std=-1.0"),
    ],
)
def test_bad_specs_name_the_setting(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FeatureSpec(**kwargs)


def test_features_is_a_generated_data_set_of_the_harness() -> None:
    assert "features" in DATASETS and "features" in GENERATED_DATASETS and "mnist1d" in DATASETS
    data = load_dataset("features", train_size=100)
    spec = FeatureSpec()
    assert (len(data.train), len(data.test), data.input_shape, data.patch_dim) == (
        100,
        spec.num_test,
        (spec.input_length,),
        spec.patch_dim,
    )
    assert dataset_setup("features")["features"]["noise_std"] == spec.noise_std


def test_patchcnn_normalises_after_each_conv_and_reads_one_patch_per_kernel() -> None:
    model = build_model("patchcnn", (1024,), 10, width=8, patch_dim=128)()
    assert isinstance(model, PatchCNN)
    assert model.conv1.kernel_size == (128,) and model.conv1.stride == (128,) and model.conv1.bias is None
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("BatchNorm1d") == 2 and kinds.count("Conv1d") == 2
    assert model(torch.randn(3, 1024)).shape == (3, 10)
    with pytest.raises(ValueError, match="multiple of patch_dim"):
        PatchCNN(1000, 10, patch_dim=128)
    with pytest.raises(ValueError, match="1-D signals"):
        build_model("patchcnn", (3, 8, 8), 10)


def test_feature_draws_give_each_data_seed_its_own_draw_with_the_given_settings() -> None:
    import pickle

    from torch_dash_optim.experiments.features import FeatureDraws

    spec = FeatureSpec(num_train=50, num_test=20, noise_std=0.5, seed=99)
    draws = FeatureDraws(spec)
    train, test = draws(3)
    expected = make_features(FeatureSpec(num_train=50, num_test=20, noise_std=0.5, seed=3))
    assert torch.equal(train.tensors[0], expected.train.tensors[0])
    assert torch.equal(test.tensors[1], expected.test.tensors[1])
    assert not torch.equal(train.tensors[0], draws(4)[0].tensors[0])
    assert draws.data(3).spec.noise_std == 0.5 and draws.data(3).spec.seed == 3
    assert torch.equal(pickle.loads(pickle.dumps(draws))(3)[0].tensors[0], train.tensors[0])  # for worker processes
    with pytest.raises(ValueError, match="seed=-1 must be an integer >= 0"):
        draws(-1)


def test_the_noise_to_feature_ratio_is_the_typical_norms_ratio() -> None:
    spec = FeatureSpec(num_train=2000, num_test=10, noise_std=0.7, feature_strength=2.0, seed=1)
    data = make_features(spec)
    x = data.train.tensors[0].reshape(-1, spec.patches, spec.patch_dim)
    noise = torch.ones(x.shape[:2], dtype=torch.bool)
    noise[torch.arange(len(x)), data.train_patch] = False
    ratio = float(x[noise].norm(dim=1).mean()) / float(x[~noise].norm(dim=1).mean())
    assert spec.noise_to_feature == pytest.approx(0.7 * (128 - 40) ** 0.5 / 2.0)
    assert ratio == pytest.approx(spec.noise_to_feature, rel=0.02)
