"""data/scripts/text_to_h5.py: the file it writes (read back with h5py), its determinism, and its errors."""
import gzip
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scripts", "text_to_h5.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class TextToH5(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.docs = [f"entry {i}\n  definition number {i}, {'x' * (i % 7)}.".encode() for i in range(100)]
        self.input = os.path.join(self.dir.name, "corpus.txt.gz")
        with gzip.open(self.input, "wb") as f:
            f.write(b"\n\n".join(self.docs) + b"\n")
        self.output = os.path.join(self.dir.name, "out.h5")

    def tearDown(self):
        self.dir.cleanup()

    def test_writes_the_design_layout_with_every_byte_once(self):
        result = run("--input", self.input, "--output", self.output, "--val-fraction", "0.1")
        self.assertEqual(result.returncode, 0, result.stderr)
        with h5py.File(self.output) as h5:
            train, val = h5["train/tokens"][:], h5["val/tokens"][:]
            self.assertEqual(train.dtype, np.uint8)
            self.assertEqual(len(h5["val/doc_offsets"]), 10)  # every 10th document
            self.assertEqual(len(h5["train/doc_offsets"]), 90)
            self.assertEqual(h5["train/doc_offsets"][0], 0)
            total = sum(len(d) for d in self.docs)
            self.assertEqual(len(train) + len(val), total + 2 * len(self.docs) - 1)  # separators kept
            self.assertTrue(bytes(val[: len(self.docs[9])]).startswith(self.docs[9]))
            tok = h5["tokenizer"]
            self.assertEqual(tok.attrs["kind"], "bytes")
            self.assertEqual(tok.attrs["vocab_size"], 261)
            self.assertEqual(tok.attrs["mask_id"], 257)
            offsets = tok["piece_offsets"][:]
            self.assertEqual(len(offsets), 262)
            self.assertEqual(offsets[-1], len(tok["piece_bytes"]))
        run("--input", self.input, "--output", self.output, "--val-fraction", "0.1")
        with h5py.File(self.output) as h5:
            self.assertEqual(len(h5["train/tokens"]), len(train))  # same input, same split

    def test_bad_inputs_name_the_problem_and_leave_no_file(self):
        missing = run("--input", os.path.join(self.dir.name, "nope.txt"), "--output", self.output)
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("nope.txt", missing.stderr)
        fraction = run("--input", self.input, "--output", self.output, "--val-fraction", "0.9")
        self.assertNotEqual(fraction.returncode, 0)
        self.assertIn("--val-fraction", fraction.stderr)
        tiny = os.path.join(self.dir.name, "tiny.txt")
        open(tiny, "wb").write(b"one document only")
        result = run("--input", tiny, "--output", self.output)
        self.assertEqual(result.returncode, 1)
        self.assertIn("too little text", result.stderr)
        self.assertFalse(os.path.exists(self.output))
        self.assertFalse(os.path.exists(self.output + ".tmp"))

    def test_help(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("--val-fraction", result.stdout)


if __name__ == "__main__":
    unittest.main()
