"""Shared test settings: quiet TensorFlow logs, two CPU devices, GPU memory
taken as needed, the data and fixture folders, and the markers that follow
from them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from helpers import REPO  # noqa: E402

# Two logical CPU devices, so that MirroredStrategy has two replicas to test.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
# pytest-xdist runs two test processes: neither may take a GPU's whole memory.
for gpu in tf.config.list_physical_devices("GPU"):
    tf.config.experimental.set_memory_growth(gpu, True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def data_dir():
    """The offline datasets: $VNCA_DATA_DIR, else ../shared/data beside the repo."""
    path = os.environ.get("VNCA_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        pytest.fail(f"The test datasets are not at {path}; set VNCA_DATA_DIR.")
    return path


@pytest.fixture(scope="session")
def fidelity_dir():
    """The authors' golden fixtures: $VNCA_FIDELITY_DIR, else ../shared/fidelity."""
    path = os.environ.get("VNCA_FIDELITY_DIR") or os.path.join(REPO, "..", "shared", "fidelity")
    path = os.path.abspath(path)
    if not os.path.isfile(os.path.join(path, "mnist.npz")):
        pytest.fail(f"The fidelity fixtures are not at {path}; set VNCA_FIDELITY_DIR.")
    return path


MARKER_OF_FIXTURE = {"data_dir": "data", "fidelity_dir": "fidelity"}


def pytest_collection_modifyitems(config, items):
    """Marks every test that reads the datasets ``data`` and every test that reads
    the authors' fixtures ``fidelity``, from the fixtures it asks for; skips the
    tests marked ``gpu`` where TensorFlow finds no GPU."""
    no_gpu = not tf.config.list_physical_devices("GPU")
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
        if no_gpu and item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason="no GPU: tf.config found none"))
