"""Python helpers of meta-edgeoffload, importable from recipes as `edgeoffloadlayer.<module>` (layer.conf's
addpylib). BBIMPORTS makes bitbake hash the functions these modules export into the tasks that call them.
Standard library only: this runs inside bitbake. tests/layer/ tests it in the project's CI."""

BBIMPORTS = ["models"]
