"""argon2's buffers go back to the system after a hash (authserver/memory.py, called by each server worker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from authserver import memory, server
from tests.helpers.servers import ROOT

# 20 hashes at the production cost (19 MiB) on 4 threads, after the server's start-up hook, in a
# fresh interpreter; prints how much more is resident afterwards, in MiB.
HASHES_ON_FOUR_THREADS = textwrap.dedent("""
    import re, threading
    from authserver.memory import release_large_buffers
    assert release_large_buffers()
    from authserver.crypto import PasswordHasher
    from authserver.settings import OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST

    def resident_mib():
        status = open("/proc/self/status").read()
        return int(re.search(r"^VmRSS:\\s+(\\d+) kB", status, re.MULTILINE).group(1)) / 1024

    hasher = PasswordHasher(OWASP_ARGON2_TIME_COST, OWASP_ARGON2_MEMORY_KIB, 1)  # its dummy hash: a first free
    before = resident_mib()

    def five_hashes():
        for _ in range(5):
            hasher.hash("a password")

    threads = [threading.Thread(target=five_hashes) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(resident_mib() - before)
""")


@pytest.mark.skipif(not memory.is_glibc() or not Path("/proc/self/status").exists(), reason="glibc on Linux only")
def test_hash_buffers_are_given_back_after_hashes_on_several_threads():
    # Without the thresholds pinned, each thread's arena keeps a 19 MiB buffer: ≈ 76 MiB more.
    done = subprocess.run([sys.executable, "-c", HASHES_ON_FOUR_THREADS], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, check=True)
    grown = float(done.stdout.strip())
    assert grown < 10, f"{grown:.1f} MiB more resident after 20 hashes on 4 threads"


def test_each_worker_sets_up_the_allocator_before_it_builds_the_app(monkeypatch):
    calls = []
    monkeypatch.setattr(server, "release_large_buffers", lambda: calls.append("allocator"))
    monkeypatch.setattr(server, "make_app", lambda: calls.append("app") or "the app")
    assert server.create_app() == "the app"
    assert calls == ["allocator", "app"]
    assert server.build("127.0.0.1", 5000, 2, 4).target == "authserver.server:create_app"
