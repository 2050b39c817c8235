SUMMARY = "edgeoffloadd: run each inference on the CPU, the NPU or an offload server"
DESCRIPTION = "The edgeoffload daemon and edgeoffloadctl, the systemd unit, the D-Bus system-bus policy \
               and interface description, and the edgeoffload service account. Its configuration comes \
               from edgeoffload-conf, or a product's recipe that RPROVIDES virtual-edgeoffload-conf."
SECTION = "net"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://pyproject.toml;beginline=11;endline=11;md5=7d995d69c29a01e73a161f8674ecfc0c"

require edgeoffload-source.inc
require edgeoffload-user.inc
SRC_URI += "file://run-ptest"

S = "${UNPACKDIR}/${BP}/daemon"

inherit python_setuptools_build_meta ptest systemd

# With externalsrc, S is the developer's daemon/ folder: setuptools' build/ goes to ${B} instead, and
# externalsrc's oe-workdir/oe-logs links stay out of it (EXTERNALSRC_SYMLINKS is not in oelint-adv's database).
export DIST_EXTRA_CONFIG = "${B}/edgeoffload-dist.cfg"
# nooelint: oelint.vars.mispell.unknown
EXTERNALSRC_SYMLINKS = ""

SYSTEMD_SERVICE:${PN} = "edgeoffloadd.service"

do_configure:append() {
    printf '[build]\nbuild_base = %s\n' "${B}/build" > ${DIST_EXTRA_CONFIG}
}

do_install:append() {
    install -D -m 0644 ${S}/systemd/edgeoffloadd.service -t ${D}${systemd_system_unitdir}
    install -D -m 0644 ${S}/dbus/org.edgeoffload.Daemon1.conf -t ${D}${datadir}/dbus-1/system.d
    install -D -m 0644 ${S}/src/edgeoffload/api/org.edgeoffload.Daemon1.xml -t ${D}${datadir}/dbus-1/interfaces
}

require python3-edgeoffload-ptest.inc

FILES:${PN} += "${datadir}/dbus-1/interfaces ${datadir}/dbus-1/system.d"

# Every module the daemon imports. Standard-library modules map to the python3-* packages of oe-core's
# python3-manifest.json. tflite_runtime/ai_edge_litert are optional: NXP's tensorflow-lite provides one
# (packagegroup-edgeoffload adds it); without it the daemon serves every model by offloading.
RDEPENDS:${PN} += "\
    python3-asyncio \
    python3-core \
    python3-crypt \
    python3-ctypes \
    python3-datetime \
    python3-difflib \
    python3-io \
    python3-json \
    python3-logging \
    python3-netclient \
    python3-numbers \
    python3-numpy \
    python3-paho-mqtt \
    python3-pydbus \
    python3-pygobject \
    python3-pyyaml \
    python3-statistics \
    python3-threading \
"
# The daemon's configuration: edgeoffload-conf, or the product's own recipe that RPROVIDES it.
RDEPENDS:${PN} += "virtual-edgeoffload-conf"
