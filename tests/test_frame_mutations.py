"""The fuzzer's mutator (tests/frame_mutations.py), without processes: a seed
names a sequence of mutations, every kind happens, and the frames are hostile
in the way each kind says."""

from __future__ import annotations

from collections import Counter

import msgpack
from frame_capture import Capture, CapturedFrame
from frame_mutations import MUTATIONS, Hint, Mutator, captured_seeds, corpus_extent
from sandzmq.transport import PROTOCOL_VERSION


def _frame(tag, body):
    return msgpack.packb([PROTOCOL_VERSION, "itest", tag, body])


CORPUS = Capture(
    [
        CapturedFrame("raft", "n2", b"n1", _frame("p.vote", ["n1", "n2", 3, 10, 2, True])),
        CapturedFrame("raft", "n1", b"n2", _frame("p.vote_reply", ["n2", "n1", 3, True, True])),
        CapturedFrame(
            "raft",
            "n2",
            b"n1",
            _frame("p.append", ["n1", "n2", 3, 10, 2, 3, 0, [b"\x95\x00\xc4\x01c\x01\x00\xc4\x01x"], 9]),
        ),
        CapturedFrame("raft", "n1", b"n2", _frame("p.append_reply", ["n2", "n1", 3, True, 11, 0, 0])),
        CapturedFrame("raft", "n2", b"n1", _frame("p.beat", ["n1", "n2", 3, 9, 0])),
        CapturedFrame("raft", "n1", b"n2", _frame("p.beat_reply", ["n2", "n1", 3, 0])),
        CapturedFrame("client", "n1", b"\x00k", _frame("c.submit", [1, [b"payload"]])),
        CapturedFrame("client", "n1", b"\x00k", _frame("c.query", [2, "local", b"count"])),
        CapturedFrame("client", "n1", b"\x00k", _frame("c.status", [3])),
        CapturedFrame("client", "n1", b"\x00k", _frame("c.hello", [4])),
    ]
)


def test_a_capture_knows_which_types_it_lacks_and_its_highest_term():
    assert CORPUS.missing() == []
    assert Capture(CORPUS.frames[1:]).missing() == ["RequestVote"]
    assert CORPUS.max_term() == 3
    assert corpus_extent(captured_seeds(CORPUS)) == Hint(3, 11)


def test_the_same_seed_gives_the_same_frames_another_seed_others():
    def run(seed):
        m = Mutator(captured_seeds(CORPUS), seed=seed, cluster="itest")
        return [(x.kind, x.identity, x.parts) for x in (m.next() for _ in range(300))]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_every_kind_happens_and_frames_differ_from_their_source():
    m = Mutator(captured_seeds(CORPUS), seed=1, cluster="itest")
    originals = {f.frame for f in CORPUS.frames}
    kinds = Counter()
    for _ in range(3000):
        x = m.next()
        kinds[x.kind] += 1
        assert x.parts and all(isinstance(p, bytes) for p in x.parts)
        if x.kind not in ("multipart", "forged"):
            assert len(x.parts) == 1
    assert set(kinds) == set(MUTATIONS), f"kinds never made: {set(MUTATIONS) - set(kinds)}"
    # Nearly every mutant differs from every captured frame (an int already
    # at the chosen value, or a swap of equal ids, can leave one unchanged).
    same = sum(1 for _ in range(500) if (x := m.next()).parts[0] in originals and len(x.parts) == 1)
    assert same < 25


def test_extreme_integers_reach_the_terms():
    m = Mutator(captured_seeds(CORPUS), seed=3, cluster="itest")
    terms = set()
    for _ in range(2000):
        x = m.next()
        if x.kind != "int-extreme" or x.source != "Heartbeat":
            continue
        body = msgpack.unpackb(x.parts[0])[3]
        terms.add(body[2])
    assert {2**64 - 1, 2**63, 10**12, 2**62, 0, -1} <= terms
