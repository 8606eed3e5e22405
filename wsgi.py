"""WSGI entry point: `gunicorn wsgi:app` or `flask --app wsgi ...`."""

import os

from config import CONFIGS
from engage import create_app

_env = os.environ.get("ENGAGE_ENV", "development")
if _env not in CONFIGS:  # a typo must not fall back to the development settings
    raise RuntimeError(f"ENGAGE_ENV must be {' or '.join(CONFIGS)}, not {_env!r}"
                       + (" (the test settings serve only the test suite)" if _env == "testing" else ""))
app = create_app(CONFIGS[_env])
