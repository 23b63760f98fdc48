"""Fuzzing the decoder: whatever arrives, only MQTTError may come out.

Beyond not crashing, two consistency properties are checked on every input:
feeding it in pieces gives the same packets and the same error as feeding it
whole, and every packet the decoder accepts is one ``encode`` can produce and
reads back unchanged (so the decoder accepts nothing the encoder calls invalid).
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otahub.mqtt.codec import Decoder, Role, encode
from otahub.mqtt.errors import MQTTError
from otahub.mqtt.packets import Connect, Packet
from tests.mqtt.codec_strategies import packets

# (decoder version, role): every combination the endpoint or a client would use,
# plus role=None, which accepts every packet type and so reaches every decoder.
SETUPS: list[tuple[int | None, Role | None]] = [
    (None, "server"),
    (3, "server"),
    (4, "server"),
    (5, "server"),
    (3, "client"),
    (4, "client"),
    (5, "client"),
    (None, None),
    (3, None),
    (4, None),
    (5, None),
]

Outcome = tuple[list[Packet], int | None, int | None]


def run(data: bytes, version: int | None, role: Role | None, cuts: list[int]) -> Outcome:
    """Feed ``data`` cut at ``cuts``; return packets, error reason (if any), final version."""
    decoder = Decoder(version, role=role)
    out: list[Packet] = []
    start = 0
    try:
        for cut in [*cuts, len(data)]:
            out.extend(decoder.feed(data[start:cut]))
            start = cut
    except MQTTError as exc:
        out.extend(exc.packets)
        return out, exc.reason_code, decoder.version
    return out, None, decoder.version


def check(data: bytes, version: int | None, role: Role | None, cuts: list[int]) -> None:
    whole = run(data, version, role, [])
    assert run(data, version, role, cuts) == whole, f"input {data.hex()} cut at {cuts}"
    decoded, _, final_version = whole
    for packet in decoded:
        level = packet.protocol_level if isinstance(packet, Connect) else final_version
        assert level is not None
        again = Decoder(level, role=None).feed(encode(packet, level))
        assert again == [packet], f"input {data.hex()}"


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=6).map(sorted)


@given(st.data(), st.sampled_from(SETUPS))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes(data: st.DataObject, setup: tuple[int | None, Role | None]) -> None:
    # A plausible first byte (a CONNECT when none was seen yet) gets past the
    # fixed header often enough for the rest to exercise the packet decoders.
    version, role = setup
    first = st.just(0x10) if version is None else st.integers(0, 255)
    wire = bytes([data.draw(first)]) + data.draw(st.binary(max_size=120))
    check(wire, version, role, data.draw(cuts_for(wire)))


def mutate(wire: bytes, rng: random.Random) -> bytes:
    """Bit flips, byte changes, truncation, insertion, deletion, length byte nudges."""
    data = bytearray(wire)
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        i = rng.randrange(len(data))
        op = rng.randrange(6)
        if op == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[i] = rng.randrange(256)
        elif op == 2:
            del data[i:]
        elif op == 3:
            data[i:i] = rng.randbytes(rng.randint(1, 3))
        elif op == 4:
            del data[i : i + rng.randint(1, 4)]
        elif len(data) > 1:
            # The first packet's remaining length (when it is one byte long).
            data[1] = (data[1] + rng.choice((-3, -2, -1, 1, 2, 3))) % 256
    return bytes(data)


@given(st.sampled_from(SETUPS), st.data(), st.randoms(use_true_random=False))
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_packets(
    setup: tuple[int | None, Role | None], data: st.DataObject, rng: random.Random
) -> None:
    version, role = setup
    level = version if version is not None else data.draw(st.sampled_from([3, 4, 5]))
    sent = data.draw(st.lists(packets(level), min_size=1, max_size=3))
    if version is None:
        sent.insert(0, Connect("fuzz", protocol_level=level))
    wire = b"".join(encode(p, level) for p in sent)
    # Generating valid packets costs far more than decoding them: mutate each
    # stream several times over.
    for _ in range(8):
        mutated = mutate(wire, rng)
        cuts = sorted(rng.randrange(len(mutated) + 1) for _ in range(rng.randrange(5)))
        check(mutated, version, role, cuts)
