"""Config problems as users read them (file, field, value, expectation) and the YAML reader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


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
        return f"{where}: got {self.value!r}: {self.expected}"


MISSING = object()


class ConfigError(Exception):
    """Raised with every problem found; ``str()`` is the message for the user."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        count = len(problems)
        lines = [f"invalid configuration ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  {problem}" for problem in problems]
        super().__init__("\n".join(lines))


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([ConfigProblem(source, "", MISSING, f"cannot read file: {error.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([ConfigProblem(source, "", MISSING, f"not valid YAML{position}: {problem}")]) from None
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
