"""guard_others: during DASH's pass, other optimizers and schedulers refuse to step before they
change anything, and the other parameters' gradients come back as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim import DASHWrapper
from torch_dash_optim.integrations._guard import PassSteppedError, guard_others


def _setup():
    torch.manual_seed(0)
    model = nn.ModuleDict({"gen": nn.Linear(4, 4), "disc": nn.Linear(4, 1)})
    dash = DASHWrapper(torch.optim.SGD(model["gen"].parameters(), lr=0.1), model=model["gen"])
    other = torch.optim.Adam(model["disc"].parameters(), lr=0.1)
    model["disc"](torch.randn(2, 4)).sum().backward()
    other.step()  # the other optimizer has state and its parameters have gradients
    schedule = torch.optim.lr_scheduler.StepLR(other, step_size=1, gamma=0.5)
    batches = [torch.randn(8, 4) for _ in range(2)]
    return model, dash, other, schedule, batches


def _state(model, other, schedule):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [p.grad.clone() for p in model["disc"].parameters()],
            repr(other.state_dict()), schedule.state_dict(), other.param_groups[0]["lr"])


def _same(a, b):
    weights_a, grads_a, *rest_a = a
    weights_b, grads_b, *rest_b = b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b)) and rest_a == rest_b


@pytest.mark.parametrize("steps", ["optimizer", "scheduler"])
def test_a_pass_loss_that_steps_is_refused_before_the_step(steps):
    model, dash, other, schedule, batches = _setup()
    before = _state(model, other, schedule)

    def batch_loss(gen, x):
        loss = model["disc"](gen(x)).pow(2).mean()
        other.zero_grad()
        loss.backward(retain_graph=True)  # into the other parameters too
        (other if steps == "optimizer" else schedule).step()
        return loss

    what = r"optimizer 1 \(Adam\)" if steps == "optimizer" else r"learning-rate scheduler 0 \(StepLR\)"
    with pytest.raises(PassSteppedError, match=f"tried to step {what}, before it changed anything"):
        with guard_others(dash, [dash, other], [schedule], model, who="test"):
            dash.on_new_data(batches, batch_loss=batch_loss)
    _same(_state(model, other, schedule), before)
    other.step()  # the guard is gone
    schedule.step()


def test_a_pass_without_steps_leaves_the_other_parameters_as_they_were():
    model, dash, other, schedule, batches = _setup()
    before = _state(model, other, schedule)
    with guard_others(dash, [dash, other], [schedule], model, who="test"):
        report = dash.on_new_data(batches, batch_loss=lambda gen, x: model["disc"](gen(x)).pow(2).mean())
    assert report.call == 1
    after = _state(model, other, schedule)
    assert all(torch.equal(after[0][k], before[0][k]) for k in before[0] if k.startswith("disc."))
    assert all(torch.equal(x, y) for x, y in zip(after[1], before[1])) and after[2:] == before[2:]
