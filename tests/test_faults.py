"""vnca_tf.common.faults: the machine's faults, as TensorFlow and Python really
raise them, become one line that says what to do; bugs pass unchanged."""

import errno

import pytest
import tensorflow as tf

from vnca_tf.common import faults


def test_tensorflows_own_fault_on_a_file_where_a_folder_is_needed(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(faults.FaultError) as caught, faults.doing("Writing the files"):
        tf.io.write_file(str(tmp_path / "a_file" / "1" / "x"), "a")
    assert str(caught.value) == (
        "Writing the files failed: a path is a file where a folder is needed, or the "
        f"reverse ({tmp_path / 'a_file'} is not a directory)."
    )


@pytest.mark.parametrize(
    "error, words",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
        (OSError(errno.EROFS, "Read-only file system"), "the file system is read-only"),
        (PermissionError(errno.EACCES, "Permission denied"), "no permission"),
        (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"), "out of memory"),
        (tf.errors.DataLossError(None, None, "corrupted record"), "could not be read or written"),
    ],
)
def test_each_fault_says_what_to_do(error, words):
    assert words in faults.what_failed(error)


def test_a_bug_is_not_a_fault():
    assert faults.what_failed(ValueError("a bug")) is None
    with pytest.raises(ValueError, match="a bug"), faults.doing("Anything"):
        raise ValueError("a bug")
