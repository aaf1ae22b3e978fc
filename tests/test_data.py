import gzip
import hashlib
import os
import shutil
import struct
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from vnca_tf import data
from vnca_tf.data import DataError, pipeline, readers, splits


def _count(dataset):
    return sum(int(batch.shape[0]) for batch in dataset.batch(5000))


def _array(dataset):
    return np.concatenate([batch.numpy() for batch in dataset.batch(5000)])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, split, size",
    [
        ("binarized_mnist", "train", 50_000),
        ("binarized_mnist", "validation", 10_000),
        ("binarized_mnist", "test", 10_000),
        ("binarized_mnist", "train+validation", 60_000),
        ("celeb_a", "train", 4_560),
        ("celeb_a", "validation", 780),
        ("celeb_a", "test", 660),
        ("noto_emoji", "train", 2_656),
        ("noto_emoji", "test", 664),
    ],
)
def test_split_sizes(data_dir, name, split, size):
    dataset = data.load_split(name, split, data_dir=data_dir)
    assert _count(dataset) == size
    assert int(dataset.cardinality()) == size  # What train.py reports as loaded.


def test_paper_training_splits():
    assert data.get_spec("binarized_mnist").paper_train_split == "train+validation"
    assert data.get_spec("celeb_a").paper_train_split == "train"


