"""The blob storage port's contract, on FakeBlobStore and on the Azure Storage adapter (Azurite)."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs

import pytest

from shared.errors import AlreadyExists, DataRejected, NotFound, Stale
from shared.ports.blobs import SasPurpose
from shared.records import BlobRef
from tests.contract.conftest import Stores


def fresh(s: Stores, suffix: str = ".csv") -> BlobRef:
    return BlobRef(s.container, f"contract-{uuid.uuid4().hex[:10]}/file{suffix}")


def test_info_exists_and_reads(stores: Stores):
    ref = fresh(stores)
    assert not stores.store.exists(ref)
    with pytest.raises(NotFound):
        stores.store.info(ref)
    stores.put(ref, b"a,b\n1,2\n")
    info = stores.store.info(ref)
    assert info.size == 8 and info.etag and info.name == ref.name and info.last_modified.tzinfo is not None
    assert stores.store.exists(ref) and stores.store.read_bytes(ref) == b"a,b\n1,2\n"
    assert b"".join(stores.store.chunks(ref, etag=info.etag)) == b"a,b\n1,2\n"
    with pytest.raises(ValueError):
        stores.store.read_bytes(ref, limit=4)


def test_a_read_pinned_to_a_version_fails_stale_once_it_is_replaced(stores: Stores):
    ref = fresh(stores)
    stores.put(ref, b"one")
    old = stores.store.info(ref).etag
    stores.put(ref, b"two")
    with pytest.raises(Stale):
        b"".join(stores.store.chunks(ref, etag=old))
    with pytest.raises(NotFound):
        b"".join(stores.store.chunks(fresh(stores)))


def test_create_never_overwrites(stores: Stores):
    ref = fresh(stores)
    assert stores.store.create(ref, b"x,y\n", "text/csv", {"retrainendpoints": "a,b"}) is True
    assert stores.store.create(ref, b"x,y\n", "text/csv") is False  # the same bytes: a retried upload
    with pytest.raises(AlreadyExists):
        stores.store.create(ref, b"other\n", "text/csv")
    assert stores.store.read_bytes(ref) == b"x,y\n" and stores.store.info(ref).metadata == {"retrainendpoints": "a,b"}


def test_reject_moves_each_version_aside_with_its_reason_and_a_retry_finds_it(stores: Stores):
    ref = fresh(stores)
    stores.put(ref, b"bad one")
    first = stores.store.reject(ref, {"code": "Bad", "message": "first"})
    assert not stores.store.exists(ref) and first.container == stores.rejected
    assert stores.store.read_bytes(first) == b"bad one"
    assert b'"Bad"' in stores.store.read_bytes(BlobRef(first.container, first.name + ".reason.json"))
    assert stores.store.reject(ref, {"code": "Bad"}) == first  # moved already: the same answer
    stores.put(ref, b"bad two")  # the same name again, another version: kept beside the first
    second = stores.store.reject(ref, {"code": "Worse", "message": "second"})
    assert second != first and stores.store.read_bytes(second) == b"bad two"
    assert stores.store.read_bytes(first) == b"bad one"
    listed = {r.path: (r.code, r.source) for r in stores.store.rejected(1000)}
    assert listed[first.path] == ("Bad", ref.path) and listed[second.path] == ("Worse", ref.path)


def test_newest_sibling_is_by_last_modified_then_name_in_the_folder_only(stores: Stores):
    ref = fresh(stores)
    folder = ref.name.rsplit("/", 1)[0]
    stores.put(ref, b"1")
    assert stores.store.newest_sibling(ref, ".csv") is None
    stores.put(BlobRef(stores.container, f"{folder}/zz.csv"), b"2")
    stores.put(BlobRef(stores.container, f"{folder}/deeper/newer.csv"), b"3")  # below the folder: not a sibling
    stores.put(BlobRef(stores.container, f"{folder}/notes.txt"), b"4")
    newest = stores.store.newest_sibling(ref, ".csv")
    assert newest is not None and newest.name == f"{folder}/zz.csv"


def test_grants_are_blob_scoped_with_the_purposes_permissions(stores: Stores):
    ref = fresh(stores)
    read = stores.store.grant(ref, SasPurpose.SERVE_MODEL)
    write = stores.store.grant(ref, SasPurpose.JOB_OUTPUT)
    assert read.path == ref.path and stores.store.owns(read.base) and read.base == stores.store.base
    assert not stores.store.owns("https://elsewhere.example/")
    assert parse_qs(read.token.lstrip("?"))["sp"] == ["r"] and parse_qs(write.token.lstrip("?"))["sp"] == ["cw"]
    assert parse_qs(read.token.lstrip("?"))["sr"] == ["b"] and read.token.startswith("?")


def test_an_evaluation_is_read_as_metrics_and_a_missing_gated_metric_is_refused(stores: Stores):
    ref = fresh(stores)
    stores.put(ref, b"AUC,Accuracy,Note\n0.9,0.8,fine\n")
    assert stores.store.read_evaluation(ref) == {"AUC": 0.9, "Accuracy": 0.8}
    with pytest.raises(DataRejected, match="'Recall'"):
        stores.store.read_evaluation(ref, ("AUC", "Recall"))


def test_any_valid_blob_name_is_rejected_aside_with_its_reason_and_listed(stores: Stores):
    """A name that is not ASCII (metadata values must be): moved aside, its reason beside it, listed by name."""
    ref = BlobRef(stores.container, f"contract-{uuid.uuid4().hex[:10]}/été-データ-bad.csv")
    stores.put(ref, b"bad")
    moved = stores.store.reject(ref, {"code": "Bad", "message": "not ascii"})
    assert not stores.store.exists(ref) and stores.store.read_bytes(moved) == b"bad"
    assert moved.name == f"{ref.container}/{ref.name}"
    reason = json.loads(stores.store.read_bytes(BlobRef(moved.container, moved.name + ".reason.json")))
    assert reason["source"] == ref.path and reason["code"] == "Bad"
    assert stores.store.reject(ref, {"code": "Bad"}) == moved  # a retry finds it
    stores.put(ref, b"bad again")
    again = stores.store.reject(ref, {"code": "Bad"})
    assert again != moved and stores.store.read_bytes(again) == b"bad again"
    upload = BlobRef(stores.container, f"contract-{uuid.uuid4().hex[:10]}/ünïcode.csv")
    assert stores.store.create(upload, b"x\n", "text/csv", {"note": "été データ 100%"}) is True
    assert stores.store.info(upload).metadata == {"note": "été データ 100%"}


def test_a_reason_file_always_belongs_to_the_file_beside_it(stores: Stores):
    """An earlier rejection's file deleted by hand leaves its reason: the next version of the name goes elsewhere,
    beside a reason of its own; a file named like a reason file never takes another file's reason slot."""
    ref = fresh(stores)
    stores.put(ref, b"bad one")
    first = stores.store.reject(ref, {"code": "First"})
    stores.delete(first)  # an operator cleans rejected/ up, but not the reason file
    stores.put(ref, b"bad two")
    second = stores.store.reject(ref, {"code": "Second"})
    assert second != first and stores.store.read_bytes(second) == b"bad two"
    beside = json.loads(stores.store.read_bytes(BlobRef(second.container, second.name + ".reason.json")))
    assert beside["code"] == "Second"
    assert json.loads(stores.store.read_bytes(BlobRef(first.container, first.name + ".reason.json")))["code"] == \
        "First"  # the earlier reason is kept, and no file sits beside it
    assert not stores.store.exists(first)
    impostor = BlobRef(ref.container, ref.name + ".reason.json")  # another file's reason slot, by name
    other = fresh(stores)
    stores.put(other, b"bad")
    stores.store.reject(other, {"code": "Own"})
    stores.put(BlobRef(ref.container, other.name + ".reason.json"), b"not a reason")
    moved = stores.store.reject(BlobRef(ref.container, other.name + ".reason.json"), {"code": "Odd"})
    assert not moved.name.endswith(".reason.json") and stores.store.read_bytes(moved) == b"not a reason"
    own = json.loads(stores.store.read_bytes(BlobRef(stores.rejected, f"{other.container}/{other.name}.reason.json")))
    assert own["code"] == "Own"
    assert not stores.store.exists(impostor)


