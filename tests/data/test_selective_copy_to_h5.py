"""data/scripts/selective_copy_to_h5.py: every document is context + 1 bytes, the loss mask marks exactly the
copy, which equals the non-blank bytes before the separator (re-derived here), the same seed gives the same
file, and bad options are named."""
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scripts", "selective_copy_to_h5.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class SelectiveCopyToH5(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.output = os.path.join(self.dir.name, "copy.h5")

    def tearDown(self):
        self.dir.cleanup()

    def test_documents_masks_and_answers(self):
        args = ("--output", self.output, "--context", "127", "--tokens", "10", "--vocab", "4",
                "--train-examples", "50", "--val-examples", "5", "--seed", "2")
        result = run(*args)
        self.assertEqual(result.returncode, 0, result.stderr)
        with h5py.File(self.output) as h5:
            tokens, mask = h5["train/tokens"][:], h5["train/loss_mask"][:]
            self.assertEqual((tokens.dtype, mask.dtype), (np.uint8, np.uint8))
            self.assertEqual(tokens.shape, (50 * 128,))
            self.assertEqual(mask.shape, tokens.shape)
            np.testing.assert_array_equal(h5["train/doc_offsets"][:], np.arange(50) * 128)
            self.assertEqual(h5["val/tokens"].shape, (5 * 128,))
            for start in range(0, len(tokens), 128):
                doc, doc_mask = bytes(tokens[start:start + 128]), mask[start:start + 128]
                window, copy = doc.split(b"|")
                self.assertEqual(copy, window.replace(b".", b""))
                self.assertEqual(len(copy), 10)
                self.assertTrue(set(copy) <= set(b"abcd"))
                np.testing.assert_array_equal(np.flatnonzero(doc_mask), np.arange(118, 128))
            first = tokens
        run(*args)
        with h5py.File(self.output) as h5:
            np.testing.assert_array_equal(h5["train/tokens"][:], first)

    def test_bad_options_are_named(self):
        for args, needle in ((["--vocab", "1"], "--vocab 1"), (["--vocab", "53"], "--vocab 53"),
                             (["--tokens", "0"], "--tokens 0"), (["--context", "31"], "--context 31"),
                             (["--train-examples", "0"], "--train-examples"),
                             (["--val-examples", "0"], "--val-examples")):
            result = run("--output", self.output, *args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(needle, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
        unwritable = run("--output", os.path.join(self.dir.name, "missing", "x.h5"), "--train-examples", "1")
        self.assertEqual(unwritable.returncode, 1)
        self.assertIn("selective_copy_to_h5.py: error:", unwritable.stderr)
        self.assertFalse(os.path.exists(self.output))

    def test_help(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("--tokens", result.stdout)


if __name__ == "__main__":
    unittest.main()
