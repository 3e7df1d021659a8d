"""DASH in Avalanche: a plugin that shrinks before training on each grown experience.

Needs ``avalanche-lib`` (``pip install avalanche-lib==0.6.0``, about 40 packages on top of the
``dev`` extras). Run: ``python examples/integrations/avalanche_plugin.py``. The test suite runs
this script where avalanche-lib is installed (``tests/integrations/test_avalanche.py``); CI does
not install it, so there the recipe is not run.

The benchmark splits one data set into four experiences of new instances of the same classes
(stationary data arriving in chunks: DASH's setting), and the ``Cumulative`` strategy trains on
all the data seen so far at each experience. The plugin calls DASH after the strategy has
built that data set (the old experiences first, the new one last) and before it trains on it.
"""

import torch
from avalanche.benchmarks import ni_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.training import Cumulative
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper, on_new_data


class DASHPlugin(SupervisedPlugin):
    """Call DASH on every experience but the first, over the strategy's adapted data set."""

    def __init__(self) -> None:
        super().__init__()
        self.reports = []

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        if strategy.clock.train_exp_counter > 0:
            data = strategy.adapted_dataset  # Cumulative: all experiences so far, the new one last
            loader = DataLoader(data, batch_size=strategy.train_mb_size, shuffle=False, collate_fn=data.collate_fn)
            report = on_new_data(
                strategy.optimizer,
                loader,
                batch_loss=lambda model, batch: strategy._criterion(model(batch[0]), batch[1]),
            )
            self.reports.append(report)


def labelled(x: torch.Tensor, y: torch.Tensor) -> TensorDataset:
    """A tensor data set with the ``targets`` Avalanche reads its classes from."""
    data = TensorDataset(x, y)
    data.targets = y.tolist()
    return data


torch.manual_seed(0)
x = torch.randn(480, 8)
y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # three classes
benchmark = ni_benchmark(labelled(x[:400], y[:400]), labelled(x[400:], y[400:]), n_experiences=4, seed=0)

model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
optimizer = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), model=model)
plugin = DASHPlugin()
strategy = Cumulative(
    model=model,
    optimizer=optimizer,
    criterion=nn.CrossEntropyLoss(),
    train_mb_size=20,
    train_epochs=2,
    plugins=[plugin],
    evaluator=EvaluationPlugin(loggers=[]),
)
for experience in benchmark.train_stream:
    strategy.train(experience)

for report in plugin.reports:  # experiences 2, 3 and 4: 200, 300 and 400 examples
    print(f"call {report.call}: {report.num_batches} batches, mean factor {report.mean_factor:.3f}")
assert [r.num_batches for r in plugin.reports] == [10, 15, 20] and optimizer.num_dash_calls == 3
