#!/usr/bin/python3
"""Text to a race language-model dataset (HDF5, DESIGN section 4), byte level or byte-level BPE.

Reads plain text or gzip/dictzip-compressed text (e.g. the GCIDE dictionary of Debian's dict-gcide,
/usr/share/dictd/gcide.dict.dz), cuts it into documents at blank lines, and writes /train/tokens,
/val/tokens, /train/doc_offsets, /val/doc_offsets (uint64 document starts) and the /tokenizer table.
With --tokenizer bytes (the default) the tokens are the bytes (uint8). With --tokenizer bpe a byte-level
BPE of --vocab-size ids (specials included) is first trained on the first --bpe-sample-bytes of the
corpus, then every document is encoded (uint16 ids) by the rule stated in bpe.py, which the C++ side
must follow to encode prompts the same way. The split is deterministic: every Nth document goes to val
(N = 1 / val_fraction), so the same input always gives the same file. The input is streamed in blocks,
so memory stays far below the corpus size.
"""
import argparse
import collections
import gzip
import os
import sys

import bpe
from race_h5 import SPECIALS, LmSplit, atomic_h5, write_byte_tokenizer, write_tokenizer


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


def bpe_pieces(args):
    """The BPE pieces learned from the first --bpe-sample-bytes (and at most --max-bytes) of the input."""
    limit = min(n for n in (args.bpe_sample_bytes, args.max_bytes, float("inf")) if n)
    counts, read = collections.Counter(), 0
    with open_text(args.input) as stream:
        for doc in documents(stream):
            counts.update(bpe.chunks(doc))
            read += len(doc)
            if read >= limit:
                break
    pieces = bpe.train(counts, args.vocab_size - len(SPECIALS))
    if len(pieces) + len(SPECIALS) < args.vocab_size:
        raise ValueError(f"{args.input}: its first {read} bytes give only {len(pieces) - 256} merges; "
                         f"--vocab-size {args.vocab_size} needs {args.vocab_size - 256 - len(SPECIALS)} "
                         f"(use at most {len(pieces) + len(SPECIALS)} or a larger --bpe-sample-bytes)")
    return pieces


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="/usr/share/dictd/gcide.dict.dz",
                        help="text file, plain or gzip/dictzip (default: Debian's GCIDE dictionary)")
    parser.add_argument("--output", required=True, help="HDF5 file to write (replaced atomically)")
    parser.add_argument("--val-fraction", type=float, default=0.02,
                        help="share of documents for validation, in (0, 0.5] (default 0.02)")
    parser.add_argument("--max-bytes", type=int, default=0, help="stop after this many input bytes (0: all)")
    parser.add_argument("--tokenizer", choices=("bytes", "bpe"), default="bytes",
                        help="bytes: one token per byte (default); bpe: byte-level BPE trained on the input")
    parser.add_argument("--vocab-size", type=int,
                        help=f"with --tokenizer bpe: ids in all, 256 bytes + merges + {len(SPECIALS)} specials, "
                        f"in [{257 + len(SPECIALS)}, 65536] (default 8192)")
    parser.add_argument("--bpe-sample-bytes", type=int,
                        help="with --tokenizer bpe: train on this many leading bytes (0: all; default 8388608)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.input):
        parser.error(f"--input {args.input}: no such file (for GCIDE: apt-get install dict-gcide)")
    if not 0.0 < args.val_fraction <= 0.5:
        parser.error(f"--val-fraction {args.val_fraction}: expected a number in (0, 0.5]")
    if args.max_bytes < 0:
        parser.error(f"--max-bytes {args.max_bytes}: expected 0 (all) or a positive count")
    if args.tokenizer == "bytes":
        for flag, value in (("--vocab-size", args.vocab_size), ("--bpe-sample-bytes", args.bpe_sample_bytes)):
            if value is not None:
                parser.error(f"{flag} {value}: applies to --tokenizer bpe only")
    if args.tokenizer == "bpe":
        args.vocab_size = 8192 if args.vocab_size is None else args.vocab_size
        args.bpe_sample_bytes = 8 << 20 if args.bpe_sample_bytes is None else args.bpe_sample_bytes
        if not 257 + len(SPECIALS) <= args.vocab_size <= 65536:
            parser.error(f"--vocab-size {args.vocab_size}: expected a count in [{257 + len(SPECIALS)}, 65536] "
                         f"(256 bytes, at least one merge and {len(SPECIALS)} specials, ids fitting uint16)")
        if args.bpe_sample_bytes < 0:
            parser.error(f"--bpe-sample-bytes {args.bpe_sample_bytes}: expected 0 (all) or a positive count")
    every = max(2, round(1.0 / args.val_fraction))
    try:
        encoder = bpe.Encoder(bpe_pieces(args)) if args.tokenizer == "bpe" else None
        with open_text(args.input) as stream, atomic_h5(args.output) as h5:
            dtype = "uint8" if encoder is None else "uint16"
            train, val = LmSplit(h5, "train", dtype), LmSplit(h5, "val", dtype)
            read = 0
            for index, doc in enumerate(documents(stream)):
                (val if index % every == every - 1 else train).add(doc if encoder is None else encoder.encode(doc))
                read += len(doc)
                if args.max_bytes and read >= args.max_bytes:
                    break
            train.close()
            val.close()
            if train.size == 0 or val.size == 0:
                raise ValueError(f"{args.input}: too little text for a train and a val split "
                                 f"({train.size} and {val.size} tokens)")
            if encoder is None:
                write_byte_tokenizer(h5)
            else:
                write_tokenizer(h5, "bpe", encoder.pieces)
            counts = (train.size, len(train.offsets), val.size, len(val.offsets))
    except (OSError, ValueError, EOFError) as error:
        print(f"text_to_h5.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: train {counts[0]} tokens in {counts[1]} documents, val {counts[2]} tokens in "
          f"{counts[3]} documents, {args.tokenizer} tokenizer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
