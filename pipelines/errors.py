"""One error hierarchy whose messages are single lines a user can act on."""

from __future__ import annotations


class ScaleclfError(Exception):
    """Base of every error scaleclf reports to the user; ``str(err)`` is one line."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(ScaleclfError):
    """The job spec or a command-line option is wrong; the message names the key."""

    exit_code = 2


class DataError(ScaleclfError):
    """The data cannot be used; the message names the file, column or value."""

    exit_code = 3


class EngineError(ScaleclfError):
    """An engine or cluster cannot be reached or used; the message names the address."""

    exit_code = 4


class ArtifactError(ScaleclfError):
    """A saved run or model is missing, incomplete or fails its checksum."""

    exit_code = 5


def first_line(exc: BaseException, *, last: bool = False, limit: int = 300) -> str:
    """Return one line of an exception's text: the first, or the last (wrapped remote errors), cut at ``limit``."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return (lines[-1] if last else lines[0])[:limit]
