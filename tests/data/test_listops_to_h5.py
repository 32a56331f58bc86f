"""data/scripts/listops_to_h5.py: labels are the expressions' values (by an independent evaluator here),
lengths and padding follow the options, the same seed gives the same file, and bad options are errors."""
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scripts", "listops_to_h5.py")


def value(text):
    """Recursive-descent evaluation, written apart from the script's stack machine."""
    tokens = text.split()
    position = 0

    def parse():
        nonlocal position
        token = tokens[position]
        position += 1
        if not token.startswith("["):
            return int(token)
        args = []
        while tokens[position] != "]":
            args.append(parse())
        position += 1
        op = token[1:]
        if op == "MIN":
            return min(args)
        if op == "MAX":
            return max(args)
        if op == "SM":
            return sum(args) % 10
        ordered = sorted(args)
        return ordered[(len(ordered) - 1) // 2]

    return parse()


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class ListOpsToH5(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.output = os.path.join(self.dir.name, "listops.h5")

    def tearDown(self):
        self.dir.cleanup()

    def test_labels_are_the_values_and_rows_are_padded(self):
        result = run("--output", self.output, "--train", "300", "--val", "50", "--min-length", "20",
                     "--max-length", "200", "--seed", "3")
        self.assertEqual(result.returncode, 0, result.stderr)
        with h5py.File(self.output) as h5:
            self.assertEqual(h5.attrs["num_classes"], 10)
            inputs, lengths, labels = h5["train/inputs"][:], h5["train/lengths"][:], h5["train/labels"][:]
            self.assertEqual(inputs.shape, (300, 200))
            self.assertEqual(h5["val/inputs"].shape, (50, 200))
            self.assertTrue(((lengths >= 20) & (lengths <= 200)).all())
            self.assertGreater(len(set(labels)), 5)
            for row, length, label in zip(inputs, lengths, labels):
                text = bytes(row[:length].astype(np.uint8)).decode()
                self.assertEqual(value(text), label, text)
                self.assertTrue((row[length:] == 256).all())  # the pad id
        first = h5py.File(self.output)["train/inputs"][:]
        run("--output", self.output, "--train", "300", "--val", "50", "--min-length", "20",
            "--max-length", "200", "--seed", "3")
        np.testing.assert_array_equal(h5py.File(self.output)["train/inputs"][:], first)

    def test_bad_options_are_named(self):
        for args, needle in ((["--train", "0"], "--train"), (["--min-length", "300", "--max-length", "200"],
                                                              "--min-length"), (["--max-depth", "0"], "--max-depth")):
            result = run("--output", self.output, *args)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(needle, result.stderr)
        self.assertFalse(os.path.exists(self.output))


if __name__ == "__main__":
    unittest.main()
