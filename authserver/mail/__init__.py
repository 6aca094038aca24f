"""Mail over SMTP: the outbox and its worker, single-use links, and the pages links lead to."""

from . import views  # noqa: F401  (attach the routes to bp)
from .views import bp  # noqa: F401
