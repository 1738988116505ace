# ctest fixtures_budget: the committed fixtures stay small (tools/reference/README.md).
# cmake -DDIR=<tests/fixtures> -DLIMIT=<bytes> -P fixtures_budget.cmake
file(GLOB_RECURSE files LIST_DIRECTORIES false "${DIR}/*")
set(total 0)
foreach(f IN LISTS files)
  if(IS_SYMLINK "${f}")
    continue()  # counted once, as the file it points to
  endif()
  file(SIZE "${f}" size)
  math(EXPR total "${total} + ${size}")
endforeach()
if(total GREATER_EQUAL LIMIT)
  message(FATAL_ERROR "tests/fixtures holds ${total} bytes, over the budget of ${LIMIT} bytes")
endif()
message(STATUS "tests/fixtures: ${total} bytes of ${LIMIT}")
