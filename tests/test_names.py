"""Parameter names without the levels of wrapper modules (DDP, DataParallel, AveragedModel, ...)."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel

from torch_dash_optim.names import qualified_modules, qualified_names
from torch_dash_optim.selection import select


def _groups(*params_or_groups):
    return [g if isinstance(g, dict) else {"params": list(g)} for g in params_or_groups]


def test_names_drop_the_levels_of_wrapper_modules_by_their_type():
    inner = nn.Sequential(nn.Linear(2, 2))
    for wrapped in (nn.DataParallel(inner), AveragedModel(inner)):
        sel = select(_groups(wrapped.parameters()), wrapped, lambd=0.3, granularity="kernel")
        assert [t.name for t in sel.targets] == ["0.weight", "0.bias"], type(wrapped).__name__


def test_a_child_named_module_keeps_its_name_and_distinct_parameters_get_distinct_names():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

    class Model(nn.Module):  # the audit's example: an encoder in `module` beside a head `fc`
        def __init__(self):
            super().__init__()
            self.module = Encoder()
            self.fc = nn.Linear(3, 2)

    model = Model()
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="kernel")
    assert [t.name for t in sel.targets] == ["module.fc.weight", "module.fc.bias", "fc.weight", "fc.bias"]
    # and so through the wrappers of that model
    sel = select(_groups(model.parameters()), nn.DataParallel(model), lambd=0.3, granularity="kernel")
    assert [t.name for t in sel.targets] == ["module.fc.weight", "module.fc.bias", "fc.weight", "fc.bias"]


def test_qualified_names_strip_wrappers_at_any_depth_and_keep_buffers_on_request():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    outer = nn.Sequential(nn.DataParallel(net))
    assert list(qualified_names(outer)) == ["0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias"]
    assert list(qualified_names(AveragedModel(outer), buffers=True))[4:] == [
        "n_averaged", "0.1.running_mean", "0.1.running_var", "0.1.num_batches_tracked"
    ]  # parameters, then buffers, each in the order of named_parameters() / named_buffers()


def test_qualified_modules_name_the_wrapped_module_not_its_wrapper():
    net = nn.Sequential(nn.Linear(2, 2))
    found = qualified_modules(nn.Sequential(nn.DataParallel(net)))
    assert list(found) == ["", "0", "0.0"]
    assert found["0"] is net and found["0.0"] is net[0]  # the DataParallel shares the name of its module
    assert list(qualified_modules(AveragedModel(nn.DataParallel(net)))) == ["", "0"]  # wrappers nested
