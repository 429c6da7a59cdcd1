"""The image format refuses everything but exactly what the signed manifest lists."""
import gzip
import io
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compiler.pack import archive_bytes, pack_image
from runtime.image import MANIFEST, SIGNATURE, ImageError, Manifest, read_image

FILES = {
    "config.json": b'{"cameras": []}',
    "models/detector.onnx": bytes(range(256)) * 8,
    "runtime/main.py": b"print('hello')\n",
    "boot/start.sh": b"#!/bin/sh\nexec python3 -m runtime\n",
}
FIELDS = dict(
    site="demo", device="cam", board="host-cpu", compatible=("host-cpu",), role="camera",
    image_version=3, spec_sha256="ab" * 32, builder_version="0.1.0",
)


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def image(key):
    blob, _ = pack_image(FILES, key, **FIELDS)
    return blob


def _entries(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _retar(entries: dict[str, bytes], extra=None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra:
            extra(tar)
    return gzip.compress(raw.getvalue())


def test_same_inputs_give_identical_bytes(key):
    a, _ = pack_image(FILES, key, **FIELDS)
    b, _ = pack_image(dict(reversed(list(FILES.items()))), key, **FIELDS)
    assert a == b


def test_fresh_image_verifies(image, key):
    v = read_image(image, [key.public_key()], board="host-cpu")
    assert v.files == FILES
    assert v.manifest.image_version == 3 and v.manifest.device == "cam"


def test_manifest_round_trips(image, key):
    m = read_image(image, [key.public_key()]).manifest
    assert Manifest.from_json(m.to_json()) == m


def test_every_flipped_byte_in_the_payload_is_refused(image, key):
    entries = _entries(image)
    for name in FILES:
        for pos in (0, len(FILES[name]) // 2, len(FILES[name]) - 1):
            bad = dict(entries)
            data = bytearray(bad[name])
            data[pos] ^= 0x01
            bad[name] = bytes(data)
            with pytest.raises(ImageError, match="sha256 mismatch"):
                read_image(_retar(bad), [key.public_key()])


def test_flipped_bytes_anywhere_in_the_archive_are_refused(image, key):
    # every 97th byte of the compressed archive: gzip's CRC, tar headers, manifest and payload.
    # A flip in deflate's unused padding bits changes nothing that is read: then the verified
    # content must be exactly the original.
    original = read_image(image, [key.public_key()])
    for pos in range(0, len(image), 97):
        data = bytearray(image)
        data[pos] ^= 0x40
        try:
            v = read_image(bytes(data), [key.public_key()])
        except ImageError:
            continue
        assert v.files == original.files and v.raw_manifest == original.raw_manifest, f"byte {pos} changed content unnoticed"


def test_tampered_manifest_is_refused(image, key):
    entries = _entries(image)
    entries[MANIFEST] = entries[MANIFEST].replace(b'"image_version": 3', b'"image_version": 9')
    with pytest.raises(ImageError, match="signature"):
        read_image(_retar(entries), [key.public_key()])


def test_other_key_is_refused(image):
    with pytest.raises(ImageError, match="signature does not match"):
        read_image(image, [Ed25519PrivateKey.generate().public_key()])


def test_removed_file_is_refused(image, key):
    entries = _entries(image)
    del entries["runtime/main.py"]
    with pytest.raises(ImageError, match="missing from the archive"):
        read_image(_retar(entries), [key.public_key()])


@pytest.mark.parametrize("name", ["../evil.py", "/etc/passwd", "models/../../x", "./config.json", "C:/x"])
def test_unsafe_paths_are_refused(image, key, name):
    entries = _entries(image)
    entries[name] = b"x"
    with pytest.raises(ImageError, match="path"):
        read_image(_retar(entries), [key.public_key()])


def test_unlisted_extra_file_is_refused(image, key):
    entries = _entries(image)
    entries["runtime/backdoor.py"] = b"import os"
    with pytest.raises(ImageError, match="not in the signed manifest"):
        read_image(_retar(entries), [key.public_key()])


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE])
def test_links_and_special_entries_are_refused(image, key, kind):
    def add(tar):
        info = tarfile.TarInfo("runtime/link")
        info.type = kind
        info.linkname = "/etc/shadow"
        tar.addfile(info)

    with pytest.raises(ImageError, match="regular files only"):
        read_image(_retar(_entries(image), extra=add), [key.public_key()])


def test_duplicate_entry_is_refused(image, key):
    entries = _entries(image)

    def dup(tar):
        info = tarfile.TarInfo("config.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))

    with pytest.raises(ImageError, match="twice"):
        read_image(_retar(entries, extra=dup), [key.public_key()])


def test_wrong_board_is_refused(image, key):
    with pytest.raises(ImageError, match="not for board 'rk3588'"):
        read_image(image, [key.public_key()], board="rk3588")


@pytest.mark.parametrize("blob", [b"", b"not gzip at all", gzip.compress(b"not a tar")])
def test_garbage_is_refused(key, blob):
    with pytest.raises(ImageError):
        read_image(blob, [key.public_key()])


def test_missing_signature_is_refused(image, key):
    entries = _entries(image)
    del entries[SIGNATURE]
    with pytest.raises(ImageError, match="missing manifest.sig"):
        read_image(_retar(entries), [key.public_key()])


def test_no_trusted_key_is_refused(image):
    with pytest.raises(ImageError, match="no trusted public key"):
        read_image(image, [])


def test_packer_refuses_unsafe_names(key):
    with pytest.raises(ImageError):
        archive_bytes({"../x": b""})
