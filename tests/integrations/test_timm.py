"""timm's Lookahead around (and outside) the DASH wrapper: its slow weights keep the shrink."""

from __future__ import annotations

import warnings

import pytest
import torch

from ._common import need
from ._weights import assert_shrink_kept, batches, mlp, set_lr, train

timm_optim = need("timm.optim")
from torch_dash_optim import DASHWrapper, find_dash, on_new_data  # noqa: E402


def _lookahead_run(policy: str, shrink: bool):
    model = mlp()
    base = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    opt = DASHWrapper(timm_optim.Lookahead(base, alpha=0.5, k=2), model=model,
                      loss_fn=torch.nn.CrossEntropyLoss(), state=policy, lambd=0.1)
    data = batches()
    train(model, opt, data, steps=5)  # one step past a sync: slow and fast weights differ
    set_lr(opt, 0.0)
    report, before, at_shrink = None, None, None
    if shrink:
        before = {n: {k: v.clone() for k, v in base.state[p].items()} for n, p in model.named_parameters()}
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every key of Lookahead(AdamW) is known
            report = opt.on_new_data(data)
        at_shrink = {n: p.detach().clone() for n, p in model.named_parameters()}
        before = (before, {n: base.state[p]["exp_avg"].clone() for n, p in model.named_parameters() if base.state[p]})
    train(model, opt, data, steps=4)  # two Lookahead syncs at lr 0
    return model, base, report, before, at_shrink


@pytest.mark.parametrize("policy", ["keep", "scale", "reset"])
def test_lookahead_slow_weights_keep_the_shrink(policy):
    model, base, report, before, at_shrink = _lookahead_run(policy, shrink=True)
    unshrunk, *_ = _lookahead_run(policy, shrink=False)
    assert report.unknown_state == {} and report.mean_factor < 0.9
    assert_shrink_kept(model, unshrunk, report.factors, policy, at_shrink)
    if policy == "scale":  # the moments live in the base optimizer, and were found there
        old, new = before
        f = report.factors["0.weight"]
        torch.testing.assert_close(new["0.weight"], old["0.weight"]["exp_avg"] * f)


def test_lookahead_from_create_optimizer_and_around_the_wrapper():
    model = mlp()
    opt = timm_optim.create_optimizer_v2(model, opt="lookahead_adamw", lr=1e-2)
    assert type(opt).__name__ == "Lookahead"
    wrapper = DASHWrapper(opt, model=model, loss_fn=torch.nn.CrossEntropyLoss())
    train(model, wrapper, batches(), steps=6)
    assert any("lookahead_slow_buff" in s for s in opt._base_optimizer.state.values())
    report = on_new_data(wrapper, batches())
    assert report.call == 1 and report.unknown_state == {}

    # Lookahead outside the wrapper: found through its base optimizer.
    model = mlp()
    inner = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=torch.nn.CrossEntropyLoss())
    outer = timm_optim.Lookahead(inner, k=2)
    assert find_dash(outer) is inner
    train(model, outer, batches(), steps=2)
    assert on_new_data(outer, batches()).call == 1 and inner.num_dash_calls == 1
