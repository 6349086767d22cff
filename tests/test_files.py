"""write_atomic: a file is replaced whole or not at all, and leaves no temporary file."""

import threading

import pytest

from metarl.files import write_atomic


def test_a_write_replaces_the_file_whole_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "summary.json"
    target.write_bytes(b"old")
    write_atomic(target, lambda f: f.write(b"new contents"))
    assert target.read_bytes() == b"new contents"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        write_atomic(target, half_then_fail, previous=tmp_path / "checkpoint-previous.pt")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_previous_keeps_the_replaced_file(tmp_path):
    target, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint-previous.pt"
    write_atomic(target, lambda f: f.write(b"first"), previous=previous)
    assert target.read_bytes() == b"first" and not previous.exists()
    write_atomic(target, lambda f: f.write(b"second"), previous=previous)
    assert target.read_bytes() == b"second" and previous.read_bytes() == b"first"


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    # Both writers hold their temporary file open at once; with a shared name one would
    # truncate or refuse the other's. The survivor is one writer's file, whole.
    target = tmp_path / "cache.json"
    both_open = threading.Barrier(2)
    errors = []

    def writer(payload):
        def write(f):
            f.write(payload[:4])
            both_open.wait(timeout=10)
            f.write(payload[4:])

        try:
            write_atomic(target, write)
        except Exception as err:  # reported below, not lost in the thread
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(p * 1000,)) for p in (b"aaaa", b"bbbb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in (b"aaaa" * 1000, b"bbbb" * 1000)
    assert list(tmp_path.iterdir()) == [target]


def test_a_new_file_gets_ordinary_permissions(tmp_path):
    (tmp_path / "plain").write_bytes(b"")
    write_atomic(tmp_path / "atomic", lambda f: f.write(b""))
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode
