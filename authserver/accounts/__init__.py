from .views import bp  # noqa: F401
