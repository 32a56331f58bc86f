"""Byte-level BPE for the data scripts, in pure Python (HF tokenizers is not packaged in Debian 12): training
on a corpus sample and encoding, by exactly the rule below, which any other encoder (the C++ side) must
follow to give the same ids.

Ids: 0..255 are the single bytes; 256 + k is the k-th merged piece, in the order training made them;
the special tokens follow (race_h5.write_tokenizer). The /tokenizer table lists every piece's bytes, and
no two pieces have the same bytes.

Chunking (pre-tokenization, like GPT-2's but on bytes). Whitespace is the bytes \\t \\n \\v \\f \\r and
space; "letters" are A-Z, a-z and every byte >= 0x80 (so UTF-8 words stay whole); digits are 0-9;
"other" is every remaining byte (punctuation, controls, NUL). Scanning from the start, a chunk is:
  1. at a letter, digit or other byte, or at a space directly followed by one: the optional space plus
     the longest run of bytes of that same class;
  2. otherwise (at whitespace): the longest whitespace run, minus its last byte when the run has at
     least two bytes and a non-whitespace byte follows it (that byte's space then opens rule 1's chunk).
This is the regular expression CHUNK below applied with findall; merges never cross chunks.

Encoding one chunk: start from its bytes; while some adjacent pair (x, y) has bytes(x) + bytes(y) equal
to the bytes of a piece with id >= 256, replace the pair whose piece has the lowest id (the leftmost
such pair on a tie) by that piece. The text's ids are its chunks' ids in order. Decoding concatenates
the pieces' bytes, so decode(encode(text)) == text for any bytes.

Training: count the chunks of the sample; repeatedly take the most frequent adjacent pair of pieces
over all chunks (ties: the lowest (left id, right id)), add the piece bytes(x) + bytes(y) unless a
piece already has those bytes, and merge that pair left to right in every chunk, until there are
`pieces` pieces or no pair is left.
"""
import collections
import heapq
import re

WHITESPACE = rb"\t\n\x0b\x0c\r "
CHUNK = re.compile(rb" ?[A-Za-z\x80-\xff]+| ?[0-9]+| ?[^A-Za-z0-9\x80-\xff" + WHITESPACE + rb"]+"
                   rb"|[" + WHITESPACE + rb"]+(?![^" + WHITESPACE + rb"])|[" + WHITESPACE + rb"]+")


def chunks(text):
    return CHUNK.findall(text)


def train(counts, size):
    """Pieces (list of bytes, ids 0..size-1 or fewer if the pairs run out) learned from `counts`, a mapping
    chunk bytes -> occurrences."""
    pieces = [bytes([b]) for b in range(256)]
    ids = {piece: i for i, piece in enumerate(pieces)}
    words = [list(chunk) for chunk in counts]
    freqs = list(counts.values())
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)  # pair -> indices of the words holding it
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    while len(pieces) < size and heap:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative:
            continue  # stale: the count changed after this entry was pushed
        merged = pieces[pair[0]] + pieces[pair[1]]
        if merged not in ids:
            ids[merged] = len(pieces)
            pieces.append(merged)
        new_id = ids[merged]
        changed = set()
        for index in sorted(where.pop(pair)):
            word, freq = words[index], freqs[index]
            before = collections.Counter(zip(word, word[1:]))
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[index] = out
            after = collections.Counter(zip(out, out[1:]))
            for old in before.keys() - after.keys():
                where[old].discard(index)
            for new in after.keys() - before.keys():
                where[new].add(index)
            for p in before.keys() | after.keys():
                if before[p] != after[p]:
                    pair_counts[p] += (after[p] - before[p]) * freq
                    changed.add(p)
        for p in changed:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
    return pieces


class Encoder:
    """Encodes text by the rule in the module docstring, caching the ids of frequent chunks."""

    def __init__(self, pieces):
        self.ids = {piece: i for i, piece in enumerate(pieces) if i >= 256}
        self.pieces = pieces
        self.cache = {}

    def encode_chunk(self, chunk):
        # Symbols are indexed by the byte offset they start at; a heap of candidate merges keyed
        # (merged id, offset) pops the lowest id, leftmost first; entries made stale by a merge are skipped.
        ids = list(chunk)
        following = list(range(1, len(ids) + 1))
        preceding = list(range(-1, len(ids) - 1))
        heap = []

        def push(left):
            right = following[left] if left >= 0 else len(ids)
            if right < len(ids):
                merged = self.ids.get(self.pieces[ids[left]] + self.pieces[ids[right]])
                if merged is not None:
                    heapq.heappush(heap, (merged, left, ids[left], ids[right]))

        for left in range(len(ids) - 1):
            push(left)
        while heap:
            merged, left, left_id, right_id = heapq.heappop(heap)
            right = following[left]
            if ids[left] != left_id or right >= len(ids) or ids[right] != right_id:
                continue
            ids[left] = merged
            ids[right] = -1
            following[left] = following[right]
            if following[right] < len(ids):
                preceding[following[right]] = left
            push(preceding[left])
            push(left)
        return [i for i in ids if i >= 0]

    def encode(self, text):
        out = []
        for chunk in chunks(text):
            cached = self.cache.get(chunk)
            if cached is None:
                if len(self.cache) >= 1 << 20:
                    self.cache.clear()
                cached = self.cache[chunk] = self.encode_chunk(chunk)
            out.extend(cached)
        return out
