# Run by `cmake --install` (install(SCRIPT)): writes the systemd units for
# the prefix of this install, which `--prefix` may change after configure.
# Set by install(CODE) before: TLSPLEX_UNITS_SRC, TLSPLEX_UNITS_OUT,
# TLSPLEX_BINDIR_REL, TLSPLEX_SYSCONFDIR_REL (GNUInstallDirs' values).
set(_p "${CMAKE_INSTALL_PREFIX}")
if(IS_ABSOLUTE "${TLSPLEX_BINDIR_REL}")
  set(TLSPLEX_BINDIR "${TLSPLEX_BINDIR_REL}")
else()
  set(TLSPLEX_BINDIR "${_p}/${TLSPLEX_BINDIR_REL}")
endif()
# GNUInstallDirs' rule for the full sysconfdir.
if(IS_ABSOLUTE "${TLSPLEX_SYSCONFDIR_REL}")
  set(_etc "${TLSPLEX_SYSCONFDIR_REL}")
elseif(_p STREQUAL "/usr" AND TLSPLEX_SYSCONFDIR_REL STREQUAL "etc")
  set(_etc "/etc")
elseif(_p MATCHES "^/opt/" AND TLSPLEX_SYSCONFDIR_REL STREQUAL "etc")
  set(_etc "/etc${_p}")
else()
  set(_etc "${_p}/${TLSPLEX_SYSCONFDIR_REL}")
endif()
set(TLSPLEX_SYSCONFDIR "${_etc}/tlsplex")
foreach(d relay gateway)
  configure_file("${TLSPLEX_UNITS_SRC}/tlsplex-${d}.service.in"
                 "${TLSPLEX_UNITS_OUT}/tlsplex-${d}.service" @ONLY)
endforeach()
