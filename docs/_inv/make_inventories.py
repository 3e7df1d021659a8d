"""Write the small offline intersphinx inventories in this folder.

The docs build must pass without a network (CI has none), so ``conf.py`` reads the Python,
PyTorch and NumPy inventories from here instead of downloading them (on Read the Docs the full
upstream ones are fetched first; see ``conf.py``). Each file lists only the objects that these
docs link to, with the object's address on that project's real site, in the format Sphinx
writes (``objects.inv`` version 2).

Run ``python docs/_inv/make_inventories.py`` after adding an entry below. To see which links
are missing, build with ``-n`` (nitpicky): every ``py:class reference target not found`` for a
Python, PyTorch or NumPy object belongs in this table.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

# project -> (title, version, [(name, domain:role, uri relative to the site root)])
# "$" in a uri stands for the name (expanded when the file is written).
_EXC = "library/exceptions.html#$"
_ABC = "library/collections.abc.html#$"
_TORCH_GEN = "generated/$.html#$"
_DCP = "distributed.checkpoint.html#$"

INVENTORIES: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "python": (
        "Python",
        "3",
        [
            ("ArithmeticError", "py:exception", _EXC),
            ("FloatingPointError", "py:exception", _EXC),
            ("KeyboardInterrupt", "py:exception", _EXC),
            ("RuntimeError", "py:exception", _EXC),
            ("TypeError", "py:exception", _EXC),
            ("ValueError", "py:exception", _EXC),
            ("Exception", "py:exception", _EXC),
            ("io.IOBase", "py:class", "library/io.html#$"),
            ("bool", "py:class", "library/functions.html#$"),
            ("float", "py:class", "library/functions.html#$"),
            ("int", "py:class", "library/functions.html#$"),
            ("str", "py:class", "library/stdtypes.html#$"),
            ("dict", "py:class", "library/stdtypes.html#$"),
            ("list", "py:class", "library/stdtypes.html#$"),
            ("tuple", "py:class", "library/stdtypes.html#$"),
            ("frozenset", "py:class", "library/stdtypes.html#$"),
            ("type", "py:class", "library/functions.html#$"),
            ("object", "py:class", "library/functions.html#$"),
            ("None", "py:data", "library/constants.html#$"),
            ("typing.Any", "py:data", "library/typing.html#$"),
            ("collections.abc.Callable", "py:class", _ABC),
            ("collections.abc.Iterable", "py:class", _ABC),
            ("collections.abc.Iterator", "py:class", _ABC),
            ("collections.abc.Mapping", "py:class", _ABC),
            ("collections.abc.Sequence", "py:class", _ABC),
            ("collections.abc.MutableMapping", "py:class", _ABC),
            ("collections.abc.Collection", "py:class", _ABC),
            ("functools.partial", "py:function", "library/functools.html#$"),
            ("collections.defaultdict", "py:class", "library/collections.html#$"),
            ("pathlib.Path", "py:class", "library/pathlib.html#$"),
            ("types.ModuleType", "py:class", "library/types.html#$"),
            ("argparse.ArgumentParser", "py:class", "library/argparse.html#$"),
            ("argparse.Namespace", "py:class", "library/argparse.html#$"),
            ("dataclasses.dataclass", "py:function", "library/dataclasses.html#$"),
            ("dataclasses.replace", "py:function", "library/dataclasses.html#$"),
            ("dataclasses", "py:module", "library/dataclasses.html#module-$"),
            ("doctest", "py:module", "library/doctest.html#module-$"),
        ],
    ),
    "torch": (
        "PyTorch",
        "stable",
        [
            ("torch", "py:module", "torch.html#module-$"),
            ("torch.nn.utils.parametrize", "py:module", "nn.html#module-$"),
            ("torch.Tensor", "py:class", "tensors.html#$"),
            ("torch.dtype", "py:class", "tensor_attributes.html#$"),
            ("torch.device", "py:class", "tensor_attributes.html#$"),
            ("torch.bfloat16", "py:attribute", "tensor_attributes.html#torch.dtype"),
            ("torch.float16", "py:attribute", "tensor_attributes.html#torch.dtype"),
            ("torch.Generator", "py:class", _TORCH_GEN),
            ("torch._C.Generator", "py:class", "generated/torch.Generator.html#torch.Generator"),
            ("torch.autocast", "py:class", "amp.html#$"),
            ("torch.inference_mode", "py:class", _TORCH_GEN),
            ("torch.amp.GradScaler", "py:class", "amp.html#$"),
            ("torch.amp.grad_scaler.GradScaler", "py:class", "amp.html#torch.amp.GradScaler"),
            ("torch.distributed.tensor.DTensor", "py:class", "distributed.tensor.html#$"),
            ("torch.compile", "py:function", _TORCH_GEN),
            ("torch.manual_seed", "py:function", _TORCH_GEN),
            ("torch.no_grad", "py:class", _TORCH_GEN),
            ("torch.nn.Module", "py:class", _TORCH_GEN),
            ("torch.nn.modules.module.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
            ("torch.nn.Linear", "py:class", _TORCH_GEN),
            ("torch.nn.Conv1d", "py:class", _TORCH_GEN),
            ("torch.nn.Conv2d", "py:class", _TORCH_GEN),
            ("torch.nn.Conv3d", "py:class", _TORCH_GEN),
            ("torch.nn.BatchNorm2d", "py:class", _TORCH_GEN),
            ("torch.nn.LayerNorm", "py:class", _TORCH_GEN),
            ("torch.nn.CrossEntropyLoss", "py:class", _TORCH_GEN),
            ("torch.nn.parameter.Parameter", "py:class", _TORCH_GEN),
            ("torch.nn.Parameter", "py:class", _TORCH_GEN.replace("$", "torch.nn.parameter.Parameter")),
            ("torch.nn.functional.cosine_similarity", "py:function", _TORCH_GEN),
            ("torch.nn.functional.cross_entropy", "py:function", _TORCH_GEN),
            ("torch.nn.parallel.DistributedDataParallel", "py:class", _TORCH_GEN),
            ("torch.distributed.fsdp.fully_shard", "py:function", "distributed.fsdp.fully_shard.html#$"),
            ("torch.distributed.init_process_group", "py:function", "distributed.html#$"),
            ("torch.distributed.all_reduce", "py:function", "distributed.html#$"),
            ("torch.distributed.checkpoint.save", "py:function", "distributed.checkpoint.html#$"),
            ("torch.distributed.checkpoint.load", "py:function", "distributed.checkpoint.html#$"),
            ("torch.distributed.checkpoint.state_dict.get_optimizer_state_dict", "py:function", _DCP),
            ("torch.distributed.checkpoint.state_dict.set_optimizer_state_dict", "py:function", _DCP),
            ("torch.optim", "py:module", "optim.html#module-$"),
            ("torch.profiler", "py:module", "profiler.html#module-$"),
            ("torch.optim.Optimizer", "py:class", "optim.html#$"),
            ("torch.optim.optimizer.Optimizer", "py:class", "optim.html#torch.optim.Optimizer"),
            ("torch.optim.SGD", "py:class", _TORCH_GEN),
            ("torch.optim.Adam", "py:class", _TORCH_GEN),
            ("torch.optim.AdamW", "py:class", _TORCH_GEN),
            ("torch.optim.ASGD", "py:class", _TORCH_GEN),
            ("torch.optim.LBFGS", "py:class", _TORCH_GEN),
            ("torch.optim.Adafactor", "py:class", _TORCH_GEN),
            ("torch.optim.swa_utils.AveragedModel", "py:class", _TORCH_GEN),
            ("torch.optim.optimizer.register_optimizer_step_pre_hook", "py:function", "optim.html#$"),
            ("torch.utils.data.DataLoader", "py:class", "data.html#$"),
            ("torch.utils.data.dataloader.DataLoader", "py:class", "data.html#torch.utils.data.DataLoader"),
            ("torch.utils.data.Dataset", "py:class", "data.html#$"),
            ("torch.utils.data.dataset.Dataset", "py:class", "data.html#torch.utils.data.Dataset"),
            ("torch.utils.data.Subset", "py:class", "data.html#$"),
            ("torch.utils.data.dataset.Subset", "py:class", "data.html#torch.utils.data.Subset"),
            ("torch.utils.data.TensorDataset", "py:class", "data.html#$"),
            ("torch.utils.data.ConcatDataset", "py:class", "data.html#$"),
        ],
    ),
    "numpy": (
        "NumPy",
        "stable",
        [
            ("numpy", "py:module", "reference/index.html#module-$"),
            ("numpy.ndarray", "py:class", "reference/generated/$.html#$"),
        ],
    ),
}


def write(name: str, title: str, version: str, entries: list[tuple[str, str, str]]) -> Path:
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {title}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = [f"{obj} {role} 1 {uri.replace('$', obj)} -\n" for obj, role, uri in sorted(entries)]
    path = HERE / f"{name}.inv"
    path.write_bytes(header.encode() + zlib.compress("".join(lines).encode(), 9))
    return path


def main() -> None:
    for name, (title, version, entries) in INVENTORIES.items():
        print(f"{write(name, title, version, entries)}: {len(entries)} objects")


if __name__ == "__main__":
    main()
