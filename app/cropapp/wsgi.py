"""WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py cropapp.wsgi:app`."""

from cropapp import create_app

app = create_app()
