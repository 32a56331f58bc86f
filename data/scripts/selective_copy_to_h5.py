#!/usr/bin/python3
"""Selective copying (Gu & Dao 2023, Mamba section 4.1.1) as a race LM dataset with a loss mask, byte level.

Each example is one document of exactly --context + 1 bytes:

  a window of --context - --tokens bytes, all the blank "." except --tokens data bytes at random
  distinct positions, then the separator "|", then the same data bytes in their order of appearance.

Data bytes are drawn with replacement from the first --vocab letters of "a".."z", "A".."Z" (neither "."
nor "|"). /<split>/loss_mask is 1 on the copied bytes after the separator only, so the answer is
determined by the input: the non-blank bytes before the separator, in order. Seeded: the same arguments
give byte-identical datasets.
"""
import argparse
import random
import string
import sys

from race_h5 import atomic_h5, write_examples

LETTERS = (string.ascii_lowercase + string.ascii_uppercase).encode()
BLANK, SEPARATOR = b".", b"|"


def example(rng, tokens, vocab, length):
    """(tokens, loss_mask) as bytes for one example of `length` bytes."""
    window = length - 1 - tokens
    data = bytes(rng.choice(LETTERS[:vocab]) for _ in range(tokens))
    row = bytearray(BLANK * window)
    for position, byte in zip(sorted(rng.sample(range(window), tokens)), data):
        row[position] = byte
    return bytes(row) + SEPARATOR + data, bytes(window + 1) + b"\x01" * tokens


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="HDF5 file to write (replaced atomically)")
    parser.add_argument("--context", type=int, default=4096, help="example length minus one (default 4096)")
    parser.add_argument("--tokens", type=int, default=16, help="data bytes to copy per example (default 16)")
    parser.add_argument("--vocab", type=int, default=16,
                        help=f"distinct data bytes, 2-{len(LETTERS)} (default 16)")
    parser.add_argument("--train-examples", type=int, default=10000, help="training examples (default 10000)")
    parser.add_argument("--val-examples", type=int, default=500, help="validation examples (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if not 2 <= args.vocab <= len(LETTERS):
        parser.error(f"--vocab {args.vocab}: expected a count in [2, {len(LETTERS)}]")
    if args.tokens < 1:
        parser.error(f"--tokens {args.tokens}: expected a count >= 1")
    if args.context < 2 * args.tokens:
        parser.error(f"--context {args.context}: expected at least 2 x --tokens = {2 * args.tokens} (a window "
                     "holding the data bytes, the separator and the copy)")
    if args.train_examples < 1 or args.val_examples < 1:
        parser.error("--train-examples and --val-examples must be >= 1")
    rng = random.Random(args.seed)
    try:
        with atomic_h5(args.output) as h5:
            write_examples(h5, args.train_examples, args.val_examples,
                           lambda: example(rng, args.tokens, args.vocab, args.context + 1))
    except OSError as error:
        print(f"selective_copy_to_h5.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {args.train_examples} train and {args.val_examples} val selective-copy examples "
          f"of {args.context + 1} bytes, {args.tokens} data bytes from {args.vocab}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
