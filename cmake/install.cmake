# `cmake --install`: the library, its public headers, a CMake package (find_package(stload) gives
# stload::stload) and a pkg-config file, at the GNUInstallDirs paths.
include(CMakePackageConfigHelpers)

set(STLOAD_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/stload)

install(TARGETS stload EXPORT stloadTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime
  FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)
if(STLOAD_WITH_MPI)
  install(TARGETS stload_mpi EXPORT stloadTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime
    FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)
endif()
install(EXPORT stloadTargets NAMESPACE stload:: DESTINATION ${STLOAD_CMAKE_INSTALL_DIR}
        COMPONENT development)

# What a static link needs the consumer's build to find again; a shared library carries it.
get_target_property(stload_type stload TYPE)
if(stload_type STREQUAL "STATIC_LIBRARY")
  set(STLOAD_STATIC ON)
else()
  set(STLOAD_STATIC OFF)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/stloadConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/stloadConfig.cmake INSTALL_DESTINATION ${STLOAD_CMAKE_INSTALL_DIR})
# 0.x: a minor release may change the API, so only the same minor version is compatible.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/stloadConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/stloadConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/stloadConfigVersion.cmake
        DESTINATION ${STLOAD_CMAKE_INSTALL_DIR} COMPONENT development)

# pkg-config: a shared library needs only -lstload; a static one also its private dependencies.
set(STLOAD_PC_REQUIRES_PRIVATE "simdjson")
if(STLOAD_WITH_IO_URING)
  string(APPEND STLOAD_PC_REQUIRES_PRIVATE " liburing")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(STLOAD_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(STLOAD_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(STLOAD_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(STLOAD_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/stload.pc.in ${CMAKE_CURRENT_BINARY_DIR}/stload.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/stload.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT development)
