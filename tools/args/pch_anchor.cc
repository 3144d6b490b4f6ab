// gismo_cli11_pch exists for its precompiled header (tools/CMakeLists.txt),
// which the programs that parse arguments with CLI11 reuse.
int main() { return 0; }
