#!/usr/bin/python3
"""Fashion-MNIST to a race classification dataset (HDF5, DESIGN section 4).

Reads the idx files of Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) and writes each
28x28 image as a sequence of 784 pixel tokens (pixel value = byte id) in /<split>/inputs (N x 784, uint8),
with /<split>/lengths (all 784), /<split>/labels (0-9), the attribute num_classes = 10 and the byte-level
/tokenizer. train = the 60,000 training images, val = the 10,000 test images (or their first rows).
"""
import argparse
import gzip
import os
import sys

import numpy as np

from race_h5 import atomic_h5, write_byte_tokenizer

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path, dims):
    """The array of an idx file with `dims` dimensions (magic 0x0000 08 dims: unsigned bytes)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 + 4 * dims or data[:3] != b"\x00\x00\x08" or data[3] != dims:
        raise ValueError(f"{path}: not an idx file of unsigned bytes with {dims} dimensions")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, but the file holds {body.size} values")
    return body.reshape(shape)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", default="/usr/share/datasets/fashion-mnist",
                        help="directory of the four idx .gz files (apt-get install dataset-fashion-mnist)")
    parser.add_argument("--output", required=True, help="HDF5 file to write (replaced atomically)")
    parser.add_argument("--train-rows", type=int, default=0, help="keep the first N training images (0: all)")
    parser.add_argument("--val-rows", type=int, default=0, help="keep the first N test images (0: all)")
    args = parser.parse_args(argv)
    for split, names in FILES.items():
        for name in names:
            if not os.path.isfile(os.path.join(args.input_dir, name)):
                parser.error(f"--input-dir {args.input_dir}: {name} is missing "
                             "(apt-get install dataset-fashion-mnist)")
    if args.train_rows < 0 or args.val_rows < 0:
        parser.error("--train-rows and --val-rows must be >= 0")
    try:
        with atomic_h5(args.output) as h5:
            for split, (images_name, labels_name) in FILES.items():
                images = read_idx(os.path.join(args.input_dir, images_name), 3)
                labels = read_idx(os.path.join(args.input_dir, labels_name), 1)
                if len(images) != len(labels):
                    raise ValueError(f"{images_name} has {len(images)} images but {labels_name} "
                                     f"{len(labels)} labels")
                keep = {"train": args.train_rows, "val": args.val_rows}[split] or len(images)
                images, labels = images[:keep], labels[:keep]
                if labels.max(initial=0) > 9:
                    raise ValueError(f"{labels_name}: label {labels.max()} is not a class 0-9")
                rows = images.reshape(len(images), -1)
                h5.create_dataset(f"{split}/inputs", data=rows, dtype="uint8")
                h5.create_dataset(f"{split}/lengths", data=np.full(len(rows), rows.shape[1], dtype=np.int32))
                h5.create_dataset(f"{split}/labels", data=labels.astype(np.int32))
            h5.attrs["num_classes"] = np.int64(10)
            write_byte_tokenizer(h5)
            counts = {split: len(h5[f"{split}/labels"]) for split in FILES}
    except (OSError, ValueError, EOFError) as error:
        print(f"fashion_mnist_to_h5.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {counts['train']} train and {counts['val']} val images of 784 pixels, 10 classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
