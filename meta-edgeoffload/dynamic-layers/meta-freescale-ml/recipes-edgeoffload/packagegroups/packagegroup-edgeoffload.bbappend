# NXP's TensorFlow Lite runtime on machines with NXP's BSP (the tflite_runtime module behind edgeoffloadd's
# cpu targets) and, on the i.MX 8M Plus, the VX delegate its npu target loads (/usr/lib/libvx_delegate.so);
# the delegate's recipe builds only for i.MX 8 SoCs with the 3D GPU and NPU.
RDEPENDS:${PN}:append:imx-nxp-bsp = " tensorflow-lite"
RDEPENDS:${PN}:append:mx8mp-nxp-bsp = " tensorflow-lite-vx-delegate"
