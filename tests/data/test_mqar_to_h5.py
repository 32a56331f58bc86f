"""data/scripts/mqar_to_h5.py: every document is context + 1 tokens, the loss mask marks exactly the answers
(re-derived here by parsing the tokens), the same seed gives the same file, and bad options are named."""
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scripts", "mqar_to_h5.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def answers(doc):
    """(pair count, {position: value} of the answers), by parsing: a key byte (>= 0x80) seen for the first
    time starts a pair (key, value); seen again, it is a query and the next token its answer."""
    pairs, found, i = {}, {}, 0
    while i < len(doc):
        if doc[i] < 0x80:
            i += 1
            continue
        if doc[i] in pairs:
            found[i + 1] = pairs[doc[i]]
        else:
            pairs[doc[i]] = doc[i + 1]
        i += 2
    return len(pairs), found


class MqarToH5(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.output = os.path.join(self.dir.name, "mqar.h5")

    def tearDown(self):
        self.dir.cleanup()

    def test_documents_masks_and_answers(self):
        args = ("--output", self.output, "--pairs", "2,5,8", "--context", "63", "--train-examples", "200",
                "--val-examples", "20", "--seed", "7")
        result = run(*args)
        self.assertEqual(result.returncode, 0, result.stderr)
        with h5py.File(self.output) as h5:
            self.assertEqual(h5["tokenizer"].attrs["kind"], "bytes")
            for split, count in (("train", 200), ("val", 20)):
                tokens, mask = h5[f"{split}/tokens"][:], h5[f"{split}/loss_mask"][:]
                offsets = h5[f"{split}/doc_offsets"][:]
                self.assertEqual((tokens.dtype, mask.dtype, offsets.dtype), (np.uint8, np.uint8, np.uint64))
                self.assertEqual(tokens.shape, (count * 64,))
                self.assertEqual(mask.shape, tokens.shape)
                np.testing.assert_array_equal(offsets, np.arange(count) * 64)
                seen = set()
                for start in offsets.tolist():
                    doc, doc_mask = tokens[start:start + 64], mask[start:start + 64]
                    pairs, found = answers(doc)
                    seen.add(pairs)
                    self.assertEqual(len(found), pairs)  # 'all': every key asked once
                    self.assertEqual(sorted(np.flatnonzero(doc_mask)), sorted(found))
                    for position, value in found.items():
                        self.assertEqual(doc[position], value)
                        self.assertTrue(0x21 <= value <= 0x7E)
                    self.assertEqual(np.count_nonzero(doc == 0x20), 64 - 4 * pairs)  # the rest is filler
                if split == "train":
                    self.assertEqual(seen, {2, 5, 8})
            first = h5["train/tokens"][:], h5["train/loss_mask"][:]
        self.assertEqual(run(*args).returncode, 0)
        with h5py.File(self.output) as h5:
            np.testing.assert_array_equal(h5["train/tokens"][:], first[0])
            np.testing.assert_array_equal(h5["train/loss_mask"][:], first[1])

    def test_fixed_query_count(self):
        result = run("--output", self.output, "--pairs", "6", "--queries", "2", "--context", "20",
                     "--train-examples", "10", "--val-examples", "1")
        self.assertEqual(result.returncode, 0, result.stderr)
        with h5py.File(self.output) as h5:
            tokens, mask = h5["train/tokens"][:], h5["train/loss_mask"][:]
            for start in range(0, len(tokens), 21):
                pairs, found = answers(tokens[start:start + 21])
                self.assertEqual((pairs, len(found)), (6, 2))
                self.assertEqual(mask[start:start + 21].sum(), 2)

    def test_bad_options_are_named(self):
        for args, needle in ((["--pairs", "4,x"], "--pairs 4,x"), (["--pairs", "0"], "--pairs 0"),
                             (["--pairs", "129", "--context", "1000"], "--pairs 129"),
                             (["--pairs", "4,8", "--queries", "5"], "--queries 5"),
                             (["--queries", "some"], "--queries some"),
                             (["--pairs", "8", "--context", "30"], "--context 30"),
                             (["--context", "0"], "--context 0"),
                             (["--train-examples", "0"], "--train-examples"),
                             (["--val-examples", "-1"], "--val-examples")):
            result = run("--output", self.output, *args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(needle, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(run("--output", self.output, "--pairs", "8", "--context", "31", "--train-examples", "5",
                             "--val-examples", "1").returncode, 0)  # 4 x 8 = 32 tokens fit exactly
        unwritable = run("--output", os.path.join(self.dir.name, "missing", "x.h5"), "--train-examples", "1")
        self.assertEqual(unwritable.returncode, 1)
        self.assertIn("mqar_to_h5.py: error:", unwritable.stderr)
        self.assertNotIn("Traceback", unwritable.stderr)

    def test_help(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("--queries", result.stdout)


if __name__ == "__main__":
    unittest.main()
