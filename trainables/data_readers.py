"""Reading each data source into the same mapping of numpy arrays; `data_sources` checks and splits them.

npz          a .npz file (or a directory of them), read without unpickling, its declared sizes capped
entry_point  `package.module:function(**args)` returning the mapping (it runs the user's code)
torchvision  a classification dataset by name from `data.root`, in torchvision's layout
fashion_mnist  the four IDX files: `data.root`, Debian's dataset-fashion-mnist, torchvision's layout
"""

from __future__ import annotations

import gzip
import importlib
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data import MAX_DATASET_BYTES, DataError

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# torchvision classification datasets read from their own layout: name -> (split argument kind).
TORCHVISION = {
    "MNIST": "train",
    "FashionMNIST": "train",
    "KMNIST": "train",
    "QMNIST": "train",
    "CIFAR10": "train",
    "CIFAR100": "train",
    "SVHN": "split",
    "USPS": "train",
}


def read_npz(path: Path) -> tuple[dict[str, Any], str]:
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"data.path: {path} is not a .npz file or a directory holding .npz files")
    merged: dict[str, list[np.ndarray]] = {}
    classes = None
    total = 0
    for file in files:
        try:
            with open(file, "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise DataError(f"data.path: {file} is unreadable ({_first_line(exc)})") from None
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # np.load would take a .npy, or try to unpickle
            raise DataError(f"data.path: {file} is not a .npz archive (a zip of .npy arrays, as numpy.savez writes)")
        try:
            with np.load(file, allow_pickle=False) as archive:  # never unpickle: a .npz may come from anywhere
                for key in archive.files:
                    if key != "classes" and key not in IDX_NAMES:
                        continue
                    total += _declared_bytes(archive, key)  # before reading: a header may claim terabytes
                    if total > MAX_DATASET_BYTES:
                        raise DataError(
                            f"data.path: {file}'s {key} makes the arrays larger than the "
                            f"{MAX_DATASET_BYTES >> 30} GiB a trial keeps resident on its device"
                        )
                    if key == "classes":
                        classes = archive[key]
                    else:
                        merged.setdefault(key, []).append(archive[key])
        except (
            OSError,
            ValueError,
            EOFError,
            zipfile.BadZipFile,
            zlib.error,
            NotImplementedError,
            RuntimeError,
        ) as exc:  # what numpy and zipfile raise for damaged, foreign or encrypted files
            if isinstance(exc, DataError):
                raise
            raise DataError(f"data.path: {file} is not a readable .npz ({_first_line(exc)})") from None
    arrays: dict[str, Any] = {}
    for key, parts in merged.items():
        try:
            arrays[key] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        except ValueError as exc:
            raise DataError(f"data.path: the files' {key} arrays do not fit together ({_first_line(exc)})") from None
    if classes is not None:
        arrays["classes"] = classes
    return arrays, f"data.path {path}"


def _declared_bytes(archive: Any, key: str) -> int:
    """The bytes an archive member will take once read, from its .npy header or its zip entry."""
    name = f"{key}.npy"
    if name not in archive.zip.namelist():  # stored raw: numpy reads it as bytes
        return int(archive.zip.getinfo(key).file_size)
    with archive.zip.open(name) as member:
        version = np.lib.format.read_magic(member)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(member)
    return math.prod(shape) * dtype.itemsize


def call_entry_point(target: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise DataError(f"data.entry_point: expected package.module:function (got {target!r})")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # the user's module may raise anything while importing
        raise DataError(f"data.entry_point: cannot load {target} ({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        result = function(**args)
    except Exception as exc:  # the user's function may raise anything
        raise DataError(f"data.entry_point: {target} raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(result, dict):
        raise DataError(
            f"data.entry_point: {target} returned {type(result).__name__}; it must return a mapping "
            "with x_train, y_train and optionally x_test, y_test, classes"
        )
    return result, f"data.entry_point {target}"


def read_torchvision(name: str, root: Path, download: bool) -> tuple[dict[str, Any], str]:
    import torchvision.datasets as datasets  # only this source needs torchvision on the driver

    kind = TORCHVISION[name]
    arrays: dict[str, Any] = {}
    for split, train in (("train", True), ("test", False)):
        options = {"split": "train" if train else "test"} if kind == "split" else {"train": train}
        try:
            data = getattr(datasets, name)(str(root), download=download, **options)
        except RuntimeError as exc:
            if "not found" not in str(exc).lower():  # a file there that does not parse, or a failed download
                raise _unreadable(name, root, exc) from None
            hint = "" if download else "; set data.download: true to fetch it"
            raise DataError(f"data.root: {name} not found under {root} ({_first_line(exc)}){hint}") from None
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file fails in the reader's own way
            raise _unreadable(name, root, exc) from None
        images = np.asarray(data.data)
        if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.transpose(0, 3, 1, 2)  # CIFAR keeps channels last
        labels = np.asarray(getattr(data, "targets", getattr(data, "labels", None)))
        if labels.ndim == 2:  # QMNIST: the class, then the writer and sample columns
            labels = labels[:, 0]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = np.ascontiguousarray(images), labels.astype(np.int64)
        arrays.setdefault("classes", list(getattr(data, "classes", [])) or None)
    return {k: v for k, v in arrays.items() if v is not None}, f"torchvision {name} under {root}"


def _unreadable(name: str, root: Path, exc: BaseException) -> DataError:
    return DataError(
        f"data.root: {name} under {root} could not be read ({type(exc).__name__}: {_first_line(exc)}); "
        "a file there is truncated or corrupt: delete it and fetch it again (data.download: true)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def find_idx_dir(root: Path, download: bool = False) -> Path:
    """The first directory holding all four Fashion-MNIST IDX files; downloads only if asked."""
    candidates = [root, DEBIAN_DIR, root / "FashionMNIST" / "raw"]
    for directory in candidates:
        if all(_idx_file(directory, stem) for stem in IDX_NAMES.values()):
            return directory
    if download:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
        return candidates[-1]
    looked = ", ".join(str(d) for d in candidates)
    raise DataError(
        f"data.root: Fashion-MNIST IDX files not found (looked in {looked}); install them with "
        "`apt-get install dataset-fashion-mnist` or set data.download: true"
    )


def _idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


MAX_IDX_BYTES = 1 << 30


def read_idx(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes (optionally gzipped), header checked, size capped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise DataError(f"data.root: {path} is unreadable ({_first_line(exc)})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataError(f"data.root: {path} is larger than {MAX_IDX_BYTES >> 20} MiB; not a Fashion-MNIST file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"data.root: {path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=min(4 + 4 * ndim, len(raw)))
    if len(raw) < 4 + 4 * ndim or data.size != math.prod(shape):
        raise DataError(f"data.root: {path} is a truncated IDX file (expected {list(shape)})")
    return data.reshape(shape)


def read_fashion(root: Path, download: bool) -> tuple[dict[str, Any], str]:
    directory = find_idx_dir(root, download)
    arrays: dict[str, Any] = {key: read_idx(_idx_file(directory, stem)) for key, stem in IDX_NAMES.items()}  # type: ignore[arg-type]
    arrays["classes"] = list(FASHION_CLASSES)
    return arrays, str(directory)
