"""The fakes of tests/fakes.py implement their ports: mypy checks each typed assignment below."""

from atelier.cache import DEFAULT_THRESHOLD, HashIndex
from atelier.worker import JobQueue, Message
from tests.fakes import MemoryHashIndex, MemoryJobQueue


def test_each_fake_is_typed_as_its_port() -> None:
    index: HashIndex = MemoryHashIndex()
    queue: JobQueue = MemoryJobQueue(Message("m1", "r1", "{}"))
    assert index.threshold == DEFAULT_THRESHOLD
    assert [m.id for m in queue.receive(30)] == ["m1"] and queue.receive(30) == []
