"""The experiment store in PostgreSQL: schema migrations, suites, selection, attempts, ingest, status.

Every function takes an open connection (`db.connect()`, autocommit) and runs its writes in one
transaction of its own, so a caller never sees half a change.
"""
