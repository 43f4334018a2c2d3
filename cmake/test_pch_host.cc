// Hosts the tests' precompiled header (cmake/test_pch.h); never run.
int main() { return 0; }