def test_mnist_has_labels_and_is_binarized_at_128(data_dir):
    for split, size in (("train", 60_000), ("test", 10_000)):
        pairs = data.load_split("mnist", split, data_dir=data_dir, image_size=28, with_labels=True)
        batches = [(i.numpy(), labels.numpy()) for i, labels in pairs.batch(10_000)]
        images, labels = zip(*batches, strict=True)
        images, labels = np.concatenate(images), np.concatenate(labels)
        assert images.shape == (size, 28, 28, 1) and labels.shape == (size,)
        assert int(pairs.cardinality()) == size  # Known, as train.py reports it.
        assert set(np.unique(labels)) == set(range(10))
    raw = readers.read_idx(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz"), 3)
    np.testing.assert_array_equal(images[..., 0], (raw >= 128).astype(np.uint8))


@pytest.mark.parametrize(
    "name, size, channels, max_value",
    [
        ("binarized_mnist", 32, 1, 1),
        ("binarized_mnist", 28, 1, 1),
        ("mnist", 32, 1, 1),
        ("celeb_a", 64, 3, 255),
        ("celeb_a", 62, 3, 255),
        ("celeb_a", 32, 3, 255),
        ("noto_emoji", 64, 3, 255),
    ],
)
def test_shapes_dtypes_and_value_ranges(data_dir, name, size, channels, max_value):
    batch = next(
        iter(data.load_split(name, "test", data_dir=data_dir, image_size=size, batch_size=64))
    )
    assert batch.dtype == tf.uint8
    assert batch.shape == (64, size, size, channels)
    values = np.unique(batch.numpy())
    assert values.min() == 0 and values.max() == max_value
    if max_value == 1:
        assert set(values) == {0, 1}
    else:
        assert len(values) > 200  # Real 8-bit images, not thresholded.


def test_blocks_are_preprocessed_as_single_images_and_the_size_is_kept(monkeypatch):
    monkeypatch.setattr(pipeline, "_PREPROCESS_BLOCK", 4)  # Blocks of 4, 4 and 2.
    images = tf.data.Dataset.range(10).map(lambda i: tf.fill([2, 2, 1], i))
    blocks = pipeline.in_blocks(images, lambda block: block * 3)
    assert int(blocks.cardinality()) == 10
    assert [int(image[0, 0, 0]) for image in blocks] == [3 * i for i in range(10)]
    unknown = pipeline.in_blocks(images.filter(lambda image: image[0, 0, 0] > 6), tf.identity)
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert [int(image[0, 0, 0]) for image in unknown] == [7, 8, 9]


def test_padding_centres_the_digit_in_zeros(data_dir):
    small = _array(data.load_split("binarized_mnist", "test", data_dir=data_dir, image_size=28))
    padded = _array(data.load_split("binarized_mnist", "test", data_dir=data_dir, image_size=32))
    np.testing.assert_array_equal(padded[:, 2:30, 2:30], small)
    border = padded.copy()
    border[:, 2:30, 2:30] = 0
    assert border.max() == 0
    assert small.mean() > 0.1  # The digits are there.


def test_the_same_seed_gives_the_same_order(data_dir):
    def first_batches(seed):
        dataset = data.load_split(
            "binarized_mnist",
            "validation",
            data_dir=data_dir,
            batch_size=16,
            shuffle_seed=seed,
            repeat=True,
            drop_remainder=True,
        )
        iterator = iter(dataset)
        return np.stack([next(iterator).numpy() for _ in range(3)])

    first = first_batches(7)
    np.testing.assert_array_equal(first_batches(7), first)
    assert np.any(first_batches(8) != first)
    unshuffled = _array(data.load_split("binarized_mnist", "validation", data_dir=data_dir))[:16]
    assert np.any(first[0] != unshuffled)


def test_every_epoch_is_a_fresh_permutation_of_the_whole_dataset():
    # 103 elements in batches of 10 that run across the epochs' boundaries.
    pairs = tf.data.Dataset.range(103).map(lambda i: (i, -i))
    batches = data.shuffled(pairs, seed=3, batch_size=10)
    values, negatives = (
        np.concatenate(parts)
        for parts in zip(*[(a.numpy(), b.numpy()) for a, b in batches.take(31)], strict=True)
    )
    np.testing.assert_array_equal(negatives, -values)  # Pairs stay together.
    first, second, third = values[:103], values[103:206], values[206:309]
    for epoch in (first, second, third):
        np.testing.assert_array_equal(np.sort(epoch), np.arange(103))
    assert np.any(first != second) and np.any(second != third)
    # A buffer shuffle would keep the order roughly; a permutation does not.
    assert abs(np.corrcoef(first, np.arange(103))[0, 1]) < 0.3
    # Skipping batches (a resumed run) gives the batches that follow.
    resumed = data.shuffled(pairs, seed=3, batch_size=10, skip_batches=12)
    np.testing.assert_array_equal(next(iter(resumed))[0].numpy(), values[120:130])


@pytest.mark.slow
def test_celeb_a_resize_and_centre_crop(data_dir):
    path = os.path.join(data_dir, "celeba", "img_align_celeba", "000002.jpg")
    image = tf.io.decode_jpeg(tf.io.read_file(path), dct_method="INTEGER_ACCURATE")
    assert image.shape == (218, 178, 3)
    expected_plain = tf.image.resize(tf.cast(image, tf.float32), (64, 64), antialias=True)
    square = image[20:198]  # The central 178x178.
    expected_crop = tf.image.resize(tf.cast(square, tf.float32), (64, 64), antialias=True)
    plain = next(iter(data.load_split("celeb_a", "train", data_dir=data_dir))).numpy()
    crop = next(iter(data.load_split("celeb_a", "train", data_dir=data_dir, crop=True))).numpy()
    np.testing.assert_allclose(plain, np.round(expected_plain), atol=1)
    np.testing.assert_allclose(crop, np.round(expected_crop), atol=1)
    assert np.abs(plain.astype(int) - crop.astype(int)).mean() > 5


def test_celeb_a_pixels_are_the_authors(data_dir, fidelity_dir):
    # The fidelity fixture's images are what the authors' model saw (PIL's
    # decoder and bilinear resize) for the first two test images.
    fixture = np.load(os.path.join(fidelity_dir, "celeba.npz"))
    ours = _array(data.load_split("celeb_a", "test", data_dir=data_dir).take(2)).astype(int)
    difference = np.abs(ours - fixture["x_uint8"].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.002
    # The default (fast) IDCT would change 64% of the decoded values.
    path = os.path.join(data_dir, "celeba", "img_align_celeba", str(fixture["image_names"][0]))
    raw = tf.io.read_file(path)
    fast, exact = (
        tf.io.decode_jpeg(raw, dct_method=m).numpy().astype(int) for m in ("", "INTEGER_ACCURATE")
    )
    assert (fast != exact).mean() > 0.3


def test_noto_emoji_transparency_becomes_white(tmp_path):
    rgba = np.zeros((128, 128, 4), np.uint8)  # Fully transparent ...
    rgba[:64, :, :] = [255, 0, 0, 255]  # ... but an opaque red top half
    rgba[64:96, :, :] = [0, 0, 0, 128]  # and a half-transparent black band.
    folder = tmp_path / "noto_emoji" / "png" / "128"
    folder.mkdir(parents=True)
    for i in range(5):
        tf.io.write_file(str(folder / f"emoji_u{i:04x}.png"), tf.io.encode_png(rgba))
    images = _array(data.load_split("noto_emoji", "train", data_dir=str(tmp_path), image_size=128))
    assert images.shape == (4, 128, 128, 3)  # 5 files: 1 test, 4 train.
    np.testing.assert_array_equal(images[0, 10, 10], [255, 0, 0])
    np.testing.assert_allclose(images[0, 80, 10], [127, 127, 127], atol=1)
    np.testing.assert_array_equal(images[0, 120, 10], [255, 255, 255])


def test_noto_emoji_test_split_is_the_authors_random_split(data_dir):
    # torch.utils.data.random_split(sorted names, [2656, 664],
    # generator=torch.Generator().manual_seed(0)), as torch 2.13 computed it
    # (the hash of the sorted test names, one per line).
    folder = os.path.join(data_dir, "noto_emoji", "png", "128")
    test = splits.noto_emoji_split(folder, "test")
    train = splits.noto_emoji_split(folder, "train")
    assert len(test) == 664 and len(train) == 2656 and not set(test) & set(train)
    names = "\n".join(sorted(os.path.basename(path) for path in test))
    assert hashlib.sha256(names.encode()).hexdigest() == (
        "a07984f584d671a8b6726611fa099840f695852d7063a467d6b48ed6df04d633"
    )


def test_torch_randperm_is_reproduced():
    # Values printed by torch 2.13.0 (CPU): torch.randperm(n, generator=
    # torch.Generator().manual_seed(seed)).tolist().
    assert splits.randperm(10, 0).tolist() == [4, 1, 7, 5, 3, 9, 0, 8, 6, 2]
    assert splits.randperm(20, 42).tolist() == [
        2,
        14,
        18,
        15,
        1,
        10,
        0,
        4,
        6,
        11,
        8,
        3,
        7,
        17,
        13,
        12,
        19,
        5,
        16,
        9,
    ]
    first, second = splits.random_split(10, [7, 3], 0)
    assert first.tolist() == [4, 1, 7, 5, 3, 9, 0] and second.tolist() == [8, 6, 2]
    with pytest.raises(ValueError, match="do not add up to 10"):
        splits.random_split(10, [7, 2], 0)


@pytest.mark.parametrize(
    "name, features", [("binarized_mnist", None), ("mnist", "labels"), ("celeb_a", None)]
)
def test_tensorflow_datasets_source(name, features):
    with tfds.testing.mock_data(num_examples=12):
        dataset = data.load_split(
            name, "test", source="tfds", with_labels=features == "labels", batch_size=4
        )
        batch = next(iter(dataset))
    images = batch[0] if features else batch
    spec = data.get_spec(name)
    assert images.dtype == tf.uint8
    assert images.shape == (4, spec.default_size, spec.default_size, spec.channels)
    if spec.channels == 1:
        np.testing.assert_array_equal(images.numpy()[:, :2], 0)  # Zero padding.
    if name == "mnist":  # Mock 8-bit digits come out thresholded.
        assert set(np.unique(images.numpy())) == {0, 1}
    if features:
        assert batch[1].shape == (4,)


def test_tensorflow_datasets_prepares_and_serves_the_original_files(tmp_path, data_dir):
    """The real tfds path (download_and_prepare, then load), with tfds' download
    of the original files answered from a small local copy of them: the same
    images as the local source, in tfds' order. (It needs importlib_resources,
    which tensorflow-datasets imports without declaring it.)"""
    files = tmp_path / "files"
    files.mkdir()
    for part in ("train", "valid", "test"):
        name = f"binarized_mnist_{part}.amat"
        with gzip.open(os.path.join(data_dir, "binarized_mnist", name + ".gz"), "rt") as f:
            (files / name).write_text("".join(f.readline() for _ in range(6)))

    def download(manager, urls):
        return {key: str(files / os.path.basename(url)) for key, url in urls.items()}

    with mock.patch.object(tfds.download.DownloadManager, "download", download):
        served = data.load_split(
            "binarized_mnist", "train+validation", source="tfds", tfds_dir=str(tmp_path / "tfds")
        )
        assert int(served.cardinality()) == 12
        served = _array(served)
    local = _array(
        data.load_split("binarized_mnist", "train+validation", source="local", data_dir=str(files))
    )
    assert served.shape == local.shape == (12, 32, 32, 1)
    assert sorted(map(bytes, served)) == sorted(map(bytes, local))
    again = _array(
        data.load_split(
            "binarized_mnist",
            "test",
            tfds_dir=str(tmp_path / "tfds"),
            data_dir=str(tmp_path / "none"),
        )
    )  # auto: the prepared copy.
    assert again.shape == (6, 32, 32, 1)


def test_no_data_anywhere_names_files_folders_and_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError) as error:
        data.load_split("binarized_mnist", data_dir=str(tmp_path), tfds_dir=str(tmp_path / "tfds"))
    message = str(error.value)
    assert "binarized_mnist_{train,valid,test}.amat" in message
    assert str(tmp_path / "binarized_mnist") in message
    assert "source='tfds'" in message and "VNCA_DATA_DIR" in message
    with pytest.raises(DataError, match="no data_dir was given"):
        data.load_split("celeb_a", source="local")
    with pytest.raises(DataError, match="tensorflow-datasets does not have it"):
        data.load_split("noto_emoji", data_dir=str(tmp_path))


def test_data_dir_comes_from_the_environment(data_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, data_dir)
    assert _count(data.load_split("celeb_a", "test")) == 660


def _small_celeba(tmp_path, data_dir, names, csv=False):
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    for name in names:
        shutil.copy(
            os.path.join(data_dir, "celeba", "img_align_celeba", name),
            folder / "img_align_celeba" / name,
        )
    if csv:
        lines = ["image_id,partition"] + [f"{name},0" for name in names]
        (folder / "list_eval_partition.csv").write_text("\n".join(lines) + "\n")
    else:
        (folder / "list_eval_partition.txt").write_text("".join(f"{name} 0\n" for name in names))
    return folder


def test_kaggle_partition_csv_is_accepted(tmp_path, data_dir):
    _small_celeba(tmp_path, data_dir, ["000002.jpg", "000058.jpg"], csv=True)
    assert _count(data.load_split("celeb_a", "train", data_dir=str(tmp_path))) == 2


def test_corrupt_image_is_named(tmp_path, data_dir):
    folder = _small_celeba(tmp_path, data_dir, ["000002.jpg", "000058.jpg", "000086.jpg"])
    bad = folder / "img_align_celeba" / "000058.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # Truncated.
    with pytest.raises(DataError, match="Cannot decode image .*000058.jpg"):
        data.load_split("celeb_a", "train", data_dir=str(tmp_path))


def test_missing_listed_image_is_named(tmp_path, data_dir):
    folder = _small_celeba(tmp_path, data_dir, ["000002.jpg", "000058.jpg"])
    os.remove(folder / "img_align_celeba" / "000058.jpg")
    with pytest.raises(DataError, match="1 image.*missing.*000058.jpg"):
        data.load_split("celeb_a", "train", data_dir=str(tmp_path))


def _write_amat(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        with gzip.open(folder / f"binarized_mnist_{split}.amat.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")


def test_truncated_amat_line_is_named(tmp_path):
    good = " ".join(["0"] * 783 + ["1"])
    _write_amat(tmp_path / "binarized_mnist", [good, good, " ".join(["1"] * 500)])
    with pytest.raises(DataError, match=r"binarized_mnist_test.amat.gz, line 3: expected 784"):
        data.load_split("binarized_mnist", "test", data_dir=str(tmp_path))


def test_non_binary_amat_value_is_named(tmp_path):
    good = " ".join(["0"] * 784)
    _write_amat(tmp_path / "binarized_mnist", [good, " ".join(["0"] * 783 + ["0.5"])])
    with pytest.raises(DataError, match="line 2: values must be 0 or 1"):
        data.load_split("binarized_mnist", "test", data_dir=str(tmp_path))


def test_amat_in_another_number_format_is_read(tmp_path):
    _write_amat(tmp_path / "binarized_mnist", [" ".join(["1.0"] + ["0.0"] * 783)])
    images = _array(
        data.load_split("binarized_mnist", "test", data_dir=str(tmp_path), image_size=28)
    )
    assert images.shape == (1, 28, 28, 1) and images[0, 0, 0, 0] == 1 and images.sum() == 1


def test_the_fast_amat_reader_reads_what_the_line_by_line_one_does(data_dir, tmp_path):
    # The real file's first 300 lines, once as they are and once with Windows
    # line ends, a trailing blank line and no final newline.
    with gzip.open(os.path.join(data_dir, "binarized_mnist", "binarized_mnist_test.amat.gz")) as f:
        lines = f.read().split(b"\n")[:300]
    for raw in (b"\n".join(lines) + b"\n", b"\r\n".join(lines) + b"\r\n\r\n" + lines[0]):
        path = tmp_path / "binarized_mnist_test.amat"
        path.write_bytes(raw)
        fast = readers.read_amat(str(path))
        np.testing.assert_array_equal(fast, readers._read_amat_slowly(str(path), raw))
        assert fast.dtype == np.uint8 and fast.sum() > 300 * 50


def _write_idx(path, magic, shape, payload):
    path.write_bytes(struct.pack(">i", magic) + struct.pack(f">{len(shape)}i", *shape) + payload)


def test_wrong_idx_magic_is_named(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte", 2049, (2, 28, 28), bytes(2 * 784))
    with pytest.raises(
        DataError,
        match=r"t10k-images-idx3-ubyte: wrong IDX magic number "
        r"2049, expected 2051",
    ):
        data.load_split("mnist", "test", data_dir=str(tmp_path))


def test_short_idx_and_label_mismatch_are_named(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte", 2051, (3, 28, 28), bytes(2 * 784))
    with pytest.raises(DataError, match="header promises"):
        data.load_split("mnist", "test", data_dir=str(tmp_path))
    _write_idx(folder / "t10k-images-idx3-ubyte", 2051, (3, 28, 28), bytes(3 * 784))
    _write_idx(folder / "t10k-labels-idx1-ubyte", 2049, (2,), bytes(2))
    with pytest.raises(DataError, match="has 2 labels for 3 images"):
        data.load_split("mnist", "test", data_dir=str(tmp_path), with_labels=True)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(name="cifar10"), "Unknown dataset 'cifar10'. Known datasets: binarized_mnist"),
        (dict(name="mnist", split="validation"), "mnist has no split 'validation'"),
        (dict(name="celeb_a", with_labels=True), "celeb_a has no labels"),
        (dict(name="binarized_mnist", image_size=64), "zero-padded to 32x32"),
        (dict(name="celeb_a", source="web"), "Unknown source 'web'"),
    ],
)
def test_bad_requests_are_explained(data_dir, kwargs, words):
    with pytest.raises(DataError, match=words):
        data.load_split(data_dir=data_dir, **kwargs)
