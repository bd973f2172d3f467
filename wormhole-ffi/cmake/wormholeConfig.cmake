# CMake package config for libwormhole, installed by scripts/install-ffi.sh into
# PREFIX/lib/cmake/wormhole. Use:
#
#   find_package(wormhole REQUIRED)          # with -DCMAKE_PREFIX_PATH=PREFIX
#   target_link_libraries(app PRIVATE wormhole::wormhole)         # shared
#   target_link_libraries(app PRIVATE wormhole::wormhole_static)  # static
include(CMakeFindDependencyMacro)
find_dependency(Threads)

get_filename_component(_wormhole_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET wormhole::wormhole)
  if(APPLE)
    set(_wormhole_shared "${_wormhole_prefix}/lib/libwormhole.dylib")
  else()
    set(_wormhole_shared "${_wormhole_prefix}/lib/libwormhole.so")
  endif()
  add_library(wormhole::wormhole SHARED IMPORTED)
  set_target_properties(wormhole::wormhole PROPERTIES
    IMPORTED_LOCATION "${_wormhole_shared}"
    IMPORTED_SONAME "libwormhole.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_wormhole_prefix}/include")

  add_library(wormhole::wormhole_static STATIC IMPORTED)
  set(_wormhole_static_deps Threads::Threads ${CMAKE_DL_LIBS})
  if(NOT APPLE)
    list(APPEND _wormhole_static_deps m rt util)
  endif()
  set_target_properties(wormhole::wormhole_static PROPERTIES
    IMPORTED_LOCATION "${_wormhole_prefix}/lib/libwormhole.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_wormhole_prefix}/include"
    INTERFACE_LINK_LIBRARIES "${_wormhole_static_deps}")
  unset(_wormhole_shared)
  unset(_wormhole_static_deps)
endif()

set(wormhole_FOUND TRUE)
unset(_wormhole_prefix)
