"""A GPIO line driven high for the length of each inference, for an external meter to see (Joulescope GPI).

Uses the kernel's GPIO character device (``/dev/gpiochipN``, uAPI v2 of ``linux/gpio.h``, Linux 5.10+)
with the standard library only: ``GPIO_GET_CHIPINFO_IOCTL`` to check the file and the line number,
``GPIO_V2_GET_LINE_IOCTL`` to request the line as an output (initially low), and
``GPIO_V2_LINE_SET_VALUES_IOCTL`` on the returned line descriptor to set it. The line is released when the
marker is closed (or the process exits); the kernel then leaves it as it was or resets it, per driver.

`NullMarker` is the same API doing nothing, for when no marker is configured.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from edgeoffload.errors import SensorError

log = logging.getLogger(__name__)

# linux/gpio.h sizes and constants
GPIO_MAX_NAME_SIZE = 32
GPIO_V2_LINES_MAX = 64
GPIO_V2_LINE_NUM_ATTRS_MAX = 10
GPIO_V2_LINE_FLAG_OUTPUT = 1 << 3
GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES = 2

# struct layouts ('=': native byte order, standard sizes, no implicit padding: the kernel's padding
# fields are spelled out, exactly as in linux/gpio.h)
CHIPINFO = struct.Struct("=32s32sI")  # struct gpiochip_info: name, label, lines (68 bytes)
_ATTRIBUTE = "IIQ"  # struct gpio_v2_line_attribute: id, padding, union {flags, values, debounce_period_us}
_CONFIG_ATTRIBUTE = _ATTRIBUTE + "Q"  # struct gpio_v2_line_config_attribute: attr, mask
_CONFIG = "QI5I" + _CONFIG_ATTRIBUTE * GPIO_V2_LINE_NUM_ATTRS_MAX  # gpio_v2_line_config: flags, num_attrs, ...
LINE_REQUEST = struct.Struct(f"={GPIO_V2_LINES_MAX}I{GPIO_MAX_NAME_SIZE}s{_CONFIG}II5Ii")  # 592 bytes
LINE_VALUES = struct.Struct("=QQ")  # struct gpio_v2_line_values: bits, mask (16 bytes)
REQUEST_FD_OFFSET = LINE_REQUEST.size - 4  # gpio_v2_line_request.fd, filled in by the kernel

_IOC_WRITE, _IOC_READ = 1, 2


def ioc(direction: int, kind: int, number: int, size: int) -> int:
    """The kernel's _IOC(dir, type, nr, size) for the generic layout (x86, arm, arm64, riscv)."""
    return (direction << 30) | (size << 16) | (kind << 8) | number


GPIO_GET_CHIPINFO_IOCTL = ioc(_IOC_READ, 0xB4, 0x01, CHIPINFO.size)
GPIO_V2_GET_LINE_IOCTL = ioc(_IOC_READ | _IOC_WRITE, 0xB4, 0x07, LINE_REQUEST.size)
GPIO_V2_LINE_SET_VALUES_IOCTL = ioc(_IOC_READ | _IOC_WRITE, 0xB4, 0x0F, LINE_VALUES.size)


def pack_line_request(line: int, consumer: str) -> bytearray:
    """A gpio_v2_line_request for one output line, initially low."""
    label = consumer.encode()
    if len(label) >= GPIO_MAX_NAME_SIZE:
        raise SensorError(f"GPIO consumer label {consumer!r} is {len(label)} bytes; the kernel takes at most "
                          f"{GPIO_MAX_NAME_SIZE - 1}: use a shorter one")
    offsets = [line] + [0] * (GPIO_V2_LINES_MAX - 1)
    # attrs[0]: output value 0 for line bit 0; the other nine attributes unused (zero)
    attrs = [GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES, 0, 0, 1] + [0] * 4 * (GPIO_V2_LINE_NUM_ATTRS_MAX - 1)
    config = [GPIO_V2_LINE_FLAG_OUTPUT, 1, *[0] * 5, *attrs]
    tail = [1, 0, *[0] * 5, 0]  # num_lines, event_buffer_size, padding[5], fd
    return bytearray(LINE_REQUEST.pack(*offsets, label, *config, *tail))


