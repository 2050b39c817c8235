"""The system bus policy: who may own the name and call what, evaluated with dbus-daemon's rule order,
checked against the interface description, and parsed by a real dbus-daemon."""

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

DBUS = Path(__file__).resolve().parents[3] / "daemon" / "dbus"
POLICY = DBUS / "org.edgeoffload.Daemon1.conf"
INTERFACE = DBUS.parent / "src" / "edgeoffload" / "api" / "org.edgeoffload.Daemon1.xml"
NAME = "org.edgeoffload.Daemon1"
PROPS = "org.freedesktop.DBus.Properties"


def policies():
    return ET.parse(POLICY).getroot().findall("policy")


def allowed(user: str, groups: tuple[str, ...], interface: str, member: str, *, attr="send") -> bool:
    """dbus-daemon's order: default context, then group policies, then user policies; later rules win.
    The system bus denies method calls unless a rule allows them."""
    verdict = False
    ordered = ([p for p in policies() if p.get("context") == "default"]
               + [p for p in policies() if p.get("group") in groups]
               + [p for p in policies() if p.get("user") == user])
    for policy in ordered:
        for rule in policy:
            if attr == "own":
                if rule.get("own") == NAME:
                    verdict = rule.tag == "allow"
                continue
            if rule.get("send_destination") != NAME:
                continue
            if rule.get("send_interface", interface) == interface and rule.get("send_member", member) == member:
                verdict = rule.tag == "allow"
    return verdict


def methods() -> set[str]:
    iface = ET.parse(INTERFACE).getroot().find(f"interface[@name='{NAME}']")
    return {m.get("name") for m in iface.findall("method")}


STRANGER, OPERATOR, ROOT = ("alice", ()), ("bob", ("edgeoffload",)), ("root", ("root",))


@pytest.mark.parametrize("member, stranger", [
    ("Infer", True), ("Decide", True), ("GetPolicy", True), ("GetProfiles", True), ("ListModels", True),
    ("GetSensors", True), ("SetPolicy", False), ("Profile", False), ("ReloadConfig", False),
    ("ImportEnergyProfile", False),
])
def test_who_may_call_what(member, stranger):
    assert member in methods()
    assert allowed(*STRANGER, NAME, member) is stranger
    assert allowed(*OPERATOR, NAME, member)
    assert allowed(*ROOT, NAME, member)


def test_anyone_reads_properties_only_members_could_write():
    assert allowed(*STRANGER, PROPS, "Get") and allowed(*STRANGER, PROPS, "GetAll")
    assert not allowed(*STRANGER, PROPS, "Set")
    assert allowed(*STRANGER, "org.freedesktop.DBus.Introspectable", "Introspect")


def test_only_the_service_user_owns_the_name():
    assert allowed("edgeoffload", ("edgeoffload",), "", "", attr="own")
    assert not allowed(*OPERATOR, "", "", attr="own")
    assert not allowed(*ROOT, "", "", attr="own")


def test_every_method_is_covered_by_the_policy():
    named = {r.get("send_member") for p in policies() for r in p if r.get("send_interface") == NAME}
    assert named <= methods()
    assert methods() == {"Infer", "Decide", "Profile", "GetProfiles", "ListModels", "GetPolicy", "SetPolicy",
                         "ReloadConfig", "GetSensors", "ImportEnergyProfile"}


def test_a_real_dbus_daemon_accepts_the_policy(tmp_path):
    tool = shutil.which("dbus-daemon")
    if tool is None:
        pytest.skip("dbus-daemon is not installed")
    config = tmp_path / "bus.conf"
    config.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={tmp_path}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*"/><allow own="*"/></policy>
<include>{POLICY}</include></busconfig>""")
    proc = subprocess.Popen([tool, f"--config-file={config}", "--print-address", "--nofork"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("unix:"), proc.stderr.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
