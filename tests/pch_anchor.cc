// Compiles nothing of its own: gismo_test_pch exists for its precompiled
// header (tests/CMakeLists.txt), which the GoogleTest programs reuse.
