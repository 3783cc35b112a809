"""Reading the files a runtime_env names (requirements, environment.yml) as text."""

from __future__ import annotations

from pathlib import Path

from runenv.errors import SpecError


def read_utf8(path: Path, where: str) -> str:
    """The text of ``path``, or a SpecError naming the field (``where``) that named it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{where}: {path} is not UTF-8 text (byte {error.start}: {error.reason})",
            hint="save the file as UTF-8",
        ) from None
    except OSError as error:
        raise SpecError(
            f"{where}: cannot read {path}: {error.strerror}", hint="check its permissions"
        ) from None


def one_line(error: Exception) -> str:
    """A parser's error on one line: YAML's spans several, quoting the text around it."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is not None and problem:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())
