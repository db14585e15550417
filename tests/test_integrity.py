"""Value envelopes: every byte checked, signatures verified before anything is unpickled."""

from __future__ import annotations

import os
import pickle
import struct
import zlib

import pytest

from klepto import integrity
from klepto.errors import CorruptionError, SignatureError, UnsafeDataError
from klepto.integrity import KEY_ENV, Packer, resolve_key, seal, unseal


class Exploit:
    """Unpickling this creates a marker file: proof that pickle ran attacker code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield str(path)
    assert not path.exists(), "a refused payload was unpickled"


def test_seal_and_unseal():
    blob = seal(b"payload")
    assert blob[:2] == b"KV" and unseal(blob) == (b"payload", 0)
    signed = seal(b"payload", key=b"k", compressed=True)
    payload, flags = unseal(signed, key=b"k")
    assert payload == b"payload" and flags == integrity.SIGNED | integrity.COMPRESSED


def test_every_single_byte_flip_is_detected():
    for key in (None, b"secret"):
        blob = seal(b"some value bytes", key=key)
        for pos in range(len(blob)):
            for mask in (0x01, 0x80):
                damaged = blob[:pos] + bytes([blob[pos] ^ mask]) + blob[pos + 1 :]
                with pytest.raises(CorruptionError):
                    unseal(damaged, key=key)


def test_truncation_and_zeroes_are_detected():
    blob = seal(b"x" * 100)
    for size in range(len(blob)):
        with pytest.raises(CorruptionError):
            unseal(blob[:size])
    with pytest.raises(CorruptionError):
        unseal(bytes(len(blob)))
    with pytest.raises(CorruptionError) as caught:
        unseal(blob[:5], where={"path": "store.db", "key": "k1"})
    assert "store.db" in str(caught.value) and "'k1'" in str(caught.value)


def test_unsigned_payload_refused_by_a_signed_packer(marker):
    evil = seal(pickle.dumps(Exploit(marker)))
    packer = Packer("pickle", key=b"secret")
    with pytest.raises(SignatureError, match="unsigned"):
        packer.unpack(evil)


def test_forged_and_tampered_payloads_refused_before_unpickling(marker):
    packer = Packer("pickle", key=b"secret")
    forged = seal(pickle.dumps(Exploit(marker)), key=b"attacker's key")
    with pytest.raises(SignatureError, match="mismatch"):
        packer.unpack(forged)
    # Tampered: the payload of a genuine signed value replaced, the CRC recomputed.
    genuine = packer.pack({"fine": 1})
    header = genuine[:8]
    tag = genuine[8:40]
    body = tag + pickle.dumps(Exploit(marker))
    crc = zlib.crc32(body, zlib.crc32(bytes(header[2:4])))
    tampered = header[:4] + struct.pack(">I", crc) + body
    with pytest.raises(SignatureError, match="mismatch"):
        packer.unpack(tampered)
    assert packer.unpack(genuine) == {"fine": 1}


def test_signed_payload_needs_the_key():
    blob = Packer("json", key=b"secret").pack([1])
    with pytest.raises(SignatureError, match="provide the HMAC key"):
        Packer("json").unpack(blob)


def test_unsigned_pickle_still_runs_without_a_key(tmp_path):
    """The default (unsigned, unsafe) mode is what the docs warn about: pickle runs code."""
    marker = tmp_path / "ran"
    Packer("pickle").unpack(seal(pickle.dumps(Exploit(str(marker)))))
    assert marker.exists()


def test_safe_mode(marker):
    with pytest.raises(UnsafeDataError, match="serializer='safe'"):
        Packer("pickle", safe=True)
    with pytest.raises(UnsafeDataError):
        Packer("dill", safe=True)
    Packer("pickle", safe=True, key=b"k")  # signed pickles are allowed
    packer = Packer("safe", safe=True)
    assert packer.unpack(packer.pack((1, b"2"))) == (1, b"2")
    with pytest.raises(ValueError):  # a pickle is not safe-format data: never unpickled
        packer.unpack(seal(pickle.dumps(Exploit(marker))))


@pytest.mark.parametrize("codec", [None, "zlib", "lzma", "bz2", "zstd"])
@pytest.mark.parametrize("serializer", ["pickle", "dill", "json", "safe"])
def test_packer_round_trips_and_settings(serializer, codec):
    key = b"the-secret-key"
    packer = Packer(serializer, codec, key=key)
    value = {"list": [1, 2, 3], "text": "x" * 1000}
    assert packer.unpack(packer.pack(value)) == value
    settings = packer.settings()
    assert settings["serializer"] == serializer and settings["codec"] == codec
    assert settings["signed"] is True and key not in repr(settings).encode()
    again = Packer.from_settings(settings, key=key)
    assert again.unpack(packer.pack(value)) == value


def test_from_settings_requires_the_key_of_a_signed_store(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    settings = Packer("json", key=b"k").settings()
    with pytest.raises(SignatureError, match=KEY_ENV):
        Packer.from_settings(settings)
    monkeypatch.setenv(KEY_ENV, "k")
    assert Packer.from_settings(settings).key == b"k"


def test_compressed_value_without_codec_is_an_error():
    blob = Packer("json", "zlib").pack([1])
    with pytest.raises(CorruptionError, match="without a codec"):
        Packer("json").unpack(blob)


def test_resolve_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert resolve_key() is None and resolve_key("abc") == b"abc" and resolve_key(b"x") == b"x"
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert resolve_key() == b"from-env"
    monkeypatch.setenv(KEY_ENV, "")
    assert resolve_key() is None
    with pytest.raises(ValueError):
        resolve_key(b"")


def test_key_is_not_stored_in_the_envelope():
    key = os.urandom(32)
    blob = Packer("json", key=key).pack("v")
    assert key not in blob


def test_context_binds_an_envelope_to_its_key():
    """A sealed value copied under another key's digest is refused, signed or not."""
    from klepto.errors import CorruptionError, SignatureError
    from klepto.integrity import Packer

    for key in (None, b"secret"):
        packer = Packer("pickle", key=key)
        blob = packer.pack({"v": 1}, context=b"digest-a")
        assert packer.unpack(blob, context=b"digest-a") == {"v": 1}
        with pytest.raises(CorruptionError):
            packer.unpack(blob, context=b"digest-b")
        with pytest.raises(CorruptionError):
            packer.unpack(blob)  # no context at all
    signed = Packer("pickle", key=b"secret")
    unsigned_blob = Packer("pickle").pack(1, context=b"d")
    with pytest.raises(SignatureError):
        signed.unpack(unsigned_blob, context=b"d")


