"""data/scripts/passkey_to_h5.py: every document is context + 1 bytes ending in the question and the key,
the loss mask marks exactly the key (re-read here from the needle), depth and filler files work, the same
seed gives the same file, and bad options are named."""
import os
import re
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scripts", "passkey_to_h5.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def read(path, split):
    with h5py.File(path) as h5:
        tokens, mask = h5[f"{split}/tokens"][:], h5[f"{split}/loss_mask"][:]
        offsets = h5[f"{split}/doc_offsets"][:].tolist()
    ends = offsets[1:] + [len(tokens)]
    return [(bytes(tokens[a:b]), mask[a:b]) for a, b in zip(offsets, ends)]


def flat(docs):
    return [(doc, mask.tolist()) for doc, mask in docs]


class PasskeyToH5(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.output = os.path.join(self.dir.name, "passkey.h5")

    def tearDown(self):
        self.dir.cleanup()

    def check(self, doc, mask, length, digits):
        """The needle's key, found by a regular expression, is the masked suffix; returns the needle's start."""
        self.assertEqual(len(doc), length)
        needles = re.findall(rb"The pass key is ([0-9]+)\. Remember it\.", doc)
        self.assertEqual(len(needles), 1, doc)
        key = needles[0]
        self.assertEqual(len(key), digits)
        self.assertTrue(doc.endswith(b"What is the pass key? The pass key is " + key))
        np.testing.assert_array_equal(np.flatnonzero(mask), np.arange(length - digits, length))
        return doc.index(b"The pass key is " + key + b".")

    def test_documents_masks_and_answers(self):
        args = ("--output", self.output, "--context", "999", "--digits", "6", "--train-examples", "30",
                "--val-examples", "5", "--seed", "1")
        result = run(*args)
        self.assertEqual(result.returncode, 0, result.stderr)
        with h5py.File(self.output) as h5:
            self.assertEqual(h5["train/tokens"].dtype, np.uint8)
            self.assertEqual(h5["train/loss_mask"].dtype, np.uint8)
            self.assertEqual(h5["train/loss_mask"].shape, (30 * 1000,))
            self.assertEqual(h5["tokenizer"].attrs["kind"], "bytes")
        starts = [self.check(doc, mask, 1000, 6) for doc, mask in read(self.output, "train")]
        self.assertGreater(max(starts) - min(starts), 400)  # depth 'random' spreads the needle
        self.assertEqual(len(read(self.output, "val")), 5)
        first = flat(read(self.output, "train"))
        run(*args)
        self.assertEqual(flat(read(self.output, "train")), first)

    def test_fixed_depth_and_filler_file(self):
        filler = os.path.join(self.dir.name, "filler.txt")
        with open(filler, "wb") as f:
            f.write(b"A short text about the pass key is 99. With\x00bytes\xff and words. " * 3)
        haystack = 800 - len(b"The pass key is 12345. Remember it. ") - len(b"\nWhat is the pass key? The pass key is ") - 5
        for depth in (0.0, 0.5, 1.0):
            result = run("--output", self.output, "--context", "799", "--depth", str(depth), "--filler-file",
                         filler, "--train-examples", "8", "--val-examples", "1")
            self.assertEqual(result.returncode, 0, result.stderr)
            target = round(depth * haystack)
            for doc, mask in read(self.output, "train"):
                start = self.check(doc, mask, 800, 5)
                self.assertTrue(target - 256 <= start <= target, (depth, doc))  # the boundary before the depth
                self.assertTrue(start == 0 or doc[start - 1:start] in b" \n", doc)
                self.assertIn(b"pass-key is 99", doc)  # the filler's own "pass key" is defused

    def test_bad_options_are_named(self):
        for args, needle in ((["--digits", "0"], "--digits 0"), (["--digits", "33"], "--digits 33"),
                             (["--depth", "1.5"], "--depth 1.5"), (["--depth", "deep"], "--depth deep"),
                             (["--context", "60"], "--context 60"),
                             (["--filler-file", os.path.join(self.dir.name, "nope.txt")], "nope.txt"),
                             (["--train-examples", "0"], "--train-examples"),
                             (["--val-examples", "0"], "--val-examples")):
            result = run("--output", self.output, *args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(needle, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
        empty = os.path.join(self.dir.name, "empty.txt")
        open(empty, "wb").close()
        result = run("--output", self.output, "--filler-file", empty)
        self.assertEqual(result.returncode, 2)
        self.assertIn("empty.txt: the file is empty", result.stderr)
        unwritable = run("--output", os.path.join(self.dir.name, "missing", "x.h5"), "--train-examples", "1")
        self.assertEqual(unwritable.returncode, 1)
        self.assertIn("passkey_to_h5.py: error:", unwritable.stderr)
        self.assertNotIn("Traceback", unwritable.stderr)
        self.assertFalse(os.path.exists(self.output))

    def test_help(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("--filler-file", result.stdout)


if __name__ == "__main__":
    unittest.main()
