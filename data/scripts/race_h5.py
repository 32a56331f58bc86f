"""Pieces shared by the data scripts: the tokenizer table (DESIGN section 4, ids as lib/train/tokenizer.h),
writing an HDF5 file atomically (temporary name, then rename) and appending language-model documents to
/<split>/tokens, /<split>/doc_offsets and the optional /<split>/loss_mask as they are made."""
import contextlib
import os

import h5py
import numpy as np

SPECIALS = ["<pad>", "<mask>", "<cls>", "<bos>", "<eos>"]  # the last ids: 256..260 for bytes
SPECIAL_ID_NAMES = ["pad_id", "mask_id", "cls_id", "bos_id", "eos_id"]


def write_tokenizer(h5, kind, pieces):
    """/tokenizer of `kind` whose ids are `pieces` (bytes each) followed by the special tokens."""
    group = h5.create_group("tokenizer")
    group.attrs["kind"] = kind
    group.attrs["vocab_size"] = np.int64(len(pieces) + len(SPECIALS))
    for i, name in enumerate(SPECIAL_ID_NAMES):
        group.attrs[name] = np.int64(len(pieces) + i)
    pieces = list(pieces) + [s.encode() for s in SPECIALS]
    group.create_dataset("piece_bytes", data=np.frombuffer(b"".join(pieces), dtype=np.uint8))
    group.create_dataset("piece_offsets", data=np.cumsum([0] + [len(p) for p in pieces]).astype(np.uint64))


def write_byte_tokenizer(h5):
    write_tokenizer(h5, "bytes", [bytes([b]) for b in range(256)])


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


class LmSplit:
    """Appends documents to /<name>/tokens, /<name>/doc_offsets and, with_mask, /<name>/loss_mask (uint8,
    1 where the token is a prediction target), buffering about 4 MiB so memory stays small."""

    def __init__(self, h5, name, dtype="uint8", with_mask=False):
        self.h5, self.name = h5, name
        self.tokens = h5.create_dataset(f"{name}/tokens", shape=(0,), maxshape=(None,), dtype=dtype,
                                        chunks=(1 << 16,))
        self.mask = (h5.create_dataset(f"{name}/loss_mask", shape=(0,), maxshape=(None,), dtype="uint8",
                                       chunks=(1 << 16,)) if with_mask else None)
        self.offsets = []
        self.size = 0
        self.buffer, self.mask_buffer = [], []
        self.buffered = 0

    def add(self, tokens, mask=None):
        """tokens: bytes or a 1-D sequence of ids; mask (with_mask only): bytes or uint8 array of 0/1, same length."""
        tokens = (np.frombuffer(tokens, dtype=np.uint8) if isinstance(tokens, bytes)
                  else np.asarray(tokens, dtype=self.tokens.dtype))
        self.offsets.append(self.size + self.buffered)
        self.buffer.append(tokens)
        if self.mask is not None:
            mask = np.frombuffer(mask, dtype=np.uint8) if isinstance(mask, bytes) else np.asarray(mask, np.uint8)
            assert len(mask) == len(tokens)
            self.mask_buffer.append(mask)
        self.buffered += len(tokens)
        if self.buffered >= 1 << 22:
            self.flush()

    def flush(self):
        if not self.buffer:
            return
        data = np.concatenate(self.buffer).astype(self.tokens.dtype, copy=False)
        end = self.size + len(data)
        self.tokens.resize((end,))
        self.tokens[self.size:] = data
        if self.mask is not None:
            self.mask.resize((end,))
            self.mask[self.size:] = np.concatenate(self.mask_buffer)
        self.size = end
        self.buffer, self.mask_buffer, self.buffered = [], [], 0

    def close(self):
        self.flush()
        self.h5.create_dataset(f"{self.name}/doc_offsets", data=np.array(self.offsets, dtype=np.uint64))


def write_examples(h5, train_count, val_count, make_example):
    """A synthetic task's file: train_count and val_count documents from make_example() -> (bytes, loss mask),
    one per call in that order, then the byte tokenizer."""
    for split, count in (("train", train_count), ("val", val_count)):
        writer = LmSplit(h5, split, with_mask=True)
        for _ in range(count):
            writer.add(*make_example())
        writer.close()
    write_byte_tokenizer(h5)
