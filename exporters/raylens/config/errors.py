"""Config problems as users read them (file, field, value, expectation) and the YAML reader."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from raylens.files import CONFIG_LIMITS, FileRefused, Limits, read_yaml, shorten

# Values are quoted in messages; a bad value may be megabytes (a huge string, a list of 100,000 items),
# so the quote is built with bounded effort and cut, and so is the number of problems listed.
_QUOTE = reprlib.Repr()  # keyword arguments need Python 3.12
_QUOTE.maxlevel, _QUOTE.maxdict, _QUOTE.maxlist, _QUOTE.maxtuple, _QUOTE.maxset = 3, 4, 4, 4, 4
_QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 60, 60, 40
VALUE_QUOTE_MAX = 200
PROBLEMS_SHOWN_MAX = 50


def quote(value: Any) -> str:
    """A short ``repr`` of a value from a file, whatever its size (strings keep their start)."""
    if isinstance(value, str):
        if len(value) <= VALUE_QUOTE_MAX:
            return repr(value)
        return repr(value[:VALUE_QUOTE_MAX]) + f"… ({len(value):,} characters)"
    try:
        text = _QUOTE.repr(value)
    except Exception:  # a repr that fails must not hide the problem being reported
        text = f"<{type(value).__name__}>"
    return shorten(text, VALUE_QUOTE_MAX // 2)


@dataclass(frozen=True)
class ConfigProblem:
    source: str
    field: str
    value: Any
    expected: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        if self.value is MISSING:
            return f"{where}: {self.expected}"
        return f"{where}: got {quote(self.value)}: {self.expected}"


MISSING = object()


class ConfigError(Exception):
    """Raised with every problem found; ``str()`` is the message for the user."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        count = len(problems)
        if count == 1:
            super().__init__(f"invalid configuration: {problems[0]}")
            return
        lines = [f"invalid configuration ({count} problems):"]
        lines += [f"  {problem}" for problem in problems[:PROBLEMS_SHOWN_MAX]]
        if count > PROBLEMS_SHOWN_MAX:
            lines.append(f"  … and {count - PROBLEMS_SHOWN_MAX} more")
        super().__init__("\n".join(lines))


def refused(error: FileRefused) -> ConfigProblem:
    """A file the bounded reader refused, as a problem: file, line (where known) and the reason."""
    return ConfigProblem(error.path, f"line {error.line}" if error.line is not None else "", MISSING, error.reason)


def read_yaml_mapping(path: Path, limits: Limits = CONFIG_LIMITS) -> dict[str, Any]:
    """A YAML file whose top level is a mapping, read within ``limits`` (``raylens.files``)."""
    source = str(path)
    try:
        data = read_yaml(path, limits)
    except FileRefused as error:
        raise ConfigError([refused(error)]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(source, "", data, "expected a mapping of sections at the top level")])
    return data


def _expected(error: Mapping[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    message: str = error["msg"]
    if kind == "extra_forbidden":
        parent: Any = model
        for key in loc[:-1]:
            field = parent.model_fields.get(key) if isinstance(key, str) else None
            parent = field.annotation if field is not None else None
            if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
                break
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            return "unknown field; expected one of: " + ", ".join(sorted(parent.model_fields))
        return "unknown field"
    for prefix in ("Value error, ", "Input should be "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
            return message if prefix == "Value error, " else "expected " + message
    return "expected: " + message[0].lower() + message[1:]


def problems_from_validation(
    error: ValidationError,
    model: type[BaseModel],
    default_source: str,
    sources: Mapping[tuple[str, ...], str] | None = None,
) -> list[ConfigProblem]:
    """Turn pydantic's errors into problems naming source, field path, value and expectation."""
    problems = []
    for detail in error.errors():
        loc = tuple(detail["loc"])
        source = next(
            (sources[loc[:n]] for n in range(len(loc), 0, -1) if sources and loc[:n] in sources),
            default_source,
        )
        value = detail.get("input", MISSING) if detail["type"] != "missing" else MISSING
        field = ".".join(str(part) for part in loc)
        problems.append(ConfigProblem(source, field, value, _expected(detail, model, loc)))
    return problems
