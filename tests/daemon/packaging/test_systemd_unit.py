"""The systemd unit: notify + watchdog, restart, a dedicated user, hardening, the credential; and
`systemd-analyze verify` where it is installed."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeoffload.api.mqtt_payloads import CREDENTIAL_NAME

UNIT = Path(__file__).resolve().parents[3] / "daemon" / "systemd" / "edgeoffloadd.service"


class Section(dict):
    """A unit section: `s[key]` is the value (keys given once); `s.all(key)` every value of a repeated key
    (systemd allows DeviceAllow= and others more than once; configparser does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated: dict[str, list[str]] = {}

    def add(self, key: str, value: str) -> None:
        self.repeated.setdefault(key, []).append(value)
        self[key] = value

    def all(self, key: str) -> list[str]:
        return self.repeated.get(key, [])


def service_section() -> Section:
    section, current = Section(), None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if current == "Service":
            assert key not in section or key in ("DeviceAllow",), f"{key} given twice"
            section.add(key, value)
    return section


def test_notify_watchdog_restart_and_reload():
    s = service_section()
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0
    assert s["Restart"] == "on-failure"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"  # edgeoffloadd re-reads the policy on SIGHUP
    assert s["ExecStart"].startswith("/usr/bin/edgeoffloadd ")


def test_runs_as_a_dedicated_user_with_hardening_and_the_npu_node():
    s = service_section()
    assert s["User"] == "edgeoffload" and s["Group"] == "edgeoffload"
    assert s["ProtectSystem"] == "strict" and s["StateDirectory"] == "edgeoffload"
    assert s["ReadWritePaths"] == "/etc/edgeoffload"  # SetPolicy writes the policy file there, atomically
    assert s["NoNewPrivileges"] == "yes" and s["PrivateTmp"] == "yes"
    assert s["DevicePolicy"] == "closed"
    assert s.all("DeviceAllow") == ["/dev/galcore rw", "char-gpiochip rw"]  # the NPU; the Joulescope marker line


def test_mqtt_password_is_a_credential_the_daemon_reads():
    s = service_section()
    name, source = s["LoadCredential"].split(":", 1)
    assert name == CREDENTIAL_NAME
    # LoadCredential= fails the start when its file is missing: conf/ ships it, empty (= no password).
    shipped = UNIT.parents[2] / "conf" / Path(source).name
    assert shipped.exists() and shipped.read_bytes() == b""


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    daemon = Path(sys.executable).parent / "edgeoffloadd"
    if not daemon.exists():
        pytest.skip(f"{daemon} is not installed (pip install -e daemon)")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/bin/edgeoffloadd", str(daemon)))
    done = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if UNIT.name in line]
    assert done.returncode == 0 and problems == [], done.stderr
