"""Faults of the file system and of memory, as one line that says what to do.

``what_failed(error)`` tells a fault of the machine (a full disk, a read-only
or forbidden folder, a path that is a file, memory) from a bug: the scripts
answer the first with ``Error: ...`` and let the second show its traceback.
"""

import contextlib
import errno
from typing import Optional

# TensorFlow's errors for file-system faults (it raises these, not OSError).
_TF_FAULTS = (
    "ResourceExhaustedError",
    "PermissionDeniedError",
    "FailedPreconditionError",
    "NotFoundError",
    "AlreadyExistsError",
    "DataLossError",
    "UnavailableError",
)
_NO_SPACE = ("No space left on device", "Disk quota exceeded")
_READ_ONLY = ("Read-only file system",)
_DENIED = ("Permission denied", "Operation not permitted")
_NOT_A_FOLDER = ("Not a directory", "Is a directory", "not a directory")


class FaultError(RuntimeError):
    """A fault of the machine, described in one line."""


def _message(error: BaseException) -> str:
    """The error's own words, first line, without TensorFlow's op prefixes."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    text = text.strip().splitlines()[0]
    if "}}" in text:  # "{{function_node ...}} path; reason [Op:SaveV2]"
        text = text.split("}}", 1)[1].strip()
    return text.split(" [Op:")[0]


def what_failed(error: BaseException) -> Optional[str]:
    """What went wrong and what to do, in one sentence, for a fault of the
    machine; None for anything else (a bug: let it raise)."""
    name = type(error).__name__
    text = _message(error)
    code = getattr(error, "errno", None)
    if not isinstance(error, OSError) and name not in _TF_FAULTS:
        return None
    if isinstance(error, OSError) and code is None:  # Raised with our own words: as they are.
        return None
    if code in (errno.ENOSPC, errno.EDQUOT) or any(s in text for s in _NO_SPACE):
        return f"the disk is full ({text}); free some space"
    if code == errno.EROFS or any(s in text for s in _READ_ONLY):
        return f"the file system is read-only ({text}); pick a writable folder"
    if code in (errno.EACCES, errno.EPERM) or any(s in text for s in _DENIED):
        return f"no permission ({text}); pick a folder you may write to"
    if code in (errno.ENOTDIR, errno.EISDIR) or any(s in text for s in _NOT_A_FOLDER):
        return f"a path is a file where a folder is needed, or the reverse ({text})"
    if name == "ResourceExhaustedError":
        return (
            f"out of memory ({text}); try a smaller --batch_size, --microbatches=N or --recompute"
        )
    if isinstance(error, OSError) or name in ("NotFoundError", "UnavailableError", "DataLossError"):
        return f"a file could not be read or written ({text})"
    return None


@contextlib.contextmanager
def doing(what: str):
    """Turns a fault of the machine raised in the block into a FaultError that
    says ``what`` failed and why; other errors pass unchanged."""
    try:
        yield
    except FaultError:
        raise
    except Exception as error:  # noqa: BLE001 - sorted by what_failed below.
        description = what_failed(error)
        if description is None:
            raise
        raise FaultError(f"{what} failed: {description}.") from error
