"""stload's exceptions.

Every error stload raises is a :class:`stload.Error`. Each error code has a subclass that is also
the matching built-in exception, so ``except OSError`` and ``except ValueError`` catch what they
would catch in any other library:

======================  ===============================  ======================================
code                    class                            also a
======================  ===============================  ======================================
``not found``           :class:`NotFoundError`           :class:`FileNotFoundError`
``io error``            :class:`IoError`                 :class:`OSError` (``errno`` is set)
``corrupt``             :class:`CorruptFileError`        :class:`ValueError`
``invalid argument``    :class:`InvalidArgumentError`    :class:`ValueError`
``resource exhausted``  :class:`ResourceExhaustedError`  :class:`MemoryError`
others                  :class:`Error`
======================  ===============================  ======================================

``str(error)`` is one line that starts with the base name of the file at fault, when there is
one: ``model-00002-of-00004.safetensors: tensor 'lm_head.weight': data_offsets [0, 100) extend
past the data buffer (64 bytes)``. It is text for people: bytes of a file name that are not UTF-8
are shown as ``\\xNN``; ``error.path`` has the exact name.
"""

from __future__ import annotations

import errno as _errno


class Error(Exception):
    """Base class of every stload error.

    Attributes:
        message: the whole message, as ``str(error)``.
        code: the error code: ``"invalid argument"``, ``"not found"``, ``"io error"``,
            ``"corrupt"``, ``"unsupported"``, ``"resource exhausted"``, ``"cancelled"`` or
            ``"internal"``.
        reason: what went wrong, without where.
        path: the file concerned as it was opened, or None; decoded with ``os.fsdecode``, so a
            name that is not UTF-8 keeps its bytes (``open(error.path)`` opens it).
        file_name: its base name, or None.
        offset: the byte offset in that file, or None.
        tensor: the tensor concerned, or None.
        errno: the errno of a failed system call, or None.
    """

    def __init__(self, message: str, *, code: str = "internal", reason: str | None = None,
                 path: str | None = None, offset: int | None = None,
                 tensor: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = message if reason is None else reason
        self.path = path
        self.file_name = None if path is None else path.rstrip("/").rsplit("/", 1)[-1]
        self.offset = offset
        self.tensor = tensor
        if isinstance(self, OSError):
            # OSError's own fields, for code that inspects them.
            self.filename = path
            self.strerror = self.reason
        self.errno = errno

    def __str__(self) -> str:
        # OSError would render "[Errno 5] ...: 'path'"; stload's line already says everything.
        return self.message


class NotFoundError(Error, FileNotFoundError):
    """A file or tensor does not exist, or a directory holds no shards. ``errno`` is ENOENT
    unless a system call said otherwise."""

    def __init__(self, message: str, **kwargs) -> None:
        if not kwargs.get("errno"):
            kwargs["errno"] = _errno.ENOENT
        super().__init__(message, **kwargs)


class IoError(Error, OSError):
    """The operating system failed a call; ``errno`` says which error."""


class CorruptFileError(Error, ValueError):
    """The checkpoint breaks a rule of the safetensors format or disagrees with its index."""


class InvalidArgumentError(Error, ValueError):
    """The caller asked for something impossible: a bad config key or value, a bad argument."""


class ResourceExhaustedError(Error, MemoryError):
    """Out of memory, threads or another system limit."""


class UnsupportedError(Error, ValueError):
    """The system or stload cannot do what was asked: an option stload does not offer (vLLM's
    ``"torchao"`` load strategy), a memory kind it cannot load into."""

    def __init__(self, message: str, **kwargs) -> None:
        kwargs.setdefault("code", "unsupported")
        super().__init__(message, **kwargs)


_BY_CODE = {
    "not found": NotFoundError,
    "io error": IoError,
    "corrupt": CorruptFileError,
    "invalid argument": InvalidArgumentError,
    "resource exhausted": ResourceExhaustedError,
    "unsupported": UnsupportedError,
}


def _from_status(code: str, message: str, reason: str, path: str | None, offset: int | None,
                 tensor: str | None, errno: int | None) -> Error:
    """Builds the exception for a C++ stload::Status (called by the extension module)."""
    cls = _BY_CODE.get(code, Error)
    return cls(message, code=code, reason=reason, path=path, offset=offset, tensor=tensor,
               errno=errno)
