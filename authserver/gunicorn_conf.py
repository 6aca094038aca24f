"""gunicorn settings for `authserver serve` (bind and workers come from the command line)."""

from prometheus_client import multiprocess

# The app writes its own JSON access line per request (path only, with the request id).
accesslog = None
timeout = 30
graceful_timeout = 10
keepalive = 5
# No runtime control socket: several servers may run side by side under one user.
control_socket_disable = True

# gunicorn's own messages (start, worker boot and exit) as JSON lines, like the app's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "authserver.logs.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "root": {"level": "WARNING", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        # Off: gunicorn's access line carries the query string, where codes and tokens travel.
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
}


def child_exit(server, worker):
    # Drop a dead worker's live gauges from the shared metrics directory.
    multiprocess.mark_process_dead(worker.pid)
