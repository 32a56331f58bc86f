#!/usr/bin/python3
"""Text to a race language-model dataset (HDF5, DESIGN section 4), byte level.

Reads plain text or gzip/dictzip-compressed text (e.g. the GCIDE dictionary of Debian's dict-gcide,
/usr/share/dictd/gcide.dict.dz), cuts it into documents at blank lines, and writes /train/tokens,
/val/tokens (uint8 byte ids), /train/doc_offsets, /val/doc_offsets (uint64 document starts) and the
byte-level /tokenizer table. The split is deterministic: every Nth document goes to val (N = 1 /
val_fraction), so the same input always gives the same file. The input is streamed in blocks, so
memory stays far below the corpus size.
"""
import argparse
import gzip
import os
import sys

import numpy as np

from race_h5 import LmSplit, atomic_h5, write_byte_tokenizer


def open_text(path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def documents(stream, block_size=1 << 20):
    """Yields documents (bytes) separated by blank lines, reading the stream in blocks."""
    pending = b""
    while True:
        block = stream.read(block_size)
        if not block:
            break
        pending += block
        parts = pending.split(b"\n\n")
        pending = parts.pop()
        for part in parts:
            if part.strip():
                yield part + b"\n\n"
    if pending.strip():
        yield pending


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="/usr/share/dictd/gcide.dict.dz",
                        help="text file, plain or gzip/dictzip (default: Debian's GCIDE dictionary)")
    parser.add_argument("--output", required=True, help="HDF5 file to write (replaced atomically)")
    parser.add_argument("--val-fraction", type=float, default=0.02,
                        help="share of documents for validation, in (0, 0.5] (default 0.02)")
    parser.add_argument("--max-bytes", type=int, default=0, help="stop after this many input bytes (0: all)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.input):
        parser.error(f"--input {args.input}: no such file (for GCIDE: apt-get install dict-gcide)")
    if not 0.0 < args.val_fraction <= 0.5:
        parser.error(f"--val-fraction {args.val_fraction}: expected a number in (0, 0.5]")
    every = max(2, round(1.0 / args.val_fraction))
    try:
        with open_text(args.input) as stream, atomic_h5(args.output) as h5:
            train, val = LmSplit(h5, "train"), LmSplit(h5, "val")
            read = 0
            for index, doc in enumerate(documents(stream)):
                (val if index % every == every - 1 else train).add(doc)
                read += len(doc)
                if args.max_bytes and read >= args.max_bytes:
                    break
            train.close()
            val.close()
            if train.size == 0 or val.size == 0:
                raise ValueError(f"{args.input}: too little text for a train and a val split "
                                 f"({train.size} and {val.size} bytes)")
            write_byte_tokenizer(h5)
            counts = (train.size, len(train.offsets), val.size, len(val.offsets))
    except (OSError, ValueError, EOFError) as error:
        print(f"text_to_h5.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: train {counts[0]} bytes in {counts[1]} documents, val {counts[2]} bytes in "
          f"{counts[3]} documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
