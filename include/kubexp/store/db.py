"""Connections to the results database."""

from __future__ import annotations

import re

import psycopg

from kubexp import settings


class StoreError(RuntimeError):
    """A store operation refused because it would break a rule (the message says which and why)."""


def libpq_url(url: str) -> str:
    """A libpq URL from a libpq or SQLAlchemy URL (`postgresql+psycopg2://` -> `postgresql://`)."""
    return re.sub(r"^(postgres(?:ql)?)\+[a-z0-9_]+://", r"\1://", url)


def connect(url: str | None = None) -> psycopg.Connection:
    """An autocommit connection to the results database (default: `settings.database_url()`)."""
    target = libpq_url(url or settings.database_url())
    try:
        return psycopg.connect(target, autocommit=True, connect_timeout=10, application_name="kubexp")
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        raise StoreError(
            f"cannot connect to the results database {masked(target)}: {masked(str(exc))}. Set "
            f"KUBEXP_DATABASE_URL, or start the local one with `kubexp services up`."
        ) from None


# user:password@ in a URL; password=... as a URL parameter or libpq key=value (quoted or not, maybe unterminated)
_PASSWORDS = re.compile(r"(//[^:@/\s]+:)[^@/\s]*(@)|(\bpassword\s*=\s*)('(?:\\.|[^'\\])*'?|[^\s&]+)", re.IGNORECASE)


def masked(text: str) -> str:
    """The text with every database password in it replaced by ***."""
    return _PASSWORDS.sub(lambda m: f"{m[1]}***{m[2]}" if m[1] else f"{m[3]}***", text)
