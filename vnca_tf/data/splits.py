"""The authors' data splits, drawn as their code drew them: PyTorch's CPU
random permutation, in NumPy, and Noto Emoji's test split.

``torch.randperm(n, generator=torch.Generator().manual_seed(seed))``: the
generator is MT19937 seeded as ``init_genrand(seed)`` (NumPy's legacy
RandomState seeding), and for n < 2^32 / 20 the permutation is a Fisher-Yates
shuffle, for i = 0 .. n - 2, of i with i + (next 32-bit draw mod (n - i)).
PyTorch 1.9 (the authors') and 2.x (which kept it for such n) agree.
"""

import os
from typing import List

import numpy as np

from vnca_tf.data.readers import DataError


def randperm(n: int, seed: int) -> np.ndarray:
    """What ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))``
    returns on the CPU, as an int64 array."""
    if not 0 < n < 2**32 // 20:
        raise ValueError(f"randperm reproduces PyTorch for 0 < n < {2**32 // 20}, got {n}.")
    key, position = np.random.RandomState(seed).get_state()[1:3]
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": position}}
    draws = bits.random_raw(n - 1)
    permutation = np.arange(n)
    for i, draw in enumerate(draws):
        j = i + int(draw) % (n - i)
        permutation[i], permutation[j] = permutation[j], permutation[i]
    return permutation


def random_split(n: int, lengths, seed: int):
    """The index lists that ``torch.utils.data.random_split`` of n items into
    ``lengths`` draws with a generator seeded ``seed``: consecutive runs of the
    permutation."""
    if sum(lengths) != n:
        raise ValueError(f"The lengths {lengths} do not add up to {n}.")
    permutation = randperm(n, seed)
    ends = np.cumsum(lengths)
    return [permutation[end - length : end] for end, length in zip(ends, lengths, strict=True)]


NOTO_TEST_FRACTION = 0.2
NOTO_SPLIT_SEED = 0


def noto_emoji_split(folder: str, split: str) -> List[str]:
    """PNG paths of a Noto Emoji split, drawn as the authors' ``NotoEmoji.
    train_val_split`` draws it: ``random_split`` of the images into the first
    80% and the last 20% (the test set) of ``torch.randperm`` with a generator
    seeded 0 (``randperm``). Their images were listed by ``glob``, in
    the file system's order, which cannot be reproduced; here they are sorted
    by file name, so the split is the authors' over that order."""
    paths = sorted(
        os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".png")
    )
    if not paths:
        raise DataError(f"No .png files in {folder}.")
    num_test = int(len(paths) * NOTO_TEST_FRACTION)
    train, test = random_split(len(paths), [len(paths) - num_test, num_test], NOTO_SPLIT_SEED)
    return [paths[i] for i in sorted(test if split == "test" else train)]
