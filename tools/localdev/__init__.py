"""Local development stack helpers: start Azurite and the emulator as child processes on free loopback ports.

Used by the test fixtures, `make run`, `make demo` and the benchmarks. Never imported by the function app.
"""
