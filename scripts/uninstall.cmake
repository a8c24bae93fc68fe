# cmake -DMANIFEST=build/install_manifest.txt -P scripts/uninstall.cmake
# Removes every file the last `cmake --install` of that tree wrote, then
# the manifest.  The manifest lists the files without DESTDIR; give the
# same DESTDIR as the install did.
if(NOT EXISTS "${MANIFEST}")
  message(FATAL_ERROR "no ${MANIFEST}: nothing was installed from this tree")
endif()
file(STRINGS "${MANIFEST}" files)
foreach(f IN LISTS files)
  set(f "$ENV{DESTDIR}${f}")
  if(EXISTS "${f}" OR IS_SYMLINK "${f}")
    message(STATUS "Removing ${f}")
    file(REMOVE "${f}")
  endif()
endforeach()
file(REMOVE "${MANIFEST}")
