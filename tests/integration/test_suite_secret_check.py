"""The suite's secret check under pytest-xdist (`make test` runs on workers): a leak one worker finds fails the run.
A child pytest runs tests/support/leak_probe.py on two workers (~5 s: integration, not unit)."""


def test_a_leak_found_by_an_xdist_worker_fails_the_whole_run():
    """`make test` runs the suite on pytest-xdist workers: each checks its own log, the controller fails the run."""
    import os
    import subprocess
    import sys

    from tools.localdev.azurite import PROJECT_ROOT

    def run(leak: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "RETRAIN_SUITE_RUN"}
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                               "tests/support/leak_probe.py"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              env={**env, "LEAK_PROBE": leak}, timeout=120)

    clean, leaking = run(""), run("yes")
    assert clean.returncode == 0, clean.stdout[-2000:]
    assert leaking.returncode == 1 and "SECRETS IN THE SUITE'S LOGS" in leaking.stdout, leaking.stdout[-2000:]
