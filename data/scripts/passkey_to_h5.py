#!/usr/bin/python3
"""Passkey retrieval (needle in a haystack) as a race LM dataset with a loss mask, byte level.

Each example is one document of exactly --context + 1 bytes:

  haystack with the needle "The pass key is 71432. Remember it. " inserted at --depth, then
  "\nWhat is the pass key? The pass key is 71432"

The haystack is the classic filler "The grass is green. The sky is blue. The sun is yellow. Here we go.
There and back again. " repeated, or, with --filler-file, a slice of that file starting at a random
offset (wrapping around at its end; the file is read by seeking, never loaded whole). Any "pass key" in
the filler is written "pass-key", so the needle is the only statement of the key and the answer is
determined by the input. The needle goes at the last sentence end (". "), else the last whitespace,
within 256 bytes before the position --depth x haystack length (or at that position if there is
neither); --depth is a fraction in [0, 1] or 'random' (uniform per example). The key is --digits random
decimal digits. /<split>/loss_mask is 1 on the key's digits at the end only. To evaluate beyond the
training length, write another file with a larger --context. Seeded: the same arguments give
byte-identical datasets.
"""
import argparse
import contextlib
import os
import random
import sys

from race_h5 import atomic_h5, write_examples

SENTENCES = b"The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "The pass key is {}. Remember it. "
QUESTION = b"\nWhat is the pass key? The pass key is "
SEARCH = 256  # how far before the depth position a sentence end or whitespace is looked for


class Filler:
    """Haystack bytes: the classic sentences, or cyclic slices of a file at random offsets."""

    def __init__(self, path):
        self.file = open(path, "rb") if path else None
        self.size = os.fstat(self.file.fileno()).st_size if path else len(SENTENCES)

    def close(self):
        if self.file is not None:
            self.file.close()

    def take(self, rng, count):
        if self.file is None:
            return (SENTENCES * (count // self.size + 1))[:count]
        start = rng.randrange(self.size)
        parts, need = [], count
        self.file.seek(start)
        while need:
            part = self.file.read(need)
            if not part:
                self.file.seek(0)
                continue
            parts.append(part)
            need -= len(part)
        return b"".join(parts).replace(b"pass key", b"pass-key")


def insertion_point(haystack, target):
    window_start = max(0, target - SEARCH)
    for separator in (b". ", b" ", b"\n"):
        found = haystack.rfind(separator, window_start, target)
        if found >= 0:
            return found + len(separator)
    return target


def example(rng, filler, length, digits, depth):
    """(tokens, loss_mask) as bytes for one example of `length` bytes."""
    key = "".join(rng.choice("0123456789") for _ in range(digits)).encode()
    needle = NEEDLE.format(key.decode()).encode()
    haystack = filler.take(rng, length - len(needle) - len(QUESTION) - digits)
    fraction = rng.random() if depth == "random" else depth
    at = insertion_point(haystack, round(fraction * len(haystack)))
    tokens = haystack[:at] + needle + haystack[at:] + QUESTION + key
    return tokens, bytes(length - digits) + b"\x01" * digits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="HDF5 file to write (replaced atomically)")
    parser.add_argument("--context", type=int, default=4096, help="example length minus one (default 4096)")
    parser.add_argument("--digits", type=int, default=5, help="digits of the pass key, 1-32 (default 5)")
    parser.add_argument("--depth", default="random",
                        help="needle position as a fraction of the haystack in [0, 1], or 'random' (default)")
    parser.add_argument("--filler-file", help="text file to take the haystack from (default: the classic sentences)")
    parser.add_argument("--train-examples", type=int, default=2000, help="training examples (default 2000)")
    parser.add_argument("--val-examples", type=int, default=200, help="validation examples (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if not 1 <= args.digits <= 32:
        parser.error(f"--digits {args.digits}: expected a count in [1, 32]")
    depth = args.depth
    if depth != "random":
        try:
            depth = float(depth)
        except ValueError:
            depth = -1.0
        if not 0.0 <= depth <= 1.0:
            parser.error(f"--depth {args.depth}: expected a fraction in [0, 1] or 'random'")
    if args.train_examples < 1 or args.val_examples < 1:
        parser.error("--train-examples and --val-examples must be >= 1")
    need = len(NEEDLE.format("0" * args.digits)) + len(QUESTION) + args.digits
    if args.context + 1 < need:
        parser.error(f"--context {args.context}: an example needs at least {need} bytes (needle, question "
                     f"and key), but --context + 1 is {args.context + 1}")
    if args.filler_file is not None:
        if not os.path.isfile(args.filler_file):
            parser.error(f"--filler-file {args.filler_file}: no such file")
        if os.path.getsize(args.filler_file) == 0:
            parser.error(f"--filler-file {args.filler_file}: the file is empty")
    rng = random.Random(args.seed)
    try:
        with contextlib.closing(Filler(args.filler_file)) as filler, atomic_h5(args.output) as h5:
            write_examples(h5, args.train_examples, args.val_examples,
                           lambda: example(rng, filler, args.context + 1, args.digits, depth))
    except OSError as error:
        print(f"passkey_to_h5.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {args.train_examples} train and {args.val_examples} val passkey examples of "
          f"{args.context + 1} bytes, {args.digits} digits, depth {args.depth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
