"""WSGI entry point: `gunicorn wsgi:app` or `flask --app wsgi ...`."""

import os

from config import CONFIGS
from engage import create_app

app = create_app(CONFIGS[os.environ.get("ENGAGE_ENV", "development")])
