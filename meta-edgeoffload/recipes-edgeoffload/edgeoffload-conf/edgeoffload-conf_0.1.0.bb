SUMMARY = "Default configuration of edgeoffloadd in /etc/edgeoffload"
DESCRIPTION = "The daemon's config, its default policy (policy.yaml, which SetPolicy replaces), example \
               policies and the empty MQTT password file, from the project's conf/ folder. A product ships \
               its own: a recipe that RPROVIDES virtual-edgeoffload-conf, chosen with \
               PREFERRED_RPROVIDER_virtual-edgeoffload-conf."
SECTION = "net"
LICENSE = "MIT"
# conf/ carries no license text of its own: oe-core's MIT text, as for its own data-only recipes.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

require recipes-edgeoffload/edgeoffload/edgeoffload-source.inc
require recipes-edgeoffload/edgeoffload/edgeoffload-user.inc

S = "${UNPACKDIR}/${BP}/conf"

inherit allarch

RPROVIDES:${PN} += "virtual-edgeoffload-conf"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# /etc/edgeoffload is root:edgeoffload with the sticky bit: the daemon may create files there (SetPolicy
# replaces policy.yaml by renaming a new file over it) but not rename or delete files it does not own.
# policy.yaml belongs to the daemon; systemd reads mqtt-password as root (LoadCredential=): root, 0600.
do_install() {
    install -d -m 1775 -g edgeoffload ${D}${sysconfdir}/edgeoffload
    install -d ${D}${sysconfdir}/edgeoffload/policies
    install -m 0644 ${S}/edgeoffloadd.yaml ${D}${sysconfdir}/edgeoffload/
    install -m 0640 -o edgeoffload -g edgeoffload ${S}/policies/policy.yaml ${D}${sysconfdir}/edgeoffload/
    install -m 0600 ${S}/mqtt-password ${D}${sysconfdir}/edgeoffload/
    for policy in ${S}/policies/*.yaml; do
        [ "$(basename $policy)" = policy.yaml ] || install -m 0644 $policy ${D}${sysconfdir}/edgeoffload/policies/
    done
}

CONFFILES:${PN} = "\
    ${sysconfdir}/edgeoffload/edgeoffloadd.yaml \
    ${sysconfdir}/edgeoffload/mqtt-password \
    ${sysconfdir}/edgeoffload/policies/*.yaml \
    ${sysconfdir}/edgeoffload/policy.yaml \
"