def test_rejections_are_listed_newest_first_from_one_page_of_the_index(stores: Stores):
    """Issue 21: the listing read every blob of rejected/ (and a reason file per entry): 5,000 files made the status
    page 10x slower. Now an index entry per rejection, named newest first: one page is the answer."""
    refs = [fresh(stores) for _ in range(3)]
    for i, ref in enumerate(refs):
        stores.put(ref, f"bad {i}".encode())
        stores.store.reject(ref, {"code": f"Code{i}"})
        stores.store.reject(ref, {"code": f"Code{i}"})  # a retry: found, not indexed twice
        tick(stores)
    note = stores.store.note_unreadable(BlobRef(stores.container, f"odd-{uuid.uuid4().hex[:6]}/a\\b.csv"),
                                        {"code": "UnreadableName"})
    newest = stores.store.rejected(4)
    assert [r.code for r in newest] == ["UnreadableName", "Code2", "Code1", "Code0"]
    assert newest[0].path == note.path and newest[1].source == refs[2].path
    assert [r.path for r in stores.store.rejected(2)] == [r.path for r in newest[:2]]
    assert all(r.at for r in newest)


def tick(stores: Stores) -> None:
    """Let time pass between two rejections (the fake's clock, or the real one's milliseconds)."""
    clock = getattr(stores.store, "clock", None)
    if clock is not None:
        clock.tick()
    else:
        time.sleep(0.01)
