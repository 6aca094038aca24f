"""gunicorn settings for `authserver serve`."""

from prometheus_client import multiprocess

accesslog = None
timeout = 30
graceful_timeout = 10
keepalive = 5


def child_exit(server, worker):
    # Drop a dead worker's live gauges from the shared metrics directory.
    multiprocess.mark_process_dead(worker.pid)
