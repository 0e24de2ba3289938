"""Small emulator parts: connection strings, SAS expiry, fault rules, tables, name rule, error envelope."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tools.emulator.blobs import StorageAccount, sas_expiry, split_relative
from tools.emulator.errors import StudioError
from tools.emulator.eventgrid import Subscription, subscription_from_flag
from tools.emulator.faults import FaultRule, Faults, parse_fault_flag
from tools.emulator.learner import DataError
from tools.emulator.management import NAME_RULE
from tools.emulator.tables import read_table


def test_connection_string_parsing():
    acct = StorageAccount.parse("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5==;"
                                "EndpointSuffix=core.windows.net")
    assert acct.blob_endpoint == "https://acct.blob.core.windows.net" and acct.account_key == "a2V5=="
    assert acct.base_location == "https://acct.blob.core.windows.net/"
    local = StorageAccount.parse("AccountName=devstoreaccount1;AccountKey=k;BlobEndpoint=http://127.0.0.1:1/dev/;")
    assert local.blob_endpoint == "http://127.0.0.1:1/dev"
    with pytest.raises(ValueError):
        StorageAccount.parse("garbage")


def test_sas_expiry_and_relative_locations():
    assert sas_expiry("?sv=1&se=2030-01-02T03%3A04%3A05Z&sig=x") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert sas_expiry("?sv=1") is None
    assert split_relative("/models/a/b.ilearner") == ("models", "a/b.ilearner")
    with pytest.raises(ValueError):
        split_relative("nocontainer")


def test_fault_rules_count_and_patterns():
    faults = Faults([parse_fault_flag("route=bes.*,status=503,retry_after=1,count=2")])
    assert faults.take("management.get_endpoint", "GET") is None
    assert faults.take("bes.submit", "POST") is not None
    assert faults.take("bes.get", "GET") is not None
    assert faults.take("bes.get", "GET") is None and faults.rules == []
    with pytest.raises(ValueError):
        parse_fault_flag("route=x,status=418")
    assert parse_fault_flag("route=x,drop=true").drop is True
    method_only = Faults([FaultRule(route="*", method="PATCH")])
    assert method_only.take("management.patch_endpoint", "PATCH") and not method_only.take("x", "GET")
    later = Faults([parse_fault_flag("route=eventgrid.publish,status=503,skip=2,count=1")])
    assert [later.take("eventgrid.publish", "POST") is not None for _ in range(4)] == [False, False, True, False]


def test_subscription_flags():
    sub = subscription_from_flag("training-data=http://127.0.0.1:7071/runtime/webhooks/blobs?functionName=x")
    assert sub.subject_begins_with == "/blobServices/default/containers/training-data/"
    assert sub.endpoint.startswith("http://127.0.0.1:7071/")
    assert subscription_from_flag("http://127.0.0.1:1/a=b").subject_begins_with == ""
    event = {"eventType": "Microsoft.Storage.BlobCreated",
             "subject": "/blobServices/default/containers/training-data/blobs/a.csv"}
    assert sub.wants(event) and not Subscription(endpoint="http://x", subject_ends_with=".ilearner").wants(event)


def test_read_table_errors_name_lines():
    header, cols = read_table(b"a,b\n1,2\n3,4\n", "t.csv")
    assert header == ["a", "b"] and cols["b"] == ["2", "4"]
    with pytest.raises(DataError, match="line 3"):
        read_table(b"a,b\n1,2\n3\n", "t.csv")
    with pytest.raises(DataError, match="duplicate"):
        read_table(b"a,a\n1,2\n", "t.csv")
    assert read_table(b"a\tb\n1\t2\n", "t.tsv")[1]["b"] == ["2"]


@pytest.mark.parametrize(("name", "ok"), [("a", True), ("a-b", True), ("a" * 24, True), ("a" * 25, False),
                                          ("-a", False), ("a-", False), ("A", False), ("a_b", False)])
def test_endpoint_name_rule(name, ok):
    assert bool(NAME_RULE.match(name)) is ok


def test_error_envelope_shape():
    err = StudioError("BadArgument", "InvalidBlobExtension", "The blob reference: x has an invalid extension.")
    assert err.status == 400
    assert err.body() == {"error": {"code": "BadArgument", "message": "Invalid argument provided.", "details": [
        {"code": "InvalidBlobExtension", "message": "The blob reference: x has an invalid extension."}]}}
    assert StudioError("NotFound").status == 404 and StudioError("ServiceUnavailable").status == 503
