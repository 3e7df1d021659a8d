"""DASHWrapper's defaults reproduce the authors' `dash` (utils/train_utils.py) to float32 rounding.

The reference below is written independently in the authors' style: a deep copy of the model,
a fresh EMA tensor per Conv/Linear weight and bias, and a per-module cosine on the unit view.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _models import SmallCNN, assert_same, make_data, snapshot, train_steps
from torch import nn

from torch_dash_optim import SAM, DASHWrapper


def authors_dash(model: nn.Module, loader, criterion, alpha: float, lambd: float) -> None:
    temp = copy.deepcopy(model)
    mods = [m for m in temp.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    g_w = [torch.zeros_like(m.weight) for m in mods]
    g_b = [torch.zeros_like(m.bias) if m.bias is not None else None for m in mods]
    for x, y in loader:
        temp.zero_grad()
        criterion(temp(x), y).backward()
        for k, m in enumerate(mods):
            g_w[k] = (1 - alpha) * g_w[k] + alpha * (-m.weight.grad.detach())
            if m.bias is not None:
                g_b[k] = (1 - alpha) * g_b[k] + alpha * (-m.bias.grad.detach())
    with torch.no_grad():
        targets = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for k, m in enumerate(targets):
            if isinstance(m, nn.Conv2d):
                o, i = m.weight.shape[:2]
                w = m.weight.view(o, i, -1)
                cos = torch.cosine_similarity(g_w[k].reshape(o, i, -1), w, dim=-1)
                w.mul_(torch.clamp(cos, min=lambd, max=1)[:, :, None])
            else:
                cos = torch.cosine_similarity(g_w[k], m.weight, dim=-1)
                m.weight.mul_(torch.clamp(cos, min=lambd, max=1)[:, None])
            if m.bias is not None:
                cos_b = torch.cosine_similarity(g_b[k].reshape(1, -1), m.bias.reshape(1, -1))
                m.bias.mul_(torch.clamp(cos_b, min=lambd, max=1))


def _make_opt(kind: str, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    return SAM(params, torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)


CASES = [(0.3, 0.3), (0.0, 0.1), (0.7, 1.0), (0.5, 0.6)]


@pytest.mark.parametrize("kind", ["sgd", "adam", "sam"])
@pytest.mark.parametrize(("lambd", "alpha"), CASES)
def test_defaults_match_the_authors_dash(kind, lambd, alpha):
    model = SmallCNN()
    data = make_data(n_batches=4)
    opt = DASHWrapper(_make_opt(kind, model.parameters()), model=model, loss_fn=nn.CrossEntropyLoss(),
                      lambd=lambd, alpha=alpha)
    train_steps(model, opt, data, steps=3)

    ref = copy.deepcopy(model).eval()  # the authors' model is in eval mode at this point
    authors_dash(ref, data, nn.CrossEntropyLoss(), alpha, lambd)
    before = snapshot(model, opt)

    report = opt.on_new_data(data)

    changed = 0
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
        changed += not torch.equal(p, before["params"][name])
    assert changed > 0 or lambd == 1.0
    # Everything else is untouched: grads, buffers, modes and (state="keep") optimizer state.
    after = snapshot(model, opt)
    assert_same(before, after, weights=False)
    assert report.num_batches == 4 and report.call == 1
    assert {p.name for p in report.params} == {"conv1.weight", "conv1.bias", "conv2.weight", "fc1.weight",
                                                "fc1.bias", "fc2.weight"}


def test_train_mode_matches_the_reference_in_train_mode():
    model = SmallCNN()
    model.drop.p = 0.0  # dropout would draw different masks in the two runs
    data = make_data()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model,
                      loss_fn=nn.CrossEntropyLoss(), mode="train")
    train_steps(model, opt, data)
    model.eval()
    ref = copy.deepcopy(model).train()
    authors_dash(ref, data, nn.CrossEntropyLoss(), 0.3, 0.3)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    opt.on_new_data(data)
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    for k, v in model.named_buffers():  # BN running stats and num_batches_tracked unchanged
        assert torch.equal(v, buffers[k]), k
    assert not model.training and not model.bn.training


def test_gathering_in_eval_mode_differs_from_train_mode():
    """The mode matters (BatchNorm statistics), so the default is a real choice."""
    torch.manual_seed(1)
    data = make_data()
    model = SmallCNN()
    model.drop.p = 0.0
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    for m, mode in ((a, "eval"), (b, "train")):
        DASHWrapper(torch.optim.SGD(m.parameters(), lr=0.1), model=m, loss_fn=nn.CrossEntropyLoss(),
                    mode=mode).on_new_data(data)
    assert not torch.allclose(a.conv2.weight, b.conv2.weight)
