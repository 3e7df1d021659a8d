"""Benchmarks of torch-dash-optim (not part of the test suite).

Run ``python -m benchmarks`` from the repository root (``--quick`` for a smoke run, ``--help``
for the options). Every figure is a ratio of two or more implementations timed side by side
in one process, in interleaved order, as the median of several repeats after a warm-up, so
that it holds on a noisy shared machine.

Modules, one role each:

- :mod:`benchmarks.config`: the sizes of a full and a quick run.
- :mod:`benchmarks.models`: the benchmark models (MLP, CIFAR ResNet-18, small transformer) and
  their synthetic loaders.
- :mod:`benchmarks.naive`: the authors' naive gathering and shrink, re-implemented as the anchor.
- :mod:`benchmarks.timing`: interleaved, synchronised timing with medians and paired ratios.
- :mod:`benchmarks.memory`: peak memory (torch's CPU allocator via ``torch.profiler``, process
  RSS in a fresh subprocess, ``torch.cuda.max_memory_allocated`` on GPU).
- :mod:`benchmarks.bench_gather`: ``on_new_data`` against the floor pass and the naive anchor.
- :mod:`benchmarks.bench_shrink`: shrink-only time, grouped/foreach against a per-tensor loop.
- :mod:`benchmarks.bench_step`: wrapper ``step()`` overhead.
- :mod:`benchmarks.bench_scaling`: ``on_new_data`` time against data size and parameter count.
- :mod:`benchmarks.bench_gpu`: zero host-device synchronisations in the gathering loop (CUDA).
- :mod:`benchmarks.bench_diagnostics`: the plasticity diagnostics pass against a plain forward pass
  (its own command: ``python -m benchmarks.bench_diagnostics --out results/benchmarks-cpu-diagnostics``).
- :mod:`benchmarks.bench_import`: what ``import torch_dash_optim`` costs beyond torch (its own command:
  ``python -m benchmarks.bench_import --label L --out results/benchmarks-import``).
- :mod:`benchmarks.results`: result records, goals, JSON and markdown output.
- :mod:`benchmarks.runner`: runs the sections in order.
"""
