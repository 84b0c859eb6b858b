"""Near-duplicate detection with MinHash signatures and locality-sensitive hashing.

Copies of a file that differ by a header, a rename or a few edits (forks, vendored copies,
generated variants) would otherwise be learnt several times over and, worse, leak between the
training and the held-out split. Two files are near-duplicates when the estimated Jaccard
similarity of their sets of 5-token shingles reaches the threshold.

Hashes are CRC-32 and a seeded permutation family, never Python's `hash()`: that one is salted
per process, and the builder must give the same result in every worker and on every run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

_SHINGLE: Final = 5
_MERSENNE: Final = np.uint64((1 << 61) - 1)
_MASK32: Final = np.uint64(0xFFFFFFFF)
# A bottom-k sample of a very long file's shingles estimates its similarity as well as all of
# them, at a bounded cost.
_MAX_SHINGLES: Final = 20_000
_SHINGLE_BASE: Final = np.uint64(1_000_003)


def _permutations(
    num_perm: int, seed: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)
    return a, b


_PERMUTATION_CACHE: dict[
    tuple[int, int], tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]
] = {}


def signature(text: str, *, num_perm: int = 64, seed: int = 1) -> bytes:
    """The MinHash signature of `text` (num_perm 32-bit values)."""
    # Words split on whitespace: C-speed, and as good as a tokenizer for telling copies apart.
    words = text.split()
    hashes_by_word = {word: zlib.crc32(word.encode("utf-8")) for word in set(words)}
    word_hashes = np.array([hashes_by_word[word] for word in words], dtype=np.uint64)
    if len(word_hashes) >= _SHINGLE:
        # Rolling combination of 5 consecutive word hashes, kept to 32 bits.
        count = len(word_hashes) - _SHINGLE + 1
        shingles = np.zeros(count, dtype=np.uint64)
        for offset in range(_SHINGLE):
            shingles = (shingles * _SHINGLE_BASE + word_hashes[offset : offset + count]) & _MASK32
    else:
        shingles = word_hashes
    if len(shingles) == 0:
        shingles = np.zeros(1, dtype=np.uint64)
    if len(shingles) > _MAX_SHINGLES:
        shingles = np.unique(shingles)
        if len(shingles) > _MAX_SHINGLES:
            shingles = np.partition(shingles, _MAX_SHINGLES)[:_MAX_SHINGLES]
    key = (num_perm, seed)
    if key not in _PERMUTATION_CACHE:
        _PERMUTATION_CACHE[key] = _permutations(num_perm, seed)
    a, b = _PERMUTATION_CACHE[key]
    # a and shingles stay below 2**32, so a * shingle + b cannot overflow 64 bits. A repeated
    # shingle cannot change a minimum, so the multiset needs no deduplication.
    permuted = (np.outer(a, shingles) + b[:, None]) % _MERSENNE
    minimum = permuted.min(axis=1) & _MASK32
    packed: bytes = minimum.astype("<u4").tobytes()
    return packed


def similarity(first: bytes, second: bytes) -> float:
    """Estimated Jaccard similarity of the texts two signatures were made from."""
    a = np.frombuffer(first, dtype="<u4")
    b = np.frombuffer(second, dtype="<u4")
    return float(np.mean(a == b))


@dataclass
class NearDuplicateIndex:
    """Remembers signatures; `add` tells whether a new one is a near-duplicate of one seen.

    Bands of `rows` values are bucketed exactly; only signatures sharing a bucket are
    compared, which keeps a build linear in the number of files. 16 bands of 4 rows find a
    pair at Jaccard 0.85 with a probability above 0.999.
    """

    threshold: float = 0.85
    rows: int = 4
    _buckets: dict[tuple[int, bytes], list[int]] = field(default_factory=dict)
    _signatures: list[npt.NDArray[np.uint32]] = field(default_factory=list)
    _keys: list[str] = field(default_factory=list)

    def add(self, key: str, sig: bytes) -> str | None:
        """Remember `sig` under `key`, or return the key of the near-duplicate it matches
        (then `sig` is not remembered)."""
        width = 4 * self.rows
        bands = [(i, sig[i * width : (i + 1) * width]) for i in range(len(sig) // width)]
        candidates: set[int] = set()
        for band in bands:
            candidates.update(self._buckets.get(band, ()))
        values = np.frombuffer(sig, dtype="<u4")
        if candidates:
            ordered = sorted(candidates)
            stacked = np.stack([self._signatures[index] for index in ordered])
            similar = np.flatnonzero((stacked == values).mean(axis=1) >= self.threshold)
            if len(similar):
                return self._keys[ordered[int(similar[0])]]
        index = len(self._signatures)
        self._signatures.append(values)
        self._keys.append(key)
        for band in bands:
            self._buckets.setdefault(band, []).append(index)
        return None
