"""The renderers of the published numbers: README.md and docs/ quote results only through them.

Repository tooling, not part of the installed package. Each generated block of README.md and
``docs/**/*.rst`` names one renderer on its marker line (see ``scripts/published.py``), e.g.
``<!-- generated: scripts.render.experiments:table md experiments-mnist1d-cnn1d -->``, and the
renderer reads the committed folders under ``results/``; it never runs an experiment.

- :mod:`scripts.render.format`: the results folders, their loading, and the formatting every
  renderer shares;
- :mod:`scripts.render.experiments`: the ``dash-warmstart`` results (tables, verdicts and how
  firm they are, DASH against its direction controls, costs, provenance, builds);
- :mod:`scripts.render.exploration`: the exploration runs that chose the default, and the
  warm-start gap;
- :mod:`scripts.render.mechanism`: the mechanism measurement and the noise sweep;
- :mod:`scripts.render.tuning`: the tuning run (every method tuned on one budget);
- :mod:`scripts.render.figures`: ``python -m scripts.render.figures`` redraws the figures in
  ``docs/_static/``;
- :mod:`scripts.render.text`: the text run (a transformer on the standard library's source);
  ``python -m scripts.render.text`` redraws ``docs/_static/text-results.png``.

The benchmark figures are rendered by ``benchmarks/publish.py``, beside the benchmarks.
"""
