"""Readers for the datasets' original files, as a user downloads them by hand.

binarized MNIST: ``binarized_mnist_{train,valid,test}.amat`` (plain or .gz), one
image per line of 784 values 0/1. MNIST: the four IDX files (plain or .gz).
CelebA: ``img_align_celeba/*.jpg`` with ``list_eval_partition.txt`` (or Kaggle's
``list_eval_partition.csv``). Noto Emoji: a folder of PNGs (``png/128/*.png``).
Every failure raises DataError naming the file (and line) and what to do.
"""

import gzip
import os
import struct
from typing import List, Optional, Sequence

import numpy as np


class DataError(ValueError):
    """Missing, corrupt or inconsistent data files."""


def open_maybe_gzipped(path: str):
    """Opens ``path`` for binary reading, through gzip if it ends in .gz."""
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def find_file(folders: Sequence[str], name: str) -> Optional[str]:
    """The first of ``folder/name`` or ``folder/name.gz`` that exists, or None."""
    for folder in folders:
        for candidate in (name, name + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


_AMAT_LINE = 2 * 784  # Bytes per line: each value, then a space or newline.


def read_amat(path: str) -> np.ndarray:
    """A binarized MNIST .amat file -> uint8 array (N, 28, 28, 1) of 0/1."""
    try:
        with open_maybe_gzipped(path) as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f"Cannot read {path}: {error}. Download the file again.") from None
    # Fast path, the original files' layout: lines of 784 single-digit values,
    # each followed by a space or, the last, by the newline. Anything else is
    # read line by line.
    rows = np.frombuffer(raw, np.uint8)
    if rows.size == 0 or rows.size % _AMAT_LINE:
        return _read_amat_slowly(path, raw)
    rows = rows.reshape(-1, _AMAT_LINE)
    values = rows[:, 0::2] - np.uint8(ord("0"))  # Bytes below "0" wrap past 1.
    separators = rows[:, 1::2]
    if not (
        np.all(values <= 1)
        and np.all(separators[:, :-1] == ord(" "))
        and np.all(separators[:, -1] == ord("\n"))
    ):
        return _read_amat_slowly(path, raw)
    return values.reshape(-1, 28, 28, 1)


def _read_amat_slowly(path: str, raw: bytes) -> np.ndarray:
    """Line-by-line .amat parsing: any number format; names the faulty line."""
    images = []
    for number, line in enumerate(raw.decode("ascii", "replace").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 784:
            raise DataError(
                f"{path}, line {number}: expected 784 pixel values, found {len(tokens)}; "
                "the file is truncated or corrupt. Download it again."
            )
        try:
            row = np.array(tokens, dtype=np.float32)
        except ValueError:
            raise DataError(f"{path}, line {number}: not a list of numbers.") from None
        if not np.all((row == 0) | (row == 1)):
            raise DataError(
                f"{path}, line {number}: values must be 0 or 1 in a binarized MNIST .amat file."
            )
        images.append(row.astype(np.uint8))
    if not images:
        raise DataError(f"{path} holds no images.")
    return np.stack(images).reshape(-1, 28, 28, 1)


_IDX_MAGIC = {1: 2049, 3: 2051}  # Label files (1-d), image files (3-d).


def read_idx(path: str, ndim: int) -> np.ndarray:
    """An MNIST IDX file of ``ndim`` dimensions (3: images, 1: labels) -> uint8."""
    try:
        with open_maybe_gzipped(path) as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f"Cannot read {path}: {error}. Download the file again.") from None
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes).")
    magic = struct.unpack(">i", data[:4])[0]
    if magic != _IDX_MAGIC[ndim]:
        raise DataError(
            f"{path}: wrong IDX magic number {magic}, expected {_IDX_MAGIC[ndim]} for "
            f"{'an image' if ndim == 3 else 'a label'} file. Is it the right file?"
        )
    shape = struct.unpack(f">{ndim}i", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{path}: the header promises {shape} values ({expected} bytes) "
            f"but the file has {len(data)} bytes; download it again."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}


def read_celeba_partition(folder: str, split: str) -> List[str]:
    """Image paths of a CelebA split from the official partition file
    (``list_eval_partition.txt``, or Kaggle's ``.csv`` with a header)."""
    candidates = (("list_eval_partition.txt", None), ("list_eval_partition.csv", ","))
    found = [(os.path.join(folder, name), sep) for name, sep in candidates]
    found = [(path, sep) for path, sep in found if os.path.isfile(path)]
    if not found:
        raise DataError(f"No list_eval_partition.txt or .csv in {folder}.")
    path, separator = found[0]
    images = os.path.join(folder, "img_align_celeba")
    wanted = CELEBA_SPLITS[split]
    paths = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.strip().split(separator)
            if not fields or not fields[0] or fields[0] == "image_id":
                continue
            if len(fields) != 2 or fields[1].strip() not in ("0", "1", "2"):
                raise DataError(
                    f"{path}, line {number}: expected '<image>.jpg <0|1|2>', got {line.strip()!r}."
                )
            if int(fields[1]) == wanted:
                paths.append(os.path.join(images, fields[0].strip()))
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) of the CelebA {split} split listed in {path} are "
            f"missing from {images}, e.g. {missing[0]}. Unpack img_align_celeba.zip there."
        )
    return paths
