"""Forward-auth for reverse proxies: "who is this request, and may it pass?"."""

from .views import bp  # noqa: F401
