"""The app configures every ORM mapper when it is created, not lazily on a first query.

The hot paths (API keys, sessions, bearer tokens) build ORM objects from rows without
a query; in a fresh process, several threads serving the first requests at once would
otherwise meet half-configured mappers (an AttributeError, answered as a 500).
"""

import subprocess
import sys

from tests.helpers.servers import subprocess_env

SCRIPT = """
import secrets
from pathlib import Path
import tempfile
from authserver.settings import Settings
from authserver.extensions import db
from authserver import create_app
tmp = Path(tempfile.mkdtemp())
settings = Settings(env="test", instance_path=tmp, issuer="http://localhost",
                    database_url=f"sqlite:///{tmp / 'x.db'}", secret_key=secrets.token_urlsafe(48),
                    master_keys=(secrets.token_bytes(32),), pepper=secrets.token_bytes(32))
create_app(settings)
unconfigured = [m.class_.__name__ for m in db.Model.registry.mappers if not m.configured]
print(",".join(unconfigured) or "ALL-CONFIGURED")
"""


def test_every_mapper_is_configured_by_create_app():
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ALL-CONFIGURED"
