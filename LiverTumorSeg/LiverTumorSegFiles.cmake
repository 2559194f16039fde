# File lists of the LiverTumorSeg extension, computed from the files on disk (so library files added
# later are installed without editing CMake). Paths are relative to LIVERTUMORSEG_SOURCE_ROOT (the
# repository root) or to this folder; Testing/Python/test_slicer_module_static.py runs this file with
# `cmake -P` and checks the lists against the files on disk.
#
# Input:  LIVERTUMORSEG_SOURCE_ROOT  absolute path of the repository root
# Output: LIVERTUMORSEG_MODULE_SCRIPTS    module script + widget-side helpers (relative to LiverTumorSeg/)
#         LIVERTUMORSEG_MODULE_RESOURCES  .ui and icon (relative to LiverTumorSeg/)
#         LIVERTUMORSEG_LIB_SCRIPTS       every LiverTumorSegLib/**/*.py (relative to the root)
#         LIVERTUMORSEG_SHARED_RESOURCES  Resources/Models/*, Resources/Sample/*, docs/slicer.md (the module's
#                                         help links this installed copy) with the panel picture it shows, and
#                                         the licences (LICENSE, LICENSES/*) (relative to the root)

set(_module_dir ${LIVERTUMORSEG_SOURCE_ROOT}/LiverTumorSeg)

# Re-glob at build time when files are added (not allowed, and not needed, in `cmake -P` script mode).
set(_configure_depends CONFIGURE_DEPENDS)
if(CMAKE_SCRIPT_MODE_FILE)
  set(_configure_depends)
endif()

file(GLOB_RECURSE _module_helpers RELATIVE ${_module_dir} ${_configure_depends}
  ${_module_dir}/LiverTumorSegModuleLib/*.py)
set(LIVERTUMORSEG_MODULE_SCRIPTS LiverTumorSeg.py ${_module_helpers})
list(SORT LIVERTUMORSEG_MODULE_SCRIPTS)

set(LIVERTUMORSEG_MODULE_RESOURCES
  Resources/Icons/LiverTumorSeg.png
  Resources/UI/LiverTumorSeg.ui
  )

file(GLOB_RECURSE LIVERTUMORSEG_LIB_SCRIPTS RELATIVE ${LIVERTUMORSEG_SOURCE_ROOT} ${_configure_depends}
  ${LIVERTUMORSEG_SOURCE_ROOT}/LiverTumorSegLib/*.py)
list(FILTER LIVERTUMORSEG_LIB_SCRIPTS EXCLUDE REGEX "__pycache__")
list(SORT LIVERTUMORSEG_LIB_SCRIPTS)

file(GLOB_RECURSE LIVERTUMORSEG_SHARED_RESOURCES RELATIVE ${LIVERTUMORSEG_SOURCE_ROOT} ${_configure_depends}
  ${LIVERTUMORSEG_SOURCE_ROOT}/Resources/Models/*
  ${LIVERTUMORSEG_SOURCE_ROOT}/Resources/Sample/*
  ${LIVERTUMORSEG_SOURCE_ROOT}/docs/slicer.md
  ${LIVERTUMORSEG_SOURCE_ROOT}/docs/images/panel_layout.png
  ${LIVERTUMORSEG_SOURCE_ROOT}/LICENSE
  ${LIVERTUMORSEG_SOURCE_ROOT}/LICENSES/*)
list(FILTER LIVERTUMORSEG_SHARED_RESOURCES EXCLUDE REGEX "(^|/)\\.")
list(SORT LIVERTUMORSEG_SHARED_RESOURCES)
