"""`spec.model.chatTemplate`: a template name, or inline Jinja that must compile.

The models compile inline templates with jinja2 in the environment transformers renders
chat templates with (sandboxed, `trim_blocks`, `lstrip_blocks`, loop controls, and the
`{% generation %}` block), so a syntax error is refused by `kubesft validate` and by the
operator before any pod is scheduled. The apiserver cannot run Jinja: its CEL rule catches
the commonest break, a template that ends inside an unclosed `{{ ... }}` or `{% ... %}`.
"""

from __future__ import annotations

from typing import Annotated

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.sandbox
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from kubesft.api.base import MAX_TEMPLATE

TEMPLATE_NAMES = ("auto", "chatml", "llama3")

NAMES_CEL = "[" + ", ".join(f"'{n}'" for n in TEMPLATE_NAMES) + "]"
RULES = [
    {
        "rule": f"self in {NAMES_CEL} || self.contains('{{%') || self.contains('{{{{')",
        "message": f"must be one of {', '.join(TEMPLATE_NAMES)} or inline Jinja "
        "(containing '{%' or '{{')",
    },
    {
        "rule": "self.lastIndexOf('{{') <= self.lastIndexOf('}}') && "
        "self.lastIndexOf('{%') <= self.lastIndexOf('%}')",
        "message": "inline Jinja does not compile: it ends inside an unclosed '{{' or '{%' tag",
    },
]


class _GenerationBlock(jinja2.ext.Extension):
    """Parses `{% generation %}...{% endgeneration %}` (transformers' assistant-mask markers)."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        next(parser.stream)
        body: list[jinja2.nodes.Node] = parser.parse_statements(
            ("name:endgeneration",), drop_needle=True
        )
        return body


_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=[jinja2.ext.loopcontrols, _GenerationBlock],
)


def is_inline(template: str) -> bool:
    return "{%" in template or "{{" in template


def syntax_error(template: str) -> str | None:
    """Why inline Jinja does not compile (with its line), or None when it does."""
    try:
        _ENV.from_string(template)
    except jinja2.TemplateSyntaxError as err:
        return f"{err.message} (line {err.lineno})"
    return None


def _check(value: str) -> str:
    if value in TEMPLATE_NAMES:
        return value
    if not is_inline(value):
        raise PydanticCustomError("kubesft_format", RULES[0]["message"])
    problem = syntax_error(value)
    if problem is not None:
        raise PydanticCustomError(
            "kubesft_format", "inline Jinja does not compile: {problem}", {"problem": problem}
        )
    return value


ChatTemplate = Annotated[
    str,
    Field(
        min_length=1, max_length=MAX_TEMPLATE, json_schema_extra={"x-kubernetes-validations": RULES}
    ),
    AfterValidator(_check),
]
