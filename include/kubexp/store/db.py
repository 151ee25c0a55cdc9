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
    except psycopg.OperationalError as exc:
        where = re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", target)
        raise StoreError(
            f"cannot connect to the results database {where}: {exc}. Set KUBEXP_DATABASE_URL, "
            f"or start the local one with `kubexp services up`."
        ) from exc
