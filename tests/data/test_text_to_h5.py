"""data/scripts/text_to_h5.py: the file it writes (read back with h5py), its determinism, and its errors; with
--tokenizer bpe, the piece table, round trips on arbitrary bytes, and agreement with a slow encoder written
here from the rule that bpe.py's docstring states."""
import gzip
import os
import random
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


WHITESPACE = b"\t\n\x0b\x0c\r "


def kind(byte):
    if byte in WHITESPACE:
        return "space"
    if byte >= 0x80 or chr(byte).isascii() and chr(byte).isalpha():
        return "letter"
    return "digit" if chr(byte).isdigit() else "other"


def scan_chunks(text):
    """The chunking rule in words (bpe.py's docstring), as a scanner rather than a regular expression."""
    out, i = [], 0
    while i < len(text):
        start = i
        if kind(text[i]) != "space" or (text[i] == 0x20 and i + 1 < len(text) and kind(text[i + 1]) != "space"):
            i += text[i] == 0x20
            run = kind(text[i])
            while i < len(text) and kind(text[i]) == run:
                i += 1
        else:
            while i < len(text) and kind(text[i]) == "space":
                i += 1
            if i < len(text) and i - start >= 2:
                i -= 1
        out.append(text[start:i])
    return out


def slow_encode(text, pieces):
    """Per chunk: merge the adjacent pair whose concatenation is the piece of lowest id >= 256, leftmost
    first, until none is; quadratic, for checking only."""
    ids_of = {piece: i for i, piece in enumerate(pieces) if i >= 256}
    out = []
    for chunk in scan_chunks(text):
        ids = list(chunk)
        while True:
            best = None
            for k in range(len(ids) - 1):
                merged = ids_of.get(pieces[ids[k]] + pieces[ids[k + 1]])
                if merged is not None and (best is None or merged < best[0]):
                    best = (merged, k)
            if best is None:
                break
            ids[best[1]:best[1] + 2] = [best[0]]
        out += ids
    return out


