# Writes OUT (a C++ source defining mdn::git_describe()) from `git describe` of SRC, at build time,
# so `mdn --version` and the checkpoints name the commit that was built, not the one configured.
# configure_file rewrites OUT only when the text changes: an unchanged commit rebuilds nothing.
#
#   cmake -DSRC=<source dir> -DOUT=<file> -P tools/git_describe.cmake
execute_process(COMMAND git describe --always --dirty --tags
                WORKING_DIRECTORY "${SRC}"
                OUTPUT_VARIABLE MDN_GIT_DESCRIBE OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT MDN_GIT_DESCRIBE)
  set(MDN_GIT_DESCRIBE "unknown")  # a source tarball, or git missing
endif()
file(WRITE "${OUT}.tmp"
     "// Generated at build time by tools/git_describe.cmake.\n"
     "namespace mdn {\nconst char* git_describe() { return \"${MDN_GIT_DESCRIBE}\"; }\n}  // namespace mdn\n")
configure_file("${OUT}.tmp" "${OUT}" COPYONLY)
file(REMOVE "${OUT}.tmp")
