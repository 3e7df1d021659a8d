"""Schedule-free optimizers: their ``z`` sequence is shrunk with the weights."""

from __future__ import annotations

import warnings

import pytest
import torch

from ._common import need
from ._weights import assert_shrink_kept, batches, mlp, set_lr, train

schedulefree = need("schedulefree")
from torch_dash_optim import DASHWrapper  # noqa: E402

OPTIMIZERS = {
    "AdamWScheduleFree": dict(lr=1e-2, warmup_steps=0, weight_decay=0.01),
    "SGDScheduleFree": dict(lr=1e-2, warmup_steps=0),
    "RAdamScheduleFree": dict(lr=1e-2),
    "AdamWScheduleFreeReference": dict(lr=1e-2, warmup_steps=0),
}


def _run(name: str, policy: str, shrink: bool):
    model = mlp()
    sf = getattr(schedulefree, name)(model.parameters(), **OPTIMIZERS[name])
    opt = DASHWrapper(sf, model=model, loss_fn=torch.nn.CrossEntropyLoss(), state=policy, lambd=0.1)
    opt.train()  # schedule-free optimizers step in train mode (forwarded to the inner optimizer)
    data = batches()
    train(model, opt, data, steps=4)
    set_lr(opt, 0.0)
    report, at_shrink = None, None
    if shrink:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every state key is known
            report = opt.on_new_data(data)
        at_shrink = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, opt, data, steps=3)
    opt.eval()  # the averaged weights x, derived from y and z
    return model, report, at_shrink


@pytest.mark.parametrize("policy", ["keep", "scale", "reset"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_schedule_free_sequences_keep_the_shrink(name, policy):
    model, report, at_shrink = _run(name, policy, shrink=True)
    unshrunk, _, _ = _run(name, policy, shrink=False)
    assert report.unknown_state == {} and report.mean_factor < 0.9
    if policy == "reset":
        # The optimizer restarts its sequences at the shrunk weights: y = z = x there, and at lr 0
        # nothing moves, so the averaged weights are the shrunk ones.
        for n, p in model.named_parameters():
            torch.testing.assert_close(p, at_shrink[n], rtol=1e-6, atol=1e-7)
    else:
        assert_shrink_kept(model, unshrunk, report.factors, policy, at_shrink)
