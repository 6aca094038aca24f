"""argon2's buffers go back to the system after a hash (authserver/memory.py, called by each server worker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from authserver import memory, server
from tests.helpers.servers import ROOT

# 20 hashes at the production cost (19 MiB) on 4 threads, after the server's start-up hook, in a
# fresh interpreter, with AT_ONCE hashes allowed to run together; prints how much more is
# resident afterwards and how much more was resident at the peak, in MiB.
HASHES_ON_FOUR_THREADS = textwrap.dedent("""
    import re, sys, threading
    from authserver.memory import release_large_buffers
    assert release_large_buffers()
    from authserver.crypto import PasswordHasher
    from authserver.settings import OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST

    def mib(field):
        status = open("/proc/self/status").read()
        return int(re.search(rf"^{field}:\\s+(\\d+) kB", status, re.MULTILINE).group(1)) / 1024

    # its dummy hash: a first free
    hasher = PasswordHasher(OWASP_ARGON2_TIME_COST, OWASP_ARGON2_MEMORY_KIB, 1, int(sys.argv[1]))
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak (VmHWM) starts again from what is resident now
    before = mib("VmRSS")

    def five_hashes():
        for _ in range(5):
            hasher.hash("a password")

    threads = [threading.Thread(target=five_hashes) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(mib("VmRSS") - before, mib("VmHWM") - before)
""")


def hashes_on_four_threads(at_once: int) -> tuple[float, float]:
    """(MiB more resident after, MiB more at the peak) for 20 hashes on 4 threads, `at_once` at a time."""
    done = subprocess.run([sys.executable, "-c", HASHES_ON_FOUR_THREADS, str(at_once)], cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120, check=True)
    grown, peak = (float(figure) for figure in done.stdout.split())
    return grown, peak


@pytest.mark.skipif(not memory.is_glibc() or not Path("/proc/self/status").exists(), reason="glibc on Linux only")
def test_hash_buffers_are_given_back_after_hashes_on_several_threads():
    # Without the thresholds pinned, each thread's arena keeps a 19 MiB buffer: ≈ 76 MiB more.
    grown, peak = hashes_on_four_threads(at_once=4)
    assert grown < 10, f"{grown:.1f} MiB more resident after 20 hashes on 4 threads"
    assert peak > 40, f"four hashes at once should have held about four buffers; the peak grew {peak:.1f} MiB"


@pytest.mark.skipif(not memory.is_glibc() or not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_hashes_wait_their_turn_so_a_burst_holds_one_buffer_per_allowed_hash():
    # Four threads hashing together hold four 19 MiB buffers at the peak; one at a time, one.
    grown, peak = hashes_on_four_threads(at_once=1)
    assert peak < 19 + 10, f"the peak grew {peak:.1f} MiB with one hash at a time"
    assert grown < 10


def test_a_hash_and_a_verification_take_turns():
    from authserver.crypto import PasswordHasher

    hasher = PasswordHasher(2, 8 * 1024, 1, at_once=2)
    stored = hasher.hash("a password")
    assert hasher._turns.acquire(blocking=False) and hasher._turns.acquire(blocking=False)  # both turns taken
    finished = []
    waiting = threading.Thread(target=lambda: finished.append(hasher.verify(stored, "a password")))
    waiting.start()
    waiting.join(0.5)
    assert finished == [], "a verification ran while every turn was taken"
    hasher._turns.release()
    waiting.join(10)
    assert finished == [True]
    hasher._turns.release()


def test_each_worker_sets_up_the_allocator_before_it_builds_the_app(monkeypatch):
    calls = []
    monkeypatch.setattr(server, "release_large_buffers", lambda: calls.append("allocator"))
    monkeypatch.setattr(server, "make_app", lambda: calls.append("app") or "the app")
    assert server.create_app() == "the app"
    assert calls == ["allocator", "app"]
    assert server.build("127.0.0.1", 5000, 2, 4).target == "authserver.server:create_app"
