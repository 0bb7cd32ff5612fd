# SPDX-License-Identifier: MIT
# The map broker's fuzz target; included by tests/fuzz/CMakeLists.txt (iob_add_fuzzer).
iob_add_fuzzer(NAME fuzz_broker SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_broker.c
               LIBS iobd_broker)
