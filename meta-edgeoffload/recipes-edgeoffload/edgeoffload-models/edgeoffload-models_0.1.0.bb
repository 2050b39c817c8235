# nooelint: oelint.var.mandatoryvar.SRC_URI,oelint.var.suggestedvar.CVE_PRODUCT
# No SRC_URI: see do_install. No CVE_PRODUCT: model files are data, CVEs against edgeoffload's code are
# reported for python3-edgeoffload.
SUMMARY = "Models for edgeoffloadd (.tflite and manifests) in /usr/share/edgeoffload"
DESCRIPTION = "Installs every *.tflite of EDGEOFFLOAD_MODELS_DIR with its <model>.manifest.json, as \
               edgeoffload-host build writes them, after checking each model's sha256 against its manifest."
HOMEPAGE = "https://github.com/edgeoffload/edgeoffload"
BUGTRACKER = "https://github.com/edgeoffload/edgeoffload/issues"
SECTION = "misc"
# The project's own build output. Models fine-tuned from third-party weights (edgeoffload-host build
# --weights imagenet starts from Keras' ImageNet weights) also carry those weights' terms: set LICENSE and
# LIC_FILES_CHKSUM to match in a bbappend. There is no source tree, hence oe-core's MIT text.
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# Where edgeoffload-host build writes by default (models/ at the top of the checkout; kas's TOPDIR is build/).
EDGEOFFLOAD_MODELS_DIR ??= "${TOPDIR}/../models"

S = "${UNPACKDIR}"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# The models are build outputs, read from EDGEOFFLOAD_MODELS_DIR here rather than through SRC_URI: a file://
# entry for a folder that does not exist yet would fail parsing for everyone. Their names and checksums are
# part of do_install's signature ("/./": bitbake hashes the name too), so a rebuilt, added or renamed model
# installs again.
do_install[file-checksums] += "${EDGEOFFLOAD_MODELS_DIR}/./*.tflite*:True"

# The check and the copy live in lib/edgeoffloadlayer/models.py (tested in the project's CI).
python do_install() {
    try:
        edgeoffloadlayer.models.install_models(d.getVar("EDGEOFFLOAD_MODELS_DIR"),
                                               d.expand("${D}${datadir}/edgeoffload/models"))
    except edgeoffloadlayer.models.ModelCheckError as e:
        bb.fatal(str(e))
}

FILES:${PN} += "${datadir}/edgeoffload/models"
