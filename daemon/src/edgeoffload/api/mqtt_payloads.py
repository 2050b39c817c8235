"""MQTT payloads and names: the JSON envelope every message carries, topics, client ids, the password.

Pure helpers shared by the reporter (and anything that reads its messages).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeoffload.errors import ConfigError

SCHEMA_VERSION = 1
TOPIC_ROOT = "edgeoffload/v1"
CREDENTIAL_NAME = "mqtt_password"
"""File name of the password in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=mqtt_password:...``)."""


def utc_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z`` suffix: ``2024-05-01T12:00:00.123Z``."""
    now = datetime.now(timezone.utc) if now is None else now.astimezone(timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_ready(value: Any) -> Any:
    """``value`` converted to what ``json.dumps(..., allow_nan=False)`` accepts; never raises.

    numpy scalars and arrays become Python numbers and lists, NaN and infinities become ``None``,
    dataclasses and mappings become objects, enums their value, datetimes ISO strings; anything else
    becomes ``str(value)``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return json_ready(value.value)
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return utc_timestamp(value) if value.tzinfo else value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist):
        try:
            converted = tolist()
        except Exception:  # noqa: BLE001 - a foreign object's tolist may fail in any way
            return str(value)
        if converted is not value:
            return json_ready(converted)
    return str(value)


def envelope(payload: Any, device_id: str, boot_id: str, now: datetime | None = None) -> dict[str, Any]:
    """A new JSON-ready dict: ``payload`` plus ``schema``, ``device_id``, ``boot_id``, ``timestamp_utc`` where absent.

    A payload that is not an object (after conversion) is wrapped as ``{"value": ...}``. The caller's
    payload is never modified.
    """
    body = json_ready(payload)
    if not isinstance(body, dict):
        body = {"value": body}
    body.setdefault("schema", SCHEMA_VERSION)
    body.setdefault("device_id", device_id)
    body.setdefault("boot_id", boot_id)
    body.setdefault("timestamp_utc", utc_timestamp(now))
    return body


def encode(payload: Any, device_id: str, boot_id: str, now: datetime | None = None) -> bytes:
    """The enveloped payload as compact UTF-8 JSON."""
    body = envelope(payload, device_id, boot_id, now)
    return json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode("utf-8")


def availability_payload(state: str, device_id: str, boot_id: str, now: datetime | None = None) -> dict[str, Any]:
    """``{"schema", "state", "device_id", "boot_id", "timestamp_utc"}`` for ``online``/``offline``/``stopped``."""
    return envelope({"schema": SCHEMA_VERSION, "state": state}, device_id, boot_id, now)


def default_client_id(device_id: str, boot_id: str) -> str:
    """Unique per boot, so a restarted daemon never kicks a half-dead session of itself off the broker."""
    return f"edgeoffload-{device_id}-{boot_id[:8]}"


def device_topic(device_id: str, subtopic: str) -> str:
    """``edgeoffload/v1/<device_id>/<subtopic>``."""
    return f"{TOPIC_ROOT}/{device_id}/{subtopic}"


def resolve_password(password_file: str | os.PathLike[str] | None,
                     environ: Mapping[str, str] | None = None) -> str | None:
    """The broker password: from ``password_file``, else from the systemd credential, else ``None``.

    One trailing line break is not part of the password. Raises ``ConfigError`` naming the file when it
    cannot be read (the message never contains the secret).
    """
    env = os.environ if environ is None else environ
    path = Path(password_file) if password_file else None
    from_credential = False
    if path is None and env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        path, from_credential = (candidate, True) if candidate.is_file() else (None, False)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"mqtt.password_file: cannot read {path}: {reason}; "
                          "create it (readable by the daemon only) or remove the key") from exc
    secret = text.removesuffix("\n").removesuffix("\r")
    # conf/mqtt-password is installed empty: an empty credential means no password.
    return None if from_credential and not secret else secret


# -- the reporter ------------------------------------------------------------------------------
