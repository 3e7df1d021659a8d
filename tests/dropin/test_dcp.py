"""DASH settings survive torch.distributed.checkpoint and stay plain, weights_only-loadable data."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from torch_dash_optim import DASHWrapper

from ._common import tiny_mlp, train, vector_batches

dcp = pytest.importorskip("torch.distributed.checkpoint")
sd_utils = pytest.importorskip("torch.distributed.checkpoint.state_dict")


def _wrapped(seed: int = 0, **kwargs: object) -> tuple[nn.Module, DASHWrapper]:
    model = tiny_mlp(seed)
    base = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss(), **kwargs)


def _trained() -> tuple[nn.Module, DASHWrapper]:
    model, opt = _wrapped(lambd=0.5, alpha=0.4, state="scale")
    train(opt, model, vector_batches(2))
    opt.on_new_data(vector_batches(2))
    opt.on_new_data(vector_batches(2))
    return model, opt


def _assert_same_settings(a: DASHWrapper, b: DASHWrapper) -> None:
    assert b.config == a.config and b.num_dash_calls == a.num_dash_calls == 2
    assert all(g["dash_settings"] is None for g in b.param_groups)  # in the live groups, a placeholder only


def test_settings_survive_get_and_set_optimizer_state_dict() -> None:
    model, opt = _trained()
    osd = sd_utils.get_optimizer_state_dict(model, opt)
    assert "dash" not in osd  # DCP keeps only state and param_groups
    fresh_model, fresh = _wrapped(seed=1)
    fresh_model.load_state_dict(model.state_dict())
    sd_utils.set_optimizer_state_dict(fresh_model, fresh, osd)
    _assert_same_settings(opt, fresh)
    for (_, s), (_, t) in zip(opt.state.items(), fresh.state.items(), strict=True):
        assert torch.equal(s["exp_avg"], t["exp_avg"])


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_settings_survive_dcp_save_and_load(tmp_path: Path) -> None:
    model, opt = _trained()
    _, osd = sd_utils.get_state_dict(model, opt)
    dcp.save({"optim": osd}, checkpoint_id=str(tmp_path))
    fresh_model, fresh = _wrapped(seed=1)
    fresh_model.load_state_dict(model.state_dict())
    _, template = sd_utils.get_state_dict(fresh_model, fresh)
    loaded = {"optim": template}
    dcp.load(loaded, checkpoint_id=str(tmp_path))
    sd_utils.set_state_dict(fresh_model, fresh, model_state_dict={}, optim_state_dict=loaded["optim"])
    _assert_same_settings(opt, fresh)


def test_state_dict_loads_with_weights_only() -> None:
    _, opt = _trained()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    sd = torch.load(buffer, weights_only=True)
    _, fresh = _wrapped(seed=0)
    fresh.load_state_dict(sd)
    _assert_same_settings(opt, fresh)


def test_a_checkpoint_saved_before_the_group_key_rename_still_loads() -> None:
    model = tiny_mlp()
    groups = [{"params": model[0].parameters(), "dash_lambd": 0.8}, {"params": model[2].parameters()}]
    opt = DASHWrapper(torch.optim.SGD(groups, lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    sd = opt.state_dict()
    old = {  # the 0.1.0 layout: a "dash" entry, and DASH's floor under the key "lambd"
        "state": sd["state"],
        "param_groups": [
            {("lambd" if k == "dash_lambd" else k): v for k, v in g.items() if k != "dash_settings"}
            for g in sd["param_groups"]
        ],
        "dash": {"config": sd["dash"]["config"], "calls": 3},
    }
    plain = [{"params": model[0].parameters()}, {"params": model[2].parameters()}]
    fresh = DASHWrapper(torch.optim.SGD(plain, lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    fresh.load_state_dict(old)
    assert fresh.num_dash_calls == 3
    assert fresh.param_groups[0]["dash_lambd"] == 0.8 and "lambd" not in fresh.param_groups[0]
    report = {p.name: p for p in fresh.on_new_data(vector_batches(1)).params}
    assert report["0.weight"].lambd == 0.8 and report["2.weight"].lambd == 0.3


FLAT = sd_utils.StateDictOptions(flatten_optimizer_state_dict=True)


def test_settings_survive_the_flattened_layout() -> None:
    model, opt = _trained()
    osd = sd_utils.get_optimizer_state_dict(model, opt, options=FLAT)
    assert "param_groups.0.weight.dash_settings" in osd  # one flat key per parameter and group key
    fresh_model, fresh = _wrapped(seed=1)
    fresh_model.load_state_dict(model.state_dict())
    sd_utils.set_optimizer_state_dict(fresh_model, fresh, osd, options=FLAT)
    _assert_same_settings(opt, fresh)
    for (_, s), (_, t) in zip(opt.state.items(), fresh.state.items(), strict=True):
        assert torch.equal(s["exp_avg"], t["exp_avg"]) and torch.equal(s["exp_avg_sq"], t["exp_avg_sq"])


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_settings_survive_dcp_save_and_load_flattened(tmp_path: Path) -> None:
    model, opt = _trained()
    _, osd = sd_utils.get_state_dict(model, opt, options=FLAT)
    dcp.save({"optim": osd}, checkpoint_id=str(tmp_path))
    fresh_model, fresh = _wrapped(seed=1)
    fresh_model.load_state_dict(model.state_dict())
    _, template = sd_utils.get_state_dict(fresh_model, fresh, options=FLAT)
    loaded = {"optim": template}
    dcp.load(loaded, checkpoint_id=str(tmp_path))
    sd_utils.set_state_dict(fresh_model, fresh, model_state_dict={}, optim_state_dict=loaded["optim"], options=FLAT)
    _assert_same_settings(opt, fresh)


def test_a_bare_optimizers_flattened_checkpoint_loads_before_wrapping() -> None:
    """DCP's flattened layout needs every key of the live groups: load a bare checkpoint, then wrap."""
    model = tiny_mlp(0)
    bare = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(bare, model, vector_batches(2))
    osd = sd_utils.get_optimizer_state_dict(model, bare, options=FLAT)
    fresh_model = tiny_mlp(1)
    fresh_bare = torch.optim.Adam(fresh_model.parameters(), lr=1e-2)
    sd_utils.set_optimizer_state_dict(fresh_model, fresh_bare, osd, options=FLAT)
    wrapped = DASHWrapper(fresh_bare, model=fresh_model, loss_fn=nn.CrossEntropyLoss(), lambd=0.5)
    assert wrapped.config.lambd == 0.5 and wrapped.num_dash_calls == 0
    for (_, s), (_, t) in zip(bare.state.items(), wrapped.state.items(), strict=True):
        assert torch.equal(s["exp_avg"], t["exp_avg"])
