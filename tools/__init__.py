"""Local tooling, never deployed (see .funcignore): the Studio (classic) emulator, devhost (a stand-in for the
Functions host), localdev (make run / make demo and helpers) and bench (benchmarks); standin_state writes the
state files of both stand-ins (the emulator, tools/azureml). Tooling may import the product; the product never
imports tooling; nothing imports tests."""
