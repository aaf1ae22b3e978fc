"""Data: the datasets' original files (readers), the authors' splits (splits),
tf.data pipelines from local files or tensorflow-datasets (pipeline), seeded
subsets that stand for a whole split (subsets), and image grids for pictures
(pictures).

    from vnca_tf import data
    images = data.load_split("binarized_mnist", "test", data_dir="../shared/data")
"""

from vnca_tf.data.pipeline import (
    DATA_DIR_ENV,
    SPECS,
    get_spec,
    load_split,
    resolve_data_dir,
    shuffled,
    source_of,
    validation_split_for,
)
from vnca_tf.data.readers import DataError
from vnca_tf.data.subsets import draw, draw_batch

__all__ = [
    "DATA_DIR_ENV",
    "SPECS",
    "DataError",
    "draw",
    "draw_batch",
    "get_spec",
    "load_split",
    "resolve_data_dir",
    "shuffled",
    "source_of",
    "validation_split_for",
]
