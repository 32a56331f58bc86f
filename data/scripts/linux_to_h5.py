#!/usr/bin/python3
"""Linux kernel source (Debian's linux-source-6.1 tarball) to a race language-model dataset, byte level.

Reads /usr/src/linux-source-6.1.tar.xz (apt-get install linux-source-6.1) as a stream, never extracting
it, and keeps the text files: names ending in .c .h .S .rst .txt, and Kconfig*, Makefile*, Kbuild;
files holding a NUL byte count as binary and are skipped. Paths lose the tarball's top folder.

Default: one document per file, its bytes as they are. --long-documents: one document per directory,
its files (not its subdirectories') concatenated in sorted path order, each preceded by the line
"==> PATH <==\n"; a directory over --max-document-bytes (default 1 MiB) is cut into consecutive documents
of that size at most, at file boundaries where a file fits and inside a file where one alone is larger,
and documents under --min-document-bytes (default 65537 = 64K context + 1 there, 1 otherwise) are
dropped, since a trainer with data.cross_documents false gets no window from them. Only the directories
on the path of the current tar member are held in memory, not the corpus.

The split is by document: a document goes to val when the seeded hash of its key (file path, or
directory path and part number) falls under --val-fraction, so the same input and seed give the same
file. Writes /train and /val tokens (uint8) and doc_offsets, and the byte-level /tokenizer.
"""
import argparse
import contextlib
import hashlib
import lzma
import os
import sys
import tarfile

from race_h5 import LmSplit, atomic_h5, write_byte_tokenizer

SUFFIXES = (".c", ".h", ".S", ".rst", ".txt")
PREFIXES = ("Kconfig", "Makefile", "Kbuild")


def wanted(path):
    name = os.path.basename(path)
    return name.endswith(SUFFIXES) or name.startswith(PREFIXES)


@contextlib.contextmanager
def open_tar(path):
    """The tar as a stream. An .xz is decompressed by lzma itself, because tarfile's own stream ends quietly
    at a truncated .xz while lzma raises EOFError there."""
    with open(path, "rb") as probe:
        xz = probe.read(6) == b"\xfd7zXZ\x00"
    if xz:
        with lzma.open(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar
    else:
        with tarfile.open(path, "r|*") as tar:
            yield tar


def text_files(tar, max_bytes):
    """Yields (path without the top folder, bytes) of the wanted text files, stopping after max_bytes."""
    read = 0
    for member in tar:
        path = member.name.partition("/")[2]
        if not member.isfile() or not path or not wanted(path):
            continue
        data = tar.extractfile(member).read()
        if b"\0" in data:
            continue
        yield path, data
        read += len(data)
        if max_bytes and read >= max_bytes:
            return


def inside(directory, ancestor):
    return ancestor in ("", directory) or directory.startswith(ancestor + "/")


def directory_documents(files, max_size):
    """Yields (key, document) per directory part: each directory's files sorted by path with header lines,
    cut at max_size. A directory is complete once the stream has left it and its subdirectories."""
    pending = {}  # directory -> [(path, data)], only for directories on the current member's path

    def flush(directory):
        parts, part = [], b""
        for path, data in sorted(pending.pop(directory)):
            piece = f"==> {path} <==\n".encode() + data
            if part and len(part) + len(piece) > max_size:
                parts.append(part)
                part = b""
            part += piece
            while len(part) > max_size:
                parts.append(part[:max_size])
                part = part[max_size:]
        parts.append(part)
        return [(f"{directory}/ part {i}", p) for i, p in enumerate(parts)]

    for path, data in files:
        directory = os.path.dirname(path)
        for done in [d for d in pending if not inside(directory, d)]:
            yield from flush(done)
        pending.setdefault(directory, []).append((path, data))
    for done in sorted(pending, reverse=True):
        yield from flush(done)


def in_val(key, seed, fraction):
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "little") < fraction * 2 ** 64


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="/usr/src/linux-source-6.1.tar.xz",
                        help="the source tarball, .tar.xz or any tar (default: Debian's linux-source-6.1)")
    parser.add_argument("--output", help="HDF5 file to write, replaced atomically (default data/linux.h5, "
                        "or data/linux_long.h5 with --long-documents, as configs/lm_64k.json reads)")
    parser.add_argument("--long-documents", action="store_true", help="one document per directory, not per file")
    parser.add_argument("--min-document-bytes", type=int,
                        help="drop shorter documents (default 65537 with --long-documents, else 1)")
    parser.add_argument("--max-document-bytes", type=int, default=1 << 20,
                        help="cut longer directories, with --long-documents (default 1048576)")
    parser.add_argument("--val-fraction", type=float, default=0.01,
                        help="share of documents for validation, in (0, 0.5] (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val hash (default 0)")
    parser.add_argument("--max-bytes", type=int, default=0, help="stop after this many bytes of kept files (0: all)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.input):
        parser.error(f"--input {args.input}: no such file (for the kernel source: apt-get install linux-source-6.1)")
    if not 0.0 < args.val_fraction <= 0.5:
        parser.error(f"--val-fraction {args.val_fraction}: expected a number in (0, 0.5]")
    if args.max_bytes < 0:
        parser.error(f"--max-bytes {args.max_bytes}: expected 0 (all) or a positive count")
    minimum = args.min_document_bytes
    if minimum is None:
        minimum = 65537 if args.long_documents else 1
    if minimum < 1:
        parser.error(f"--min-document-bytes {minimum}: expected a count >= 1")
    if args.max_document_bytes < minimum:
        parser.error(f"--max-document-bytes {args.max_document_bytes}: expected at least --min-document-bytes "
                     f"({minimum})")
    output = args.output or ("data/linux_long.h5" if args.long_documents else "data/linux.h5")
    dropped = 0
    try:
        with open_tar(args.input) as tar, atomic_h5(output) as h5:
            train, val = LmSplit(h5, "train"), LmSplit(h5, "val")
            files = text_files(tar, args.max_bytes)
            documents = directory_documents(files, args.max_document_bytes) if args.long_documents else files
            for key, document in documents:
                if len(document) < minimum:
                    dropped += 1
                    continue
                (val if in_val(key, args.seed, args.val_fraction) else train).add(document)
            train.close()
            val.close()
            if train.size == 0 or val.size == 0:
                raise ValueError(f"{args.input}: too little text for a train and a val split ({len(train.offsets)} "
                                 f"and {len(val.offsets)} documents of at least {minimum} bytes)")
            write_byte_tokenizer(h5)
    except (OSError, ValueError, EOFError, lzma.LZMAError, tarfile.TarError) as error:
        where = "" if args.input in str(error) else f"{args.input}: "
        print(f"linux_to_h5.py: error: {where}{error}", file=sys.stderr)
        return 1
    print(f"{output}: train {train.size} bytes in {len(train.offsets)} documents, val {val.size} bytes in "
          f"{len(val.offsets)} documents; dropped {dropped} documents of fewer than {minimum} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
