"""Validation errors as our users read them: the field's path, then what is wrong."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from switchyard.common.validation import Problem, describe, field_path, problems


class Part(BaseModel):
    type: str


class Message(BaseModel):
    content: str | list[Part]
    weight: int = 1

    @field_validator("weight")
    @classmethod
    def positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class Body(BaseModel):
    messages: list[Message]


def test_field_path_drops_union_member_names() -> None:
    assert field_path(("messages", 0, "content", "str")) == "messages[0].content"
    assert field_path(("messages", 1, "content", "list[TextPart]", 0, "type")) == (
        "messages[1].content[0].type"
    )
    assert field_path(()) is None


def test_every_problem_is_named_by_its_field_without_pydantics_prefix() -> None:
    with pytest.raises(ValidationError) as error:
        Body.model_validate({"messages": [{"content": "hi", "weight": 0}, {"content": 5}]})
    found = problems(error.value)
    assert found[0] == Problem("messages[0].weight", "must be positive")
    # content is a union: pydantic reports each member's failure, all at the one field.
    assert len(found) > 1
    assert all(problem.path == "messages[1].content" for problem in found[1:])
    assert str(found[0]) == "messages[0].weight: must be positive"
    assert describe(error.value).startswith("messages[0].weight: must be positive; ")


def test_a_problem_with_the_whole_input_has_no_path() -> None:
    with pytest.raises(ValidationError) as error:
        Body.model_validate("not a mapping")
    (problem,) = problems(error.value)
    assert problem.path is None
    assert str(problem) == problem.message
