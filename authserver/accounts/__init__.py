"""Users, the SSO session, the password login and its second step, the account pages."""

from . import login_views, views  # noqa: F401  (attach the routes to bp)
from .blueprint import bp  # noqa: F401
