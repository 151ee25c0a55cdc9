"""Command templates: argument lists with `{name}` placeholders, filled element by element.

A placeholder is replaced inside one argument and never splits or joins arguments, so a
value such as `x; rm -rf /` stays one literal argument. Only where a remote shell is
unavoidable (SSH) is the list joined, with every element passed through shlex.quote.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class PlaceholderError(ValueError):
    """A command template names a placeholder that has no value."""


def fill(template: Sequence[str], values: Mapping[str, object], where: str = "command") -> list[str]:
    """The template with each `{name}` replaced by str(values[name]); unknown names are an error."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise PlaceholderError(
                f"{where}: placeholder {{{name}}} is unknown; known placeholders: {', '.join(sorted(values))}"
            )
        return str(values[name])

    return [_PLACEHOLDER.sub(one, str(part)) for part in template]


def shell_line(argv: Sequence[str]) -> str:
    """One command line for a remote POSIX shell that runs exactly `argv`."""
    if not argv:
        raise ValueError("empty command")
    return " ".join(shlex.quote(str(part)) for part in argv)