def test_empty_context_is_the_old_envelope():
    from klepto.integrity import seal, unseal

    assert unseal(seal(b"x"))[0] == b"x"
    assert seal(b"x") == seal(b"x", context=b"")


def _buffered(obj, protocol=5) -> bytes:
    """An envelope of ``obj`` with its large buffers out of band, as a file_archive writes."""
    from klepto import _pickleoob

    data, buffers = _pickleoob.dumps(obj, protocol)
    return b"".join(map(bytes, integrity.seal_parts(_pickleoob.payload_parts(data, buffers))))


@pytest.mark.parametrize("serializer", ["pickle", "dill"])
def test_out_of_band_buffers_round_trip_and_are_checked(serializer):
    big = bytearray(os.urandom(200_000))
    blob = _buffered(("tag", big, [1, 2]))
    assert blob[3] == integrity.BUFFERS
    tag, loaded, rest = Packer(serializer).unpack(blob)
    assert (tag, loaded, rest) == ("tag", big, [1, 2]) and isinstance(loaded, bytearray)
    for position in (20, len(blob) // 2, len(blob) - 1):  # table, buffer, last byte
        damaged = bytearray(blob)
        damaged[position] ^= 0x10
        with pytest.raises(CorruptionError):
            Packer(serializer).unpack(bytes(damaged))


def test_a_buffer_table_that_does_not_fit_its_payload_is_corruption():
    from klepto import _pickleoob

    for payload in (b"", b"\x01\x00", struct.pack("<IQ", 1, 1 << 40) + b"x"):
        with pytest.raises(CorruptionError):
            _pickleoob.loads(payload, {})


def test_stores_that_never_unpickle_refuse_out_of_band_envelopes(marker):
    blob = _buffered((Exploit(marker), bytearray(100_000)))
    for serializer in ("json", "safe"):
        with pytest.raises(CorruptionError):
            Packer(serializer).unpack(blob)
    assert not os.path.exists(marker)
    with pytest.raises(SignatureError):  # a signed store: unsigned, refused before loading
        Packer("dill", key=b"k").unpack(blob)
    assert not os.path.exists(marker)


def test_plain_payload_is_the_unsigned_uncompressed_fast_path():
    for payload in (b"", b"x" * 10, os.urandom(10_000)):
        blob = seal(payload, context=b"ctx")
        assert bytes(integrity.plain_payload(blob, b"ctx")) == payload
        assert integrity.plain_payload(blob, b"other") is None  # bound to its context
        damaged = bytearray(blob)
        damaged[-1 if payload else 5] ^= 1
        assert integrity.plain_payload(bytes(damaged), b"ctx") is None
    assert integrity.plain_payload(seal(b"x", key=b"k")) is None  # signed: the full path
    assert integrity.plain_payload(seal(b"x", compressed=True)) is None
    assert integrity.plain_payload(b"KV") is None
