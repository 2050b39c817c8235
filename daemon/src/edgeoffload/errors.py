"""One exception hierarchy for the whole daemon (and the host tools that reuse its pieces).

Messages say what failed, on which input, and what to do. Each surface (CLI, MQTT, HTTP, D-Bus) maps
these once.
"""

from __future__ import annotations

from dataclasses import dataclass


class EdgeOffloadError(Exception):
    """Base of every error edgeoffload raises on purpose."""

    exit_code = 2  # what a command line exits with: 2 = the user's to fix, 1 = a failure elsewhere


@dataclass(frozen=True)
class Problem:
    """One problem found in a file: where it is and what is wrong."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class ConfigError(EdgeOffloadError):
    """A config or policy file (or text) is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            super().__init__(problems)
        else:
            self.problems = list(problems)
            super().__init__("\n".join(str(p) for p in self.problems))


class PolicyInvalidError(ConfigError):
    """A policy (file or text) is invalid; the previous policy stays in force."""


class ModelError(EdgeOffloadError):
    """A model file is missing, unreadable, corrupted, or does not match its manifest."""


class BackendError(EdgeOffloadError):
    """A backend (CPU, NPU, remote) cannot run a request."""


class SensorError(EdgeOffloadError):
    """A power or energy source cannot be read or returned garbage."""


class TransportError(EdgeOffloadError):
    """A network peer (offload endpoint, broker) failed or answered something we cannot use."""


class RequestError(EdgeOffloadError):
    """A client's request is malformed (wrong shape, dtype, size, unknown model): the client's mistake."""


class UnknownModelError(RequestError):
    """A request names a model the daemon does not serve."""


class NotReadyError(EdgeOffloadError):
    """The daemon is starting or stopping and cannot take the request now; try again later."""

    exit_code = 1


class ServiceError(EdgeOffloadError):
    """A call to the running daemon failed for a reason that is not the caller's input (not running, busy)."""

    exit_code = 1
