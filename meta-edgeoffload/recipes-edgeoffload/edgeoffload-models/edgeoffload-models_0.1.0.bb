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

python do_install() {
    import glob, hashlib, json, os, shutil
    src, dst = d.getVar("EDGEOFFLOAD_MODELS_DIR"), d.expand("${D}${datadir}/edgeoffload/models")
    models = sorted(glob.glob(os.path.join(src, "*.tflite")))
    if not models:
        bb.fatal("EDGEOFFLOAD_MODELS_DIR = %s holds no *.tflite model: build them (edgeoffload-host build "
                 "--out %s) or set EDGEOFFLOAD_MODELS_DIR to the folder that has them" % (src, src))
    for model in models:
        manifest = model + ".manifest.json"
        try:
            with open(manifest) as f:
                expected = json.load(f)["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            bb.fatal("%s: no usable manifest %s (%s): rebuild the model with edgeoffload-host build --force"
                     % (model, manifest, e))
        with open(model, "rb") as f:
            actual = hashlib.sha256(f.read()).hexdigest()
        if actual != expected:
            bb.fatal("%s: sha256 %s does not match %s, which expects %s: the model changed after its manifest "
                     "was written; rebuild it with edgeoffload-host build --force" % (model, actual, manifest, expected))
    os.makedirs(dst)
    for path in models + [m + ".manifest.json" for m in models]:
        shutil.copyfile(path, os.path.join(dst, os.path.basename(path)))
        os.chmod(os.path.join(dst, os.path.basename(path)), 0o644)
}

FILES:${PN} += "${datadir}/edgeoffload/models"
