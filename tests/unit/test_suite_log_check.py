"""The suite-wide secret check itself must be able to fail."""

from tests.conftest import leaked_secrets


def test_leak_detector_finds_signatures_and_keys():
    assert leaked_secrets("GET https://a/b?sv=1&sig=abc%2Bdef&se=2") != []
    assert leaked_secrets("GET https://a/b?sv=1&sig=REDACTED") == []
    from tools.localdev.azurite import ACCOUNT_KEY

    assert leaked_secrets(f"AccountKey={ACCOUNT_KEY}") != []

