"""Every torch.optim.lr_scheduler class drives the wrapper exactly as it drives the bare optimizer."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as S

from torch_dash_optim import SAM, DASHWrapper


def _factories():
    return {
        "LambdaLR": lambda o: S.LambdaLR(o, lambda e: 0.9**e),
        "MultiplicativeLR": lambda o: S.MultiplicativeLR(o, lambda e: 0.95),
        "StepLR": lambda o: S.StepLR(o, step_size=2, gamma=0.5),
        "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[2, 4], gamma=0.5),
        "ConstantLR": lambda o: S.ConstantLR(o, factor=0.5, total_iters=3),
        "LinearLR": lambda o: S.LinearLR(o, start_factor=0.2, total_iters=4),
        "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.9),
        "SequentialLR": lambda o: S.SequentialLR(
            o, [S.ConstantLR(o, factor=0.5, total_iters=2), S.ExponentialLR(o, gamma=0.9)], milestones=[2]
        ),
        "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=5),
        "ChainedScheduler": lambda o: S.ChainedScheduler(
            [S.ConstantLR(o, factor=0.5, total_iters=2), S.ExponentialLR(o, gamma=0.9)]
        ),
        "ReduceLROnPlateau": lambda o: S.ReduceLROnPlateau(o, patience=0, factor=0.5),
        "CyclicLR": lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=2),
        "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3),
        "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=20),
        "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=5, power=2.0),
    }


def test_every_scheduler_class_is_covered():
    classes = {
        name
        for name, obj in vars(S).items()
        if inspect.isclass(obj) and issubclass(obj, (S.LRScheduler, S.ReduceLROnPlateau))
        and not name.startswith("_") and obj not in (S.LRScheduler, S._LRScheduler)
    }
    assert classes <= set(_factories()), classes - set(_factories())


def _setup(name: str, wrap: bool, base: str = "sgd"):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    if base == "sam":
        opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if wrap:
        opt = DASHWrapper(opt, model=model, loss_fn=nn.CrossEntropyLoss())
    return model, opt, _factories()[name](opt)


def _run(model, opt, sched, steps: int, start: int = 0) -> list[float]:
    lrs = []
    g = torch.Generator().manual_seed(start)
    for _ in range(steps):
        x, y = torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g)

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        if isinstance(sched, S.ReduceLROnPlateau):
            sched.step(1.0)  # a plateau: the lr must drop
        else:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def _pipeline(name: str, wrap: bool, base: str):
    """Train 5 steps, checkpoint, resume in fresh objects (scheduler first, then the optimizer
    state), and train 4 more steps on both the original and the resumed copy."""
    model, opt, sched = _setup(name, wrap, base)
    lrs = _run(model, opt, sched, 5)
    model_r, opt_r, sched_r = _setup(name, wrap, base)
    model_r.load_state_dict(model.state_dict())
    sched_r.load_state_dict(sched.state_dict())
    opt_r.load_state_dict(opt.state_dict())
    lrs_cont = _run(model, opt, sched, 4, start=5)
    lrs_res = _run(model_r, opt_r, sched_r, 4, start=5)
    # The base optimizer really uses the scheduled lr (no stale group alias after loading).
    inner = getattr(opt_r, "optimizer", opt_r)
    assert inner.param_groups[0]["lr"] == lrs_res[-1]
    return lrs, lrs_cont, lrs_res, [p.detach().clone() for p in (*model.parameters(), *model_r.parameters())]


@pytest.mark.parametrize("name", sorted(_factories()))
@pytest.mark.parametrize("base", ["sgd", "sam"])
def test_scheduler_on_wrapper_matches_bare_before_and_after_load(name, base):
    bare = _pipeline(name, wrap=False, base=base)
    wrapped = _pipeline(name, wrap=True, base=base)
    lrs, lrs_cont, lrs_res, weights = wrapped
    assert len(set(lrs)) > 1, "the schedule must actually change the lr"
    assert lrs_cont == lrs_res
    assert bare[:3] == wrapped[:3]
    for p, q in zip(bare[3], weights):
        assert torch.equal(p, q)


def test_on_new_data_between_scheduler_steps_keeps_the_schedule():
    model, opt, sched = _setup("OneCycleLR", wrap=True)
    _run(model, opt, sched, 3)
    lr = opt.param_groups[0]["lr"]
    opt.on_new_data([(torch.randn(6, 4), torch.randint(0, 3, (6,)))])
    assert opt.param_groups[0]["lr"] == lr
    _run(model, opt, sched, 3, start=3)  # no "step before optimizer.step" warning path breaks
