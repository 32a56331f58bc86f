#!/usr/bin/python3
"""Multi-query associative recall (MQAR, Zoology: Arora et al. 2023) as a race LM dataset with a loss mask.

Each example is one document of exactly --context + 1 byte tokens (so a trainer with data.context =
--context and data.cross_documents = false sees it as one window):

  k1 v1 k2 v2 ... kN vN   then, over the rest of the window, the queried keys each followed by its value
                          (kq vq), at random two-token slots, every other position being the filler byte.

Keys are distinct within an example and drawn from the bytes 0x80-0xFF (128 keys); values are drawn with
replacement from the printable bytes 0x21-0x7E (94 values); the filler is the space 0x20, a byte in
neither set. Which keys are queried, in which order and at which slots is random. /<split>/loss_mask is 1
exactly on the value token of each query (the answer, determined by the pair with that key) and 0
everywhere else. --pairs takes one count or a list: each example draws its pair count uniformly from the
list, so a training file can mix counts while an evaluation by count uses one file per count. The
generator is seeded: the same arguments give byte-identical datasets.
"""
import argparse
import random
import sys

from race_h5 import atomic_h5, write_examples

KEYS = range(0x80, 0x100)
VALUES = range(0x21, 0x7F)
FILLER = 0x20


def example(rng, pairs, queries, length):
    """(tokens, loss_mask) as bytes for one example of `length` tokens."""
    keys = rng.sample(KEYS, pairs)
    values = [rng.choice(VALUES) for _ in keys]
    tokens = bytearray([FILLER]) * length
    mask = bytearray(length)
    for i, (key, value) in enumerate(zip(keys, values)):
        tokens[2 * i], tokens[2 * i + 1] = key, value
    asked = rng.sample(range(pairs), queries)
    slots = sorted(rng.sample(range((length - 2 * pairs) // 2), queries))
    for pair, slot in zip(asked, slots):
        at = 2 * pairs + 2 * slot
        tokens[at], tokens[at + 1] = keys[pair], values[pair]
        mask[at + 1] = 1
    return bytes(tokens), bytes(mask)


def pair_counts(text, parser):
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        parser.error(f"--pairs {text}: expected a count or a comma-separated list of counts, e.g. 4,8,16")
    if not all(1 <= c <= len(KEYS) for c in counts):
        parser.error(f"--pairs {text}: every count must be in [1, {len(KEYS)}] (the number of key bytes)")
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="HDF5 file to write (replaced atomically)")
    parser.add_argument("--pairs", default="4,8,16,32,64",
                        help="key-value pairs per example: a count or a list drawn from uniformly (default 4,8,16,32,64)")
    parser.add_argument("--queries", default="all",
                        help="queries per example: a count <= every pair count, or 'all' = one per pair (default all)")
    parser.add_argument("--context", type=int, default=512, help="example length minus one (default 512)")
    parser.add_argument("--train-examples", type=int, default=100000, help="training examples (default 100000)")
    parser.add_argument("--val-examples", type=int, default=3000, help="validation examples (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    counts = pair_counts(args.pairs, parser)
    queries = None  # 'all': as many as the example's pairs
    if args.queries != "all":
        try:
            queries = int(args.queries)
        except ValueError:
            parser.error(f"--queries {args.queries}: expected a count or 'all'")
        if not 1 <= queries <= min(counts):
            parser.error(f"--queries {queries}: expected a count in [1, {min(counts)}] (the smallest of --pairs)")
    if args.train_examples < 1 or args.val_examples < 1:
        parser.error("--train-examples and --val-examples must be >= 1")
    length = args.context + 1
    need = 2 * max(counts) + 2 * (queries or max(counts))
    if args.context < 1 or need > length:
        parser.error(f"--context {args.context}: the largest example needs {need} tokens (2 per pair, 2 per "
                     f"query), but --context + 1 is {length}")
    rng = random.Random(args.seed)
    try:
        with atomic_h5(args.output) as h5:
            def draw():
                pairs = rng.choice(counts)
                return example(rng, pairs, queries or pairs, length)

            write_examples(h5, args.train_examples, args.val_examples, draw)
    except OSError as error:
        print(f"mqar_to_h5.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {args.train_examples} train and {args.val_examples} val MQAR examples of "
          f"{length} tokens, pairs {args.pairs}, queries {args.queries}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
