"""The D-Bus surface's pure parts: error names (mapped once) and the Decision signal's rate limit."""

import pytest

from edgeoffload.api.dbus import ERROR_PREFIX, RateLimit, error_name
from edgeoffload.errors import (
    BackendError, ConfigError, ModelError, NotReadyError, PolicyInvalidError, RequestError, ServiceError,
    TransportError, UnknownModelError,
)


@pytest.mark.parametrize("exc, name", [
    (UnknownModelError("x"), "UnknownModel"),
    (RequestError("x"), "InvalidArgument"),
    (PolicyInvalidError("x"), "PolicyInvalid"),
    (ConfigError("x"), "ConfigInvalid"),
    (NotReadyError("x"), "NotReady"),
    (BackendError("x"), "BackendUnavailable"),
    (TransportError("x"), "BackendUnavailable"),
    (ServiceError("x"), "Failed"),
    (ModelError("x"), "Failed"),
    (ValueError("x"), "Failed"),
])
def test_each_error_maps_to_one_name(exc, name):
    assert error_name(exc) == ERROR_PREFIX + name


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_rate_limit_passes_a_burst_then_the_rate_and_counts_what_it_dropped():
    clock = Clock()
    limit = RateLimit(2.0, clock=clock)
    assert [limit.take() for _ in range(5)] == [0, 0, None, None, None]
    clock.t += 0.5  # one token back
    assert limit.take() == 3
    assert limit.take() is None
    clock.t += 10  # refills to the burst, not beyond
    assert [limit.take() for _ in range(3)] == [1, 0, None]


def test_rate_zero_signals_nothing():
    limit = RateLimit(0.0, clock=Clock())
    assert [limit.take() for _ in range(3)] == [None, None, None]
