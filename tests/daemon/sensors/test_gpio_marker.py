"""The GPIO marker: linux/gpio.h uAPI v2 structs and ioctl numbers, errors on files that are not chips."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeoffload.errors import SensorError
from edgeoffload.sensors import gpio_marker
from edgeoffload.sensors.gpio_marker import GpioMarker, NullMarker, create_marker, pack_line_request


def iowr(kind: int, number: int, size: int) -> int:
    """_IOWR from asm-generic/ioctl.h: dir (read|write = 3) in bits 30-31, size 16-29, type 8-15, nr 0-7."""
    return (3 << 30) | (size << 16) | (kind << 8) | number


# sizes of the documented structs (linux/gpio.h, checked with pahole on x86_64 and arm64)
SIZEOF_GPIO_V2_LINE_REQUEST = 592
SIZEOF_GPIO_V2_LINE_VALUES = 16
SIZEOF_GPIOCHIP_INFO = 68


def test_ioctl_numbers_are_the_kernels():
    assert gpio_marker.GPIO_V2_GET_LINE_IOCTL == iowr(0xB4, 0x07, SIZEOF_GPIO_V2_LINE_REQUEST) == 0xC250B407
    assert gpio_marker.GPIO_V2_LINE_SET_VALUES_IOCTL == iowr(0xB4, 0x0F, SIZEOF_GPIO_V2_LINE_VALUES) == 0xC010B40F
    assert gpio_marker.GPIO_GET_CHIPINFO_IOCTL == (2 << 30) | (SIZEOF_GPIOCHIP_INFO << 16) | (0xB4 << 8) | 0x01


def test_struct_sizes_match_linux_gpio_h():
    assert gpio_marker.LINE_REQUEST.size == SIZEOF_GPIO_V2_LINE_REQUEST
    assert gpio_marker.LINE_VALUES.size == SIZEOF_GPIO_V2_LINE_VALUES
    assert gpio_marker.CHIPINFO.size == SIZEOF_GPIOCHIP_INFO


def test_a_line_request_asks_for_one_output_line_initially_low():
    request = pack_line_request(17, "edgeoffloadd")
    assert len(request) == 592
    # field offsets in struct gpio_v2_line_request, worked out from linux/gpio.h by hand:
    # offsets[64] u32 @0, consumer[32] @256, config @288 {flags u64 @288, num_attrs u32 @296, padding[5] @300,
    # attrs[10] of 24 bytes @320 {id u32, padding u32, value u64, mask u64}}, num_lines u32 @560,
    # event_buffer_size u32 @564, padding[5] @568, fd s32 @588
    u32 = lambda offset: struct.unpack_from("=I", request, offset)[0]  # noqa: E731
    u64 = lambda offset: struct.unpack_from("=Q", request, offset)[0]  # noqa: E731
    assert u32(0) == 17 and all(u32(4 * i) == 0 for i in range(1, 64))
    assert request[256:288] == b"edgeoffloadd" + bytes(20)
    assert u64(288) == 1 << 3  # GPIO_V2_LINE_FLAG_OUTPUT
    assert u32(296) == 1
    assert (u32(320), u64(328), u64(336)) == (2, 0, 1)  # GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES: line 0 of mask low
    assert request[344:560] == bytes(216)  # the other nine attributes unused
    assert (u32(560), u32(564), request[568:588], struct.unpack_from("=i", request, 588)[0]) == (1, 0, bytes(20), 0)
    assert gpio_marker.REQUEST_FD_OFFSET == 588


def test_a_consumer_label_the_kernel_would_cut_is_refused():
    with pytest.raises(SensorError, match="GPIO consumer label 'x{32}' is 32 bytes; the kernel takes at most 31"):
        pack_line_request(0, "x" * 32)


def test_a_file_that_is_not_a_gpio_chip_is_named(tmp_path):
    plain = tmp_path / "gpiochip0"
    plain.write_bytes(b"not a chip")
    with pytest.raises(SensorError) as caught:
        GpioMarker(plain, 3)
    assert str(caught.value) == (f"{plain} is not a GPIO character device (GPIO_GET_CHIPINFO_IOCTL failed: "
                                 "Inappropriate ioctl for device): give a /dev/gpiochipN path")


def test_a_character_device_that_is_not_a_gpio_chip_is_named():
    with pytest.raises(SensorError, match="^/dev/null is not a GPIO character device"):
        GpioMarker("/dev/null", 0)


def test_a_missing_chip_is_named(tmp_path):
    with pytest.raises(SensorError) as caught:
        GpioMarker(tmp_path / "gpiochip9", 0)
    assert str(caught.value) == (f"cannot open GPIO chip {tmp_path / 'gpiochip9'}: No such file or directory: "
                                 "check the configured chip path (ls /dev/gpiochip*)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file")
def test_a_chip_we_may_not_open_says_how_to_fix_it(tmp_path):
    locked = tmp_path / "gpiochip0"
    locked.write_bytes(b"")
    locked.chmod(0)
    with pytest.raises(SensorError, match="Permission denied: add the daemon's user to the group owning it"):
        GpioMarker(locked, 0)


def test_a_negative_line_is_refused():
    with pytest.raises(SensorError, match="GPIO line -1 on /dev/gpiochip0: a line is a number from 0"):
        GpioMarker("/dev/gpiochip0", -1)


def test_the_null_marker_has_the_same_api_and_does_nothing():
    marker = NullMarker()
    assert marker.active is False and GpioMarker.active is True
    with marker.mark():
        pass
    with pytest.raises(RuntimeError):
        with marker.mark():
            raise RuntimeError("the request failed")  # mark() lets errors through, as GpioMarker's does
    marker.close()


@pytest.mark.hw
def test_the_marker_drives_a_real_line():
    """On the board: EDGEOFFLOAD_GPIO_CHIP=/dev/gpiochipN EDGEOFFLOAD_GPIO_LINE=M (a free line, e.g. wired to
    the Joulescope's GPI0). While we hold the line a second request is refused; after close() it is free."""
    chip, line = os.environ.get("EDGEOFFLOAD_GPIO_CHIP"), os.environ.get("EDGEOFFLOAD_GPIO_LINE")
    if not chip or line is None:
        pytest.skip("set EDGEOFFLOAD_GPIO_CHIP and EDGEOFFLOAD_GPIO_LINE to a free line")
    marker = GpioMarker(chip, int(line))
    try:
        with pytest.raises(SensorError, match="another program holds this line"):
            GpioMarker(chip, int(line), consumer="second")
        for _ in range(3):
            with marker.mark():
                pass
    finally:
        marker.close()
    GpioMarker(chip, int(line)).close()  # released: it can be requested again
    with pytest.raises(SensorError, match="is closed"):
        marker.set(True)


def test_create_marker_follows_the_config(tmp_path):
    assert isinstance(create_marker(None), NullMarker)

    @dataclass(frozen=True)
    class Section:
        chip: Path
        line: int

    with pytest.raises(SensorError, match=f"^cannot open GPIO chip {tmp_path / 'gpiochip0'}: No such file"):
        create_marker(Section(tmp_path / "gpiochip0", 4))


def test_a_marker_that_fails_mid_run_lets_the_request_run_unmarked(caplog):
    """A line that can no longer be set (here: released; on a board, a chip that went away) must not fail
    the request it marks: mark() yields False, logs once, and counts."""
    marker = GpioMarker.__new__(GpioMarker)  # a real GpioMarker whose line was released: no chip needed
    marker.chip_path, marker.line, marker._fd, marker.failures = "/dev/gpiochip9", 4, None, 0
    ran = []
    for _ in range(3):
        with marker.mark() as marked:
            ran.append(marked)
    assert ran == [False, False, False] and marker.failures == 3
    warnings = [r.getMessage() for r in caplog.records if "requests run unmarked" in r.getMessage()]
    assert warnings == ["GPIO marker on /dev/gpiochip9 line 4 is closed (1 times): requests run unmarked"]
    with NullMarker().mark() as marked:
        assert marked is False
