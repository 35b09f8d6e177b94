"""Linux kernel AIO (`io_setup`, `io_submit`, `io_getevents`) through ctypes, for the intake journal.

Why: the journal makes each frame durable with one `O_DIRECT | O_DSYNC` write. Issued from a writer
thread, every frame costs about ten context switches between the event-loop thread and the writer
(the hand-off, the GIL both ways, the completion) on the core that also answers HTTP. With kernel AIO
the loop submits the write itself and hears of its completion through an eventfd it polls anyway;
the flush that `O_DSYNC` implies runs in the kernel's completion worker. The event is delivered only
after that flush, so a completion means "durable", exactly as a returned `pwrite` did.

Why not a library: `caio` takes only `bytes` objects (their memory is not block-aligned, which
`O_DIRECT` refuses) and `python-libaio` needs the system's `libaio.so.1`, which slim images and PaaS
stacks lack. The ABI is four syscalls and two structs, fixed since Linux 2.6
(`include/uapi/linux/aio_abi.h`); only little-endian x86-64 and arm64 are wired here. Anything else —
another OS, a seccomp filter refusing `io_setup`, `fs.aio-max-nr` exhausted — raises `OSError` from
`AioContext()`, and the journal writes from a thread instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import platform

# Syscall numbers: x86-64's own table, and the generic table arm64 uses.
_SYSCALLS = {
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "arm64": (0, 1, 4, 2),
}
_IOCB_CMD_PWRITE = 1
_IOCB_FLAG_RESFD = 1  # signal the eventfd in aio_resfd on completion
_RWF_DSYNC = 2  # per-write O_DSYNC: durable even if the fd was opened without it


class _Iocb(ctypes.Structure):
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),  # little-endian order of the key / rw_flags pair
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


def _syscall_numbers() -> tuple[int, int, int, int]:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None or os.uname().sysname != "Linux":
        raise OSError(errno.ENOSYS, f"kernel AIO is not wired for {platform.machine()}")
    return numbers


class AioContext:
    """One kernel AIO context with an eventfd that becomes readable when writes complete.

    Used from one thread (the event loop's). Each submitted write carries an integer ``tag`` that
    comes back with its result: the byte count, or a negative errno.
    """

    def __init__(self, max_events: int = 8) -> None:
        self._setup, self._destroy, self._getevents, self._submit = _syscall_numbers()
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._call = self._libc.syscall
        self._call.restype = ctypes.c_long
        self._ctx = ctypes.c_ulong(0)
        self._check(self._call(self._setup, max_events, ctypes.byref(self._ctx)))
        try:
            self.fileno = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            self._call(self._destroy, self._ctx)
            raise
        self._events = (_IoEvent * max_events)()
        self._iocb = _Iocb()  # the kernel copies it at submit time: one is enough
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._iocb))
        # The buffer of each write in flight, kept exported so it can be neither freed nor resized
        # under the kernel's feet (mmap.close() raises BufferError while an export is alive).
        self._pinned: dict[int, ctypes.c_char] = {}

    @property
    def in_flight(self) -> int:
        return len(self._pinned)

    def submit_write(self, fd: int, buffer: mmap.mmap, nbytes: int, offset: int, tag: int) -> None:
        """Start a durable write of ``buffer[:nbytes]`` at ``offset`` (``O_DIRECT``: all aligned)."""
        if tag in self._pinned:
            raise ValueError(f"a write tagged {tag} is already in flight")
        anchor = ctypes.c_char.from_buffer(buffer)
        iocb = self._iocb
        ctypes.memset(ctypes.byref(iocb), 0, ctypes.sizeof(iocb))
        iocb.aio_data = tag
        iocb.aio_rw_flags = _RWF_DSYNC
        iocb.aio_lio_opcode = _IOCB_CMD_PWRITE
        iocb.aio_fildes = fd
        iocb.aio_buf = ctypes.addressof(anchor)
        iocb.aio_nbytes = nbytes
        iocb.aio_offset = offset
        iocb.aio_flags = _IOCB_FLAG_RESFD
        iocb.aio_resfd = self.fileno
        self._check(self._call(self._submit, self._ctx, 1, self._iocbs))
        self._pinned[tag] = anchor

    def completions(self, wait_for: int = 0) -> list[tuple[int, int]]:
        """``(tag, result)`` of finished writes; blocks until at least ``wait_for`` have finished."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fileno, 8)  # reset the counter; the events themselves are read below
        count = self._check(
            self._call(self._getevents, self._ctx, wait_for, len(self._events), self._events, None)
        )
        done: list[tuple[int, int]] = []
        for event in self._events[:count]:
            self._pinned.pop(event.data, None)
            done.append((event.data, event.res))
        return done

    def close(self) -> None:
        """Wait for writes still in flight, then free the context (their results are dropped)."""
        while self._pinned:
            self.completions(wait_for=1)
        os.close(self.fileno)
        self._call(self._destroy, self._ctx)

    def _check(self, result: int) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result
