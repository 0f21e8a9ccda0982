"""Errors raised by the local engine.

The tree::

    EngineError                      every error of this package; `code` is a stable string
    ├── ModelPathError               a path outside the allowed roots, or not there   (ValueError)
    ├── ModelFileError               a malformed, truncated or hostile model file     (ValueError)
    │   └── PickleRefusedError       a pickle checkpoint (.bin .pt .pth .ckpt): never loaded
    ├── UnsupportedModelError        a well-formed file this engine cannot serve      (ValueError)
    ├── RequestError                 a request the engine cannot take (prompt too long)  (ValueError)
    ├── ChatTemplateError            the chat template failed, ran too long or too big (ValueError)
    ├── SettingsError                a bad `load_engine` setting; `setting` names it  (ValueError)
    ├── MissingModelError            the bundled model package is not installed       (LookupError)
    └── EngineClosedError            the engine was closed, or its loop died           (RuntimeError)
"""

from __future__ import annotations

import os

__all__ = [
    "ChatTemplateError",
    "EngineClosedError",
    "EngineError",
    "MissingModelError",
    "ModelFileError",
    "ModelPathError",
    "PickleRefusedError",
    "RequestError",
    "SettingsError",
    "UnsupportedModelError",
]


class EngineError(Exception):
    """Base class of every local engine error; `code` is stable, the message may change."""

    code: str = "engine.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


class ModelPathError(EngineError, ValueError):
    """A model path that is missing, or that resolves outside the configured roots."""

    code = "model.path"

    def __init__(self, message: str, *, path: str | os.PathLike[str], code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.path = os.fspath(path)


class ModelFileError(EngineError, ValueError):
    """A model file that is malformed: `path` is the file, `offset` the byte where it went wrong."""

    code = "model.file"

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str],
        code: str | None = None,
        offset: int | None = None,
    ) -> None:
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{os.fspath(path)}{where}: {message}", code=code)
        self.path = os.fspath(path)
        self.offset = offset


class PickleRefusedError(ModelFileError):
    """A pickle-based checkpoint: loading one can run arbitrary code, so it is refused."""

    code = "model.pickle-refused"


class UnsupportedModelError(EngineError, ValueError):
    """A well-formed model this engine cannot run (architecture, tensor type, rope scaling)."""

    code = "model.unsupported"


class RequestError(EngineError, ValueError):
    """A request the engine cannot serve as asked, such as a prompt longer than the context."""

    code = "request.invalid"


class ChatTemplateError(EngineError, ValueError):
    """The chat template raised, used an unsafe construct, or exceeded its time or size limit."""

    code = "template.error"


class SettingsError(EngineError, ValueError):
    """An engine setting out of range or of the wrong kind; `setting` is its name (e.g. "dtype")."""

    code = "settings.invalid"

    def __init__(self, message: str, *, setting: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.setting = setting


class MissingModelError(EngineError, LookupError):
    """The bundled default model is not installed."""

    code = "model.missing"


class EngineClosedError(EngineError, RuntimeError):
    """The engine was closed, or its background loop stopped on an error."""

    code = "engine.closed"
