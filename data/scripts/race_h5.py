"""Pieces shared by the data scripts: the byte-level tokenizer table (DESIGN section 4, ids as
lib/train/tokenizer.h) and writing an HDF5 file atomically (temporary name, then rename)."""
import contextlib
import os

import h5py
import numpy as np

SPECIALS = ["<pad>", "<mask>", "<cls>", "<bos>", "<eos>"]  # ids 256..260
SPECIAL_ID_NAMES = ["pad_id", "mask_id", "cls_id", "bos_id", "eos_id"]


def write_byte_tokenizer(h5):
    group = h5.create_group("tokenizer")
    group.attrs["kind"] = "bytes"
    group.attrs["vocab_size"] = np.int64(256 + len(SPECIALS))
    for i, name in enumerate(SPECIAL_ID_NAMES):
        group.attrs[name] = np.int64(256 + i)
    pieces = [bytes([b]) for b in range(256)] + [s.encode() for s in SPECIALS]
    group.create_dataset("piece_bytes", data=np.frombuffer(b"".join(pieces), dtype=np.uint8))
    group.create_dataset("piece_offsets", data=np.cumsum([0] + [len(p) for p in pieces]).astype(np.uint64))


@contextlib.contextmanager
def atomic_h5(path):
    """Yields an open h5py.File writing `path`.tmp; renames it onto `path` only if the block succeeds."""
    temporary = path + ".tmp"
    try:
        with h5py.File(temporary, "w") as h5:
            yield h5
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
