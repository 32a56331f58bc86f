"""data/scripts/fashion_mnist_to_h5.py on small idx files written here: layout, values, and errors."""
import gzip
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scripts", "fashion_mnist_to_h5.py")


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class FashionMnistToH5(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        rng = np.random.default_rng(0)
        self.images = {"train": rng.integers(0, 256, (12, 28, 28)), "t10k": rng.integers(0, 256, (5, 28, 28))}
        self.labels = {"train": rng.integers(0, 10, 12), "t10k": rng.integers(0, 10, 5)}
        for prefix in ("train", "t10k"):
            write_idx(os.path.join(self.dir.name, f"{prefix}-images-idx3-ubyte.gz"), self.images[prefix])
            write_idx(os.path.join(self.dir.name, f"{prefix}-labels-idx1-ubyte.gz"), self.labels[prefix])
        self.output = os.path.join(self.dir.name, "out.h5")

    def tearDown(self):
        self.dir.cleanup()

    def test_images_become_784_pixel_rows_with_labels(self):
        result = run("--input-dir", self.dir.name, "--output", self.output, "--val-rows", "3")
        self.assertEqual(result.returncode, 0, result.stderr)
        with h5py.File(self.output) as h5:
            self.assertEqual(h5.attrs["num_classes"], 10)
            np.testing.assert_array_equal(h5["train/inputs"][:], self.images["train"].reshape(12, 784))
            np.testing.assert_array_equal(h5["train/labels"][:], self.labels["train"])
            self.assertTrue((h5["train/lengths"][:] == 784).all())
            self.assertEqual(h5["val/inputs"].shape, (3, 784))
            np.testing.assert_array_equal(h5["val/labels"][:], self.labels["t10k"][:3])
            self.assertEqual(h5["tokenizer"].attrs["vocab_size"], 261)

    def test_bad_inputs_name_the_file_and_leave_nothing(self):
        missing = run("--input-dir", os.path.join(self.dir.name, "nope"), "--output", self.output)
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("train-images-idx3-ubyte.gz is missing", missing.stderr)
        with gzip.open(os.path.join(self.dir.name, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(b"not an idx file")
        corrupt = run("--input-dir", self.dir.name, "--output", self.output)
        self.assertEqual(corrupt.returncode, 1)
        self.assertIn("t10k-labels-idx1-ubyte.gz: not an idx file", corrupt.stderr)
        self.assertFalse(os.path.exists(self.output))
        self.assertFalse(os.path.exists(self.output + ".tmp"))


if __name__ == "__main__":
    unittest.main()
