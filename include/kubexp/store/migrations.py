"""Schema migrations: sql/NNNN_name.sql applied once each in order, sql/views/*.sql re-applied when changed.

A table `schema_migration` records what ran (with a checksum); a session advisory lock makes two
upgraders queue instead of racing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import psycopg

from kubexp import settings
from kubexp.store import db

log = logging.getLogger(__name__)

# pg_advisory_lock key: "kubexp" in ASCII, so no other application is likely to collide.
UPGRADE_LOCK_KEY = 0x6B7562657870
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migration (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('migration', 'view')),
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(db.StoreError):
    """The sql/ folder and the database disagree (the message names the file)."""


def migration_files(sql_dir: Path = settings.SQL_DIR) -> list[Path]:
    """The numbered migrations in order; refuses badly named or duplicate-numbered files."""
    files = sorted(sql_dir.glob("*.sql"))
    seen: dict[str, Path] = {}
    for path in files:
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files must be named NNNN_lowercase_name.sql")
        if match.group(1) in seen:
            raise MigrationError(f"{path} and {seen[match.group(1)]} share the number {match.group(1)}; renumber one")
        seen[match.group(1)] = path
    return files


def view_files(sql_dir: Path = settings.SQL_DIR) -> list[Path]:
    return sorted((sql_dir / "views").glob("*.sql"))


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade(url: str, sql_dir: Path = settings.SQL_DIR) -> list[str]:
    """Apply what has not run yet; returns the names applied (empty when up to date). Idempotent."""
    applied_now: list[str] = []
    with db.connect(url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK_KEY,))
        try:
            conn.execute(_VERSION_TABLE)
            recorded: dict[str, str] = dict(conn.execute("SELECT name, checksum FROM schema_migration").fetchall())
            for path in migration_files(sql_dir):
                text = path.read_text()
                name = path.stem
                if name in recorded:
                    if recorded[name] != _checksum(text):
                        raise MigrationError(
                            f"{path} changed after it was applied to this database; never edit an applied "
                            f"migration, add a new numbered file instead"
                        )
                    continue
                _apply(conn, name, "migration", text)
                applied_now.append(name)
            for path in view_files(sql_dir):
                text = path.read_text()
                name = f"views/{path.stem}"
                if recorded.get(name) == _checksum(text) and not applied_now:
                    continue
                _apply(conn, name, "view", text)
                applied_now.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK_KEY,))
    for name in applied_now:
        log.info("applied %s", name)
    return applied_now


def _apply(conn: psycopg.Connection, name: str, kind: str, text: str) -> None:
    with conn.transaction():
        conn.execute(text)  # a whole file of DDL; no parameters, so psycopg sends it as one simple query
        conn.execute(
            "INSERT INTO schema_migration (name, kind, checksum) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()",
            (name, kind, _checksum(text)),
        )


def applied(url: str) -> list[str]:
    """Names recorded in the version table, oldest first (empty for a fresh database)."""
    with db.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migration')").fetchone()
        if not exists or exists[0] is None:
            return []
        return [row[0] for row in conn.execute("SELECT name FROM schema_migration ORDER BY applied_at, name")]
