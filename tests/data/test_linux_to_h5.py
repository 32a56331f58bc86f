"""data/scripts/linux_to_h5.py on a small .tar.xz built here: which files it keeps, one document per file or
per directory (sorted, with header lines, cut and dropped by size), the deterministic split, --max-bytes,
and its errors."""
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest

import h5py

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scripts", "linux_to_h5.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def documents(path):
    """All documents of both splits, as bytes."""
    found = []
    with h5py.File(path) as h5:
        for split in ("train", "val"):
            tokens = bytes(h5[f"{split}/tokens"][:])
            offsets = h5[f"{split}/doc_offsets"][:].tolist() + [len(tokens)]
            found += [tokens[a:b] for a, b in zip(offsets, offsets[1:])]
    return found


class LinuxToH5(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.files = {"Makefile": b"all:\n" * 3, "kernel/fork.c": b"int fork;\n" * 40,
                      "kernel/exit.c": b"int exit;\n" * 30, "kernel/Kconfig": b"config X\n" * 5,
                      "kernel/sched/core.c": b"void schedule(void);\n" * 50, "kernel/sched/a.h": b"#define A\n" * 9,
                      "lib/big.c": b"/* big */\n" * 120}
        for i in range(20):
            self.files[f"drivers/d{i:02}/x.c"] = f"int x{i};\n".encode() * (i + 1)
        skipped = {"kernel/blob.bin": b"\x7fELF", "kernel/notes.c": b"has a \0 byte", "README.md": b"# no"}
        self.input = os.path.join(self.dir.name, "linux.tar.xz")
        with tarfile.open(self.input, "w:xz") as tar:
            # Directory order as in Debian's tarball: a directory's files interleave with its subdirectories.
            for path in sorted({**self.files, **skipped}):
                info = tarfile.TarInfo("linux-source-6.1/" + path)
                data = {**self.files, **skipped}[path]
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        self.output = os.path.join(self.dir.name, "out.h5")

    def tearDown(self):
        self.dir.cleanup()

    def test_one_document_per_text_file(self):
        result = run("--input", self.input, "--output", self.output, "--val-fraction", "0.3")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(documents(self.output)), sorted(self.files.values()))
        with h5py.File(self.output) as h5:
            self.assertEqual(h5["tokenizer"].attrs["kind"], "bytes")
            self.assertGreater(len(h5["val/doc_offsets"]), 0)
            split = [len(h5["val/doc_offsets"]), bytes(h5["val/tokens"][:])]
        run("--input", self.input, "--output", self.output, "--val-fraction", "0.3")
        with h5py.File(self.output) as h5:
            self.assertEqual([len(h5["val/doc_offsets"]), bytes(h5["val/tokens"][:])], split)
        run("--input", self.input, "--output", self.output, "--val-fraction", "0.3", "--seed", "5")
        with h5py.File(self.output) as h5:
            self.assertNotEqual(bytes(h5["val/tokens"][:]), split[1])  # the seed picks another split

    def test_directory_documents(self):
        result = run("--input", self.input, "--output", self.output, "--long-documents", "--val-fraction", "0.3",
                     "--min-document-bytes", "100", "--max-document-bytes", "600")
        self.assertEqual(result.returncode, 0, result.stderr)

        def entry(path):
            return f"==> {path} <==\n".encode() + self.files[path]

        core, big = entry("kernel/sched/core.c"), entry("lib/big.c")
        expected = [entry("kernel/Kconfig") + entry("kernel/exit.c"), entry("kernel/fork.c"),  # fork.c would pass 600
                    entry("kernel/sched/a.h"), core[:600], core[600:],  # core.c alone exceeds 600: cut inside
                    big[:600], big[600:1200], big[1200:]]
        expected += [entry(f"drivers/d{i:02}/x.c") for i in range(20) if len(entry(f"drivers/d{i:02}/x.c")) >= 100]
        expected = [doc for doc in expected if len(doc) >= 100]  # e.g. the top Makefile, big.c's last 18 bytes
        self.assertEqual(sorted(documents(self.output)), sorted(expected))
        self.assertIn("documents of fewer than 100 bytes", result.stdout)
        self.assertTrue(all(len(doc) <= 600 for doc in expected))

    def test_max_bytes_stops_early(self):
        result = run("--input", self.input, "--output", self.output, "--max-bytes", "500", "--val-fraction", "0.5")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertLess(sum(len(doc) for doc in documents(self.output)), 500 + max(map(len, self.files.values())))

    def test_bad_inputs_are_named(self):
        missing = run("--input", os.path.join(self.dir.name, "nope.tar.xz"), "--output", self.output)
        self.assertEqual(missing.returncode, 2)
        self.assertIn("nope.tar.xz", missing.stderr)
        self.assertIn("apt-get install linux-source-6.1", missing.stderr)
        for args, needle in ((["--val-fraction", "0"], "--val-fraction 0"), (["--max-bytes", "-1"], "--max-bytes -1"),
                             (["--min-document-bytes", "0"], "--min-document-bytes 0"),
                             (["--long-documents", "--max-document-bytes", "1000"], "--max-document-bytes 1000")):
            result = run("--input", self.input, "--output", self.output, *args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(needle, result.stderr)
        garbage = os.path.join(self.dir.name, "garbage.tar.xz")
        with open(garbage, "wb") as f:
            f.write(b"not a tarball at all")
        result = run("--input", garbage, "--output", self.output)
        self.assertEqual(result.returncode, 1)
        self.assertIn("linux_to_h5.py: error:", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        truncated = os.path.join(self.dir.name, "truncated.tar.xz")
        with open(self.input, "rb") as f, open(truncated, "wb") as g:
            g.write(f.read()[:-100])
        result = run("--input", truncated, "--output", self.output)
        self.assertEqual(result.returncode, 1)
        self.assertIn("truncated.tar.xz: Compressed file ended", result.stderr)
        short = run("--input", self.input, "--output", self.output, "--long-documents")
        self.assertEqual(short.returncode, 1)
        self.assertIn("too little text", short.stderr)
        self.assertFalse(os.path.exists(self.output))
        self.assertFalse(os.path.exists(self.output + ".tmp"))

    def test_help(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("--long-documents", result.stdout)


if __name__ == "__main__":
    unittest.main()
