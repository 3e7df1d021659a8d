"""The README's Quick start is what CI runs, and a missing optional extra crashes nothing.

* The Quick start block holds exactly two commands; ``.ci/run`` runs the second as written
  (read from the README, not copied) and installs nothing of its own.
* The ``dev`` extra that the second command installs brings every integration.
* With the extras' packages made unimportable (``tests/_without.py``), the package and every
  module but the integrations import (the experiments import their extra's packages lazily); an
  integration module raises an ImportError that names its extra; pytest skips the integration
  tests, naming the missing package, and ``DASH_REQUIRE_INTEGRATIONS=1`` makes the skips failures.
"""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _load import load_module
from _without import EXTRA_PACKAGES, INTEGRATION_PACKAGES, env_without

import torch_dash_optim

ROOT = Path(__file__).resolve().parents[2]


def _readme_command_module():
    return load_module(ROOT / "scripts" / "readme_command.py", "_readme_command")


def _quickstart_block() -> list[str]:
    """The Quick start's bash block, parsed here independently of scripts/readme_command.py."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_the_quick_start_is_two_commands_and_ci_runs_the_second_as_written() -> None:
    commands = _quickstart_block()
    assert len(commands) == 2, commands
    experiment, test = commands
    assert "dash-warmstart" in experiment
    assert "pytest" in test and '".[dev]"' in test
    printed = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True, check=True)
    assert printed.stdout.strip() == test
    assert _readme_command_module().quickstart_commands((ROOT / "README.md").read_text()) == commands


def test_the_command_reader_refuses_a_block_that_is_not_two_commands() -> None:
    reader = _readme_command_module()
    readme = "# x\n\n## Quick start\n\n```bash\n{}\n```\n\n## Next\n"
    assert reader.quickstart_commands(readme.format("a\n# note\nb")) == ["a", "b"]
    for body in ("a", "a\nb\nc"):
        with pytest.raises(ValueError, match="exactly 2 commands"):
            reader.quickstart_commands(readme.format(body))
    with pytest.raises(ValueError, match="no '## Quick start'"):
        reader.quickstart_commands("# x\n")


def test_ci_installs_nothing_before_the_readme_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0] for line in script.splitlines()]
    code = "\n".join(lines)
    assert "readme_command.py test" in code
    assert not re.search(r"\bpip3?\b", code), "`.ci/run` installs packages; the README's command must install them"
    venv, run = code.index("python3 -m venv"), code.index('bash -c "$command"')
    between = [line.strip() for line in code[venv:run].splitlines()[1:] if line.strip()]
    assert between == [". .venv/bin/activate", 'echo "+ $command"', "DASH_REQUIRE_INTEGRATIONS=1"], between


def test_the_dev_extra_brings_every_integration() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]

    def closure(name: str) -> set[str]:
        out = {name}
        for req in extras[name]:
            match = re.fullmatch(r"torch-dash-optim\[([\w,-]+)\]", req)
            for sub in match.group(1).split(",") if match else ():
                out |= closure(sub)
        return out

    assert {"test", "docs", "vision", "integrations", "lightning", "hf", "timm", "schedulefree"} <= closure("dev")


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_without_the_extras_every_module_imports_but_the_integrations_which_name_their_extra(tmp_path: Path) -> None:
    env = env_without(tmp_path, EXTRA_PACKAGES)
    names = [info.name for info in pkgutil.walk_packages(torch_dash_optim.__path__, "torch_dash_optim.")
             if not info.name.endswith(".conftest")]  # fmt: skip
    code = f"""
import importlib, json
out = {{}}
for name in {names!r}:
    try:
        importlib.import_module(name)
        out[name] = None
    except ImportError as err:
        out[name] = str(err)
print(json.dumps(out))
"""
    proc = _run(code, env)
    assert proc.returncode == 0, proc.stderr

    errors = {name: err for name, err in json.loads(proc.stdout.strip().splitlines()[-1]).items() if err}
    extras = {f"torch_dash_optim.integrations.{name}": extra for name, extra in [("lightning", "lightning"),
                                                                                  ("transformers", "hf")]}
    assert set(errors) == set(extras), errors  # every other module imports without the extras (lazily)
    for name, extra in extras.items():
        assert f'from the "{extra}" extra: pip install -e ".[{extra}]"' in errors[name], errors[name]


@pytest.mark.parametrize("required", [False, True], ids=["optional", "required"])
def test_integration_tests_skip_naming_the_package_unless_required(tmp_path: Path, required: bool) -> None:
    env = env_without(tmp_path, INTEGRATION_PACKAGES)
    env.setdefault("OMP_NUM_THREADS", "1")
    if required:
        env["DASH_REQUIRE_INTEGRATIONS"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
           "tests/integrations", "torch_dash_optim/integrations"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    if required:
        assert proc.returncode != 0, out
        assert "No module named" in out
        return
    assert proc.returncode == 0, out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    for package in ("lightning", "transformers", "timm", "schedulefree"):
        assert any(package in line for line in skipped), f"no skip names {package}:\n{out}"
    for module in ("lightning", "transformers"):  # the doctest modules too
        needs = f"torch_dash_optim.integrations.{module} needs"
        assert any(needs in line and "extra" in line for line in skipped), f"{module}.py not skipped:\n{out}"
