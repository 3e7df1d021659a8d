"""The public names: importable from ``torch_dash_optim.experiments.text``, each defined by its role's module."""

from __future__ import annotations

from torch_dash_optim.experiments import text

#: Where each public name lives: the module whose role it is.
HOMES = {
    "settings": ["LABELS", "METHODS", "QUICK", "TextConfig"],
    "corpus": ["Corpus", "Split", "draw_split", "read_corpus", "stdlib_dir", "windows"],
    "model": ["CausalLM", "heldout_loss", "next_token_loss"],
    "protocol": ["RECORD_FIELDS", "run_seed_method", "run_text"],
    "compare": ["LastStage", "compare_last"],
    "tables": ["stage_table", "summary_markdown"],
    "figure": ["figure_title", "plot_text"],
    "cli": ["SMOKE_NOTE", "build_parser", "main"],
}


def test_every_public_name_is_exported_by_the_package_and_its_module() -> None:
    assert sorted(text.__all__) == sorted(n for names in HOMES.values() for n in names)
    for module, names in HOMES.items():
        sub = getattr(text, module)
        assert sorted(sub.__all__) == sorted(names), module
        for name in names:
            obj = getattr(sub, name)
            assert getattr(text, name) is obj, name
            if callable(obj):  # a class or function, defined there (not imported from elsewhere)
                assert obj.__module__ == sub.__name__, (name, obj.__module__)
