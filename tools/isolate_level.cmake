# Makes one instruction-set level's kernels private to that level (include/mdn/kernels.hpp).
#
# The level's objects are compiled with -march=<level>. Every inline or template function they
# instantiate (Eigen's, the standard library's) is a weak symbol that another level, or the rest
# of mdn, instantiates too; the linker would keep one copy of each for the whole program, and
# code compiled for AVX-512 could then run on a CPU without it. So: link the level's objects into
# one (ld -r), refuse it if it would run code at start-up (.init_array: a static constructor runs
# before any level is chosen), and rename every function and virtual table it defines with a
# prefix of its own (__mdn_<level>_), except its two tables (mdn_kernels_<level>_f and _d), which
# are all that the rest of mdn refers to. Data (static locals, type information) stays shared, as
# C++ requires.
#
#   cmake -DOBJECTS="a.o|b.o" -DOUT=level.o -DLEVEL=x86_64_v3 -DLD=ld -DNM=nm -DOBJCOPY=objcopy
#         -DREADELF=readelf -P tools/isolate_level.cmake
string(REPLACE "|" ";" objects "${OBJECTS}")
get_filename_component(dir "${OUT}" DIRECTORY)
file(MAKE_DIRECTORY "${dir}")
set(partial "${OUT}.partial.o")
execute_process(COMMAND "${LD}" -r -o "${partial}" ${objects} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "isolate_level: ld -r failed: ${err}")
endif()

execute_process(COMMAND "${READELF}" -S -W "${partial}" OUTPUT_VARIABLE sections RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "isolate_level: readelf failed on ${partial}")
endif()
if(sections MATCHES "\\.(init_array|preinit_array|ctors)")
  message(FATAL_ERROR "isolate_level: the ${LEVEL} kernels have static initialisers (code that would run at "
                      "start-up on every CPU); src/kernels/ must not define objects with constructors")
endif()

execute_process(COMMAND "${NM}" -P --defined-only "${partial}" OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "isolate_level: nm failed on ${partial}")
endif()
string(REPLACE "\n" ";" lines "${symbols}")
set(renames "")
set(count 0)
set(tables 0)
foreach(line IN LISTS lines)
  if(NOT line MATCHES "^([^ ]+) ([A-Za-z]) ")
    continue()
  endif()
  set(name "${CMAKE_MATCH_1}")
  set(type "${CMAKE_MATCH_2}")
  if(name MATCHES "^mdn_kernels_${LEVEL}_[fd]$")
    math(EXPR tables "${tables} + 1")
    continue()
  endif()
  # Global and weak functions (T, W, i), and virtual tables (_ZTV, _ZTT, _ZTC) of any kind; and
  # the local functions (t), which cannot clash but then carry the level's name too (the test of
  # the binary's instructions tells the levels' code by it).
  if(type MATCHES "^[TtWi]$" OR (type MATCHES "^[VDRBvu]$" AND name MATCHES "^_ZT[VTC]"))
    string(APPEND renames "${name} __mdn_${LEVEL}_${name}\n")
    math(EXPR count "${count} + 1")
  endif()
endforeach()
if(NOT tables EQUAL 2)
  message(FATAL_ERROR "isolate_level: ${partial} does not define mdn_kernels_${LEVEL}_f and _d")
endif()
file(WRITE "${OUT}.renames" "${renames}")
execute_process(COMMAND "${OBJCOPY}" "--redefine-syms=${OUT}.renames" "${partial}" "${OUT}"
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "isolate_level: objcopy failed: ${err}")
endif()
file(REMOVE "${partial}")