class GpioMarker:
    """Drives `line` of `chip_path` high inside `mark()`; raises SensorError naming the chip on failure."""

    active = True

    def __init__(self, chip_path: str | os.PathLike[str], line: int, consumer: str = "edgeoffloadd"):
        self.chip_path = str(chip_path)
        self.line = line
        if not isinstance(line, int) or line < 0:
            raise SensorError(f"GPIO line {line!r} on {self.chip_path}: a line is a number from 0")
        request = pack_line_request(line, consumer)
        chip_fd = self._open_chip()
        try:
            lines = self._chip_lines(chip_fd)
            if line >= lines:
                raise SensorError(f"GPIO line {line} does not exist on {self.chip_path}: it has lines "
                                  f"0..{lines - 1} (see gpioinfo)")
            self._ioctl(chip_fd, GPIO_V2_GET_LINE_IOCTL, request, "request the line as an output")
        finally:
            os.close(chip_fd)
        self._fd: int | None = struct.unpack_from("=i", request, REQUEST_FD_OFFSET)[0]
        self.failures = 0
        log.info("GPIO marker on %s line %d (consumer %s)", self.chip_path, line, consumer)

    def set(self, high: bool) -> None:
        """Drive the line high (True) or low (False)."""
        if self._fd is None:
            raise SensorError(f"GPIO marker on {self.chip_path} line {self.line} is closed")
        values = bytearray(LINE_VALUES.pack(1 if high else 0, 1))
        self._ioctl(self._fd, GPIO_V2_LINE_SET_VALUES_IOCTL, values, f"set the line {'high' if high else 'low'}")

    @contextmanager
    def mark(self) -> Iterator[bool]:
        """High for the duration of the `with` block, low after it (also when it raises). Yields whether the
        line went high: a marker that fails is logged and the request runs unmarked (never fails because
        of it)."""
        try:
            self.set(True)
        except SensorError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 1000 == 0:
                log.warning("%s (%d times): requests run unmarked", exc, self.failures)
            yield False
            return
        try:
            yield True
        finally:
            try:
                self.set(False)
            except SensorError as exc:
                self.failures += 1
                log.warning("%s: the line may stay high", exc)

    def close(self) -> None:
        """Release the line (safe to call twice)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open_chip(self) -> int:
        try:
            return os.open(self.chip_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            hint = ("add the daemon's user to the group owning it (often 'gpio')" if exc.errno == errno.EACCES
                    else "check the configured chip path (ls /dev/gpiochip*)")
            raise SensorError(f"cannot open GPIO chip {self.chip_path}: {exc.strerror}: {hint}") from exc

    def _chip_lines(self, chip_fd: int) -> int:
        info = bytearray(CHIPINFO.size)
        try:
            fcntl.ioctl(chip_fd, GPIO_GET_CHIPINFO_IOCTL, info)
        except OSError as exc:
            raise SensorError(f"{self.chip_path} is not a GPIO character device (GPIO_GET_CHIPINFO_IOCTL "
                              f"failed: {exc.strerror}): give a /dev/gpiochipN path") from exc
        return CHIPINFO.unpack(info)[2]

    def _ioctl(self, fd: int, request: int, buffer: bytearray, what: str) -> None:
        try:
            fcntl.ioctl(fd, request, buffer)
        except OSError as exc:
            hint = {errno.EBUSY: ": another program holds this line (see gpioinfo)",
                    errno.ENOTTY: ": the kernel lacks the GPIO uAPI v2 (Linux 5.10+)"}.get(exc.errno, "")
            raise SensorError(f"GPIO {self.chip_path} line {self.line}: cannot {what}: {exc.strerror}{hint}") from exc


class MarkerSettings(Protocol):
    """The daemon config's ``gpio_marker:`` section."""

    chip: str | os.PathLike[str]
    line: int


def create_marker(settings: MarkerSettings | None) -> GpioMarker | NullMarker:
    """The marker the config asks for: a `GpioMarker`, or a `NullMarker` when the section is absent.
    A line that cannot be had is a SensorError (the daemon does not start without the marker it was asked for)."""
    if settings is None:
        return NullMarker()
    return GpioMarker(settings.chip, settings.line)


class NullMarker:
    """No marker configured: `mark()` does nothing."""

    active = False

    @contextmanager
    def mark(self) -> Iterator[bool]:
        yield False

    def set(self, high: bool) -> None:
        pass

    def close(self) -> None:
        pass
