#!/usr/bin/python3
"""ListOps (Long Range Arena) as a race classification dataset (HDF5, DESIGN section 4), byte level.

Each example is a nested expression over digits 0-9 with the operators MIN, MAX, MED (median, the lower of
the two middle values for an even count) and SM (sum modulo 10), written as text, e.g.
"[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]", whose value 0-9 is the label (10 classes). Expressions
nest up to --max-depth levels with 2 to --max-args arguments per operator; their byte length lies in
[--min-length, --max-length] and rows are padded to --max-length with the pad id. The generator is
seeded and exact: the same arguments give the same file, and every label is checked by re-evaluating
the text.
"""
import argparse
import random
import sys

import numpy as np

from race_h5 import atomic_h5, write_byte_tokenizer

OPERATORS = ["MIN", "MAX", "MED", "SM"]
PAD_ID = 256


def apply(op, values):
    if op == "MIN":
        return min(values)
    if op == "MAX":
        return max(values)
    if op == "MED":
        return sorted(values)[(len(values) - 1) // 2]
    return sum(values) % 10


class TooLong(Exception):
    pass


def generate(rng, depth, max_depth, max_args, budget):
    """(text, value) of a random expression of at most budget[0] bytes (TooLong otherwise). The chance
    of a leaf grows with depth, keeping the tree near the critical branching rate so lengths spread widely."""
    if depth >= max_depth or (depth > 0 and rng.random() < 0.55 + 0.04 * depth):
        digit = rng.randrange(10)
        budget[0] -= 2
        if budget[0] < 0:
            raise TooLong
        return str(digit), digit
    op = rng.choice(OPERATORS)
    budget[0] -= len(op) + 4
    parts, values = [], []
    for _ in range(rng.randint(2, max_args)):
        text, value = generate(rng, depth + 1, max_depth, max_args, budget)
        parts.append(text)
        values.append(value)
    return f"[{op} " + " ".join(parts) + " ]", apply(op, values)


def evaluate(text):
    """The value of an expression's text, by a stack machine independent of the generator."""
    stack = [[]]
    for token in text.split():
        if token.startswith("["):
            stack.append([token[1:]])
        elif token == "]":
            op, *values = stack.pop()
            stack[-1].append(apply(op, values))
        else:
            stack[-1].append(int(token))
    (value,) = stack[0]
    return value


def examples(rng, count, args):
    rows = []
    while len(rows) < count:
        try:
            text, value = generate(rng, 0, args.max_depth, args.max_args, [args.max_length + 1])
        except TooLong:
            continue
        if args.min_length <= len(text) <= args.max_length:
            assert evaluate(text) == value, text
            rows.append((text.encode(), value))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="HDF5 file to write (replaced atomically)")
    parser.add_argument("--train", type=int, default=20000, help="training examples (default 20000)")
    parser.add_argument("--val", type=int, default=2000, help="validation examples (default 2000)")
    parser.add_argument("--min-length", type=int, default=64, help="shortest expression in bytes (default 64)")
    parser.add_argument("--max-length", type=int, default=2048, help="longest in bytes = row length (default 2048)")
    parser.add_argument("--max-depth", type=int, default=10, help="deepest nesting (default 10)")
    parser.add_argument("--max-args", type=int, default=5, help="most arguments of an operator (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1:
        parser.error("--train and --val must be >= 1")
    if not 5 <= args.min_length <= args.max_length:
        parser.error(f"--min-length {args.min_length} and --max-length {args.max_length}: expected "
                     "5 <= min <= max")
    if not 1 <= args.max_depth <= 64 or not 2 <= args.max_args <= 64:
        parser.error("--max-depth must be in [1, 64] and --max-args in [2, 64]")
    rng = random.Random(args.seed)
    try:
        with atomic_h5(args.output) as h5:
            for split, count in (("train", args.train), ("val", args.val)):
                rows = examples(rng, count, args)
                inputs = np.full((count, args.max_length), PAD_ID, dtype=np.uint16)
                for i, (text, _) in enumerate(rows):
                    inputs[i, :len(text)] = np.frombuffer(text, dtype=np.uint8)
                h5.create_dataset(f"{split}/inputs", data=inputs)
                h5.create_dataset(f"{split}/lengths", data=np.array([len(t) for t, _ in rows], dtype=np.int32))
                h5.create_dataset(f"{split}/labels", data=np.array([v for _, v in rows], dtype=np.int32))
            h5.attrs["num_classes"] = np.int64(10)
            write_byte_tokenizer(h5)
    except OSError as error:
        print(f"listops_to_h5.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {args.train} train and {args.val} val ListOps examples, rows of {args.max_length} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
