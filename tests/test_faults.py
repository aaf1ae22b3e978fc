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


def test_pythons_own_fault_on_a_folder_where_a_file_is_needed(tmp_path):
    with pytest.raises(faults.FaultError, match="a path is a file where a folder is needed"):
        with faults.doing("Writing the file"), open(tmp_path, "w"):
            pass


@pytest.mark.parametrize(
    "error, words",
    [  # By its errno alone, then by its words alone (as TensorFlow raises them).
        (OSError(errno.ENOSPC, "?"), "the disk is full"),
        (OSError(errno.EROFS, "?"), "the file system is read-only"),
        (OSError(errno.EACCES, "?"), "no permission"),
        (OSError(errno.ENOTDIR, "?"), "a path is a file where a folder is needed"),
        (OSError(errno.EIO, "?"), "could not be read or written"),
        (tf.errors.ResourceExhaustedError(None, None, "No space left on device"), "disk is full"),
        (tf.errors.FailedPreconditionError(None, None, "Read-only file system"), "read-only"),
        (tf.errors.PermissionDeniedError(None, None, "Permission denied"), "no permission"),
        (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"), "out of memory"),
        (tf.errors.DataLossError(None, None, "corrupted record"), "could not be read or written"),
    ],
)
def test_each_fault_says_what_to_do(error, words):
    assert words in faults.what_failed(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        tf.errors.InvalidArgumentError(None, None, "a bug"),
        FileExistsError("runs/x exists; pick another folder."),  # Our own words, no errno.
    ],
)
def test_a_bug_or_our_own_message_passes_unchanged(error):
    assert faults.what_failed(error) is None
    with pytest.raises(type(error)) as caught, faults.doing("Anything"):
        raise error
    assert caught.value is error