class TextToH5Bpe(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        rng = random.Random(4)
        words = [b"the", b"then", b"there", b"aaaaaaa", b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", b"\x00\x00", b"12345",
                 b"--", b"x", b"the\x00them", b"\xe2\x82\xac"]
        spaces = [b" ", b"  ", b"\t", b" \n", b"\n  ", b"   ", b"\r\n", b"\x0b", b". ", b","]
        self.docs = []
        for _ in range(120):
            doc = b"".join(rng.choice(words) + rng.choice(spaces) for _ in range(rng.randrange(1, 30)))
            while b"\n\n" in doc:
                doc = doc.replace(b"\n\n", b"\n")
            self.docs.append(doc.strip(WHITESPACE) or b"x")
        self.input = os.path.join(self.dir.name, "corpus.txt")
        with open(self.input, "wb") as f:
            f.write(b"\n\n".join(self.docs))
        self.output = os.path.join(self.dir.name, "bpe.h5")

    def tearDown(self):
        self.dir.cleanup()

    def read(self):
        with h5py.File(self.output) as h5:
            tok = h5["tokenizer"]
            data, offsets = bytes(tok["piece_bytes"][:]), tok["piece_offsets"][:].tolist()
            pieces = [data[a:b] for a, b in zip(offsets, offsets[1:])]
            attrs = dict(tok.attrs)
            splits = {}
            for split in ("train", "val"):
                tokens = h5[f"{split}/tokens"][:]
                self.assertEqual(tokens.dtype, np.uint16)
                starts = h5[f"{split}/doc_offsets"][:].tolist() + [len(tokens)]
                splits[split] = [tokens[a:b].tolist() for a, b in zip(starts, starts[1:])]
        return pieces, attrs, splits

    def test_piece_table_round_trip_and_rank_merge_encoding(self):
        args = ("--input", self.input, "--output", self.output, "--tokenizer", "bpe", "--vocab-size", "300",
                "--val-fraction", "0.1")
        result = run(*args)
        self.assertEqual(result.returncode, 0, result.stderr)
        pieces, attrs, splits = self.read()
        self.assertEqual(attrs["kind"], "bpe")
        self.assertEqual(attrs["vocab_size"], 300)
        self.assertEqual(len(pieces), 300)
        self.assertEqual([attrs[n] for n in ("pad_id", "mask_id", "cls_id", "bos_id", "eos_id")], list(range(295, 300)))
        self.assertEqual(pieces[295:], [b"<pad>", b"<mask>", b"<cls>", b"<bos>", b"<eos>"])
        self.assertEqual(pieces[:256], [bytes([b]) for b in range(256)])
        self.assertEqual(len(set(pieces[:295])), 295)  # no two pieces share bytes
        for i in range(256, 295):  # merge order: every piece joins two earlier pieces
            earlier = set(pieces[:i])
            self.assertTrue(any(pieces[i][:k] in earlier and pieces[i][k:] in earlier
                                for k in range(1, len(pieces[i]))), pieces[i])
        val = [doc for i, doc in enumerate(self.docs) if i % 10 == 9]
        train = [doc for i, doc in enumerate(self.docs) if i % 10 != 9]
        for docs, encoded in ((train, splits["train"]), (val, splits["val"])):
            self.assertEqual(len(docs), len(encoded))
            for i, (doc, ids) in enumerate(zip(docs, encoded)):
                text = doc + b"\n\n" if doc is not self.docs[-1] else doc
                self.assertEqual(b"".join(pieces[t] for t in ids), text)  # decode(encode(text)) == text
                self.assertEqual(ids, slow_encode(text, pieces[:295]), text)
        self.assertLess(sum(map(len, splits["train"])), sum(len(d) + 2 for d in train) * 0.7)  # merges compress
        result = run(*args)
        self.assertEqual(self.read(), (pieces, attrs, splits))

    def test_chunks_and_encoder_on_random_bytes(self):
        sys.path.insert(0, os.path.dirname(SCRIPT))
        import bpe  # the module itself, against this file's scanner and slow encoder
        self.assertEqual(run("--input", self.input, "--output", self.output, "--tokenizer", "bpe",
                             "--vocab-size", "300").returncode, 0)
        pieces = self.read()[0][:295]
        encoder = bpe.Encoder(pieces)
        byte_pieces = [bytes([b]) for b in range(256)]
        for extra, text, expected in (([b"ab", b"bc"], b"abc", [256, 99]), ([b"bc", b"ab"], b"abc", [97, 256]),
                                      ([b"aa"], b"aaa", [256, 97]),  # leftmost first on a tie
                                      ([b"xyz", b"yz"], b"xyz", [256])):  # a merge enables a lower id
            self.assertEqual(bpe.Encoder(byte_pieces + extra).encode(text), expected, extra)
            self.assertEqual(slow_encode(text, byte_pieces + extra), expected, extra)
        rng = random.Random(9)
        alphabet = b"ab1 \t\n\r.\x00\xff\xc3\xa9e"
        for _ in range(300):
            text = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
            self.assertEqual(bpe.chunks(text), scan_chunks(text), text)
            ids = encoder.encode(text)
            self.assertEqual(ids, slow_encode(text, pieces), text)
            self.assertEqual(b"".join(pieces[i] for i in ids), text)

    def test_bad_vocab_sizes(self):
        for args, needle, code in ((["--tokenizer", "bpe", "--vocab-size", "261"], "--vocab-size 261", 2),
                                   (["--tokenizer", "bpe", "--vocab-size", "65537"], "--vocab-size 65537", 2),
                                   (["--tokenizer", "bpe", "--vocab-size", "big"], "--vocab-size", 2),
                                   (["--vocab-size", "300"], "--vocab-size 300: applies to --tokenizer bpe", 2),
                                   (["--bpe-sample-bytes", "9"], "--bpe-sample-bytes 9: applies to --tokenizer bpe", 2),
                                   (["--tokenizer", "bpe", "--bpe-sample-bytes", "-1"], "--bpe-sample-bytes -1", 2),
                                   (["--tokenizer", "wordpiece"], "--tokenizer", 2),
                                   (["--tokenizer", "bpe", "--vocab-size", "60000"], "--vocab-size 60000 needs", 1)):
            result = run("--input", self.input, "--output", self.output, *args)
            self.assertEqual(result.returncode, code, args)
            self.assertIn(needle, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
            self.assertFalse(os.path.exists(self.output))


if __name__ == "__main__":
    unittest.main()
