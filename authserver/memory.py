"""The C allocator of a server process: large buffers go back to the system when they are freed.

Every argon2 hash allocates its memory cost (19 MiB by default) with malloc and frees it
when done. glibc serves a request that large with mmap and unmaps it on free; but the
first such free raises glibc's *dynamic* mmap threshold to the freed size (up to 32 MiB,
and the trim threshold to twice that), so every later 19 MiB buffer is carved from the
heap of the hashing thread's arena instead, and stays resident after it is freed. With
a worker's threads each on its own arena, a burst of logins left each worker about one
buffer per thread bigger, for good (157 and 236 MB resident, against ≈ 95 MB idle).

Setting the thresholds explicitly turns that adjustment off (mallopt(3)): every buffer of
MMAP_THRESHOLD or more is its own mapping, returned to the system by free(). Smaller
allocations, the request path's, are served from the arenas as before.
"""

from __future__ import annotations

import ctypes
import os

# mallopt(3) parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Well below argon2's smallest allowed memory cost (settings.OWASP_ARGON2_MEMORY_KIB, 19 MiB).
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # the ratio glibc's own adjustment keeps


def is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # not a name this platform knows: not glibc
        return False


def release_large_buffers() -> bool:
    """Pin glibc's mmap and trim thresholds in this process (before its first large free, ideally).
    True when set; False where the C library is not glibc, which has no such adjustment to undo."""
    if not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
