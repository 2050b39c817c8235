SUMMARY = "edgeoffload on the board: daemon, configuration, models, MQTT clients"
DESCRIPTION = "Everything edgeoffloadd needs on the board; add it to an image through IMAGE_INSTALL. With \
               NXP's ML layer in the build it also brings the TensorFlow Lite runtime and, on the \
               i.MX 8M Plus, the VX delegate for the NPU."
HOMEPAGE = "https://github.com/edgeoffload/edgeoffload"
BUGTRACKER = "https://github.com/edgeoffload/edgeoffload/issues"
SECTION = "net"

# The NXP bbappend adds packages for NXP machines only: the package differs between machines.
PACKAGE_ARCH = "${MACHINE_ARCH}"

inherit packagegroup

# virtual-edgeoffload-conf: edgeoffload-conf, or the product's own configuration recipe.
RDEPENDS:${PN} = "\
    edgeoffload-models \
    mosquitto-clients \
    python3-edgeoffload \
    virtual-edgeoffload-conf \
"
