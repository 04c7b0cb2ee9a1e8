"""An independent Eddystone-EID computation for the tests, written from the spec text alone.

Deliberately unlike ``edge/identity/eid.py``: blocks built in a ``bytearray`` with ``struct``, arithmetic
instead of shifts, and AES in CBC mode with a zero IV (over one block that is the bare AES permutation, as
ECB is). If both agree on random inputs and on the published vectors, neither shares a layout mistake.
Source: google/eddystone, eddystone-eid/eid-computation.md ("Computing an EID value").
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16


def aes_one_block(key: bytes, block: bytes) -> bytes:
    assert len(key) == BLOCK and len(block) == BLOCK
    # CBC: C = E(K, P xor IV); with IV = 0 and one block, C = E(K, P).
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(BLOCK))).encryptor()
    out = encryptor.update(block) + encryptor.finalize()
    assert len(out) == BLOCK
    return out


def temporary_key(identity_key: bytes, time_counter: int) -> bytes:
    data = bytearray(BLOCK)  # offsets 0-10 and 12-13: padding 0x00
    data[11] = 0xFF  # salt
    struct.pack_into(">H", data, 14, (time_counter // 65536) % 65536)  # top 16 bits of the counter
    return aes_one_block(identity_key, bytes(data))


def reference_eid(identity_key: bytes, rotation_exponent: int, time_counter: int) -> bytes:
    data = bytearray(BLOCK)  # offsets 0-10: padding 0x00
    data[11] = rotation_exponent
    quantum = 2**rotation_exponent
    struct.pack_into(">I", data, 12, time_counter - time_counter % quantum)  # the K low bits cleared
    return aes_one_block(temporary_key(identity_key, time_counter), bytes(data))[:8]
