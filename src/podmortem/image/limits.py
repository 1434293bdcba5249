"""Bounds that keep the analysis of a hostile image finite in memory and time.

Every reader and walker takes a :class:`Limits`; hitting a bound is never a crash: it becomes
a caveat (and, when the bound itself is suspicious, a finding) and the rest of the image is
still analysed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    # Decompression bombs: a layer may inflate to at most ``max_ratio`` times its compressed
    # size (real layers compress 2-10x; zstd of zeros reaches 10000x), and never past
    # ``max_layer_bytes``; the whole image never past ``max_total_bytes``.
    max_ratio: int = 200
    min_layer_allowance: int = 64 << 20
    max_layer_bytes: int = 64 << 30
    max_total_bytes: int = 256 << 30
    # Millions of tiny files: the per-path metadata we keep is bounded by this count.
    # About 600 bytes of memory each (path, hashes, merge index): 1M members ~ 600 MB.
    max_members: int = 1_000_000
    # Deeply nested paths: real images stay under ~30 components and 1 KiB.
    max_path_depth: int = 128
    max_path_length: int = 4096
    # Pax/GNU long-name headers are read into memory: bound them.
    max_header_bytes: int = 1 << 20
    # Indicator scanning reads at most this many bytes from the start of each file.
    scan_head_bytes: int = 256 << 10
    # Package databases, passwd/shadow and other small files read whole, up to this size.
    capture_bytes: int = 64 << 20
    capture_total_bytes: int = 512 << 20  # all captured files together
    # md5 and sha1 (what dpkg and apk record) for every file, not only executables.
    verify_all_digests: bool = False
    # YARA sees at most this many bytes of each file (yara-x scans a buffer).
    yara_max_bytes: int = 32 << 20
    # Outer archive (docker save / oci-archive) member count and JSON document size.
    max_archive_members: int = 100_000
    max_json_bytes: int = 16 << 20
    max_index_depth: int = 8
    # Wall-clock budget for one image; past it, layers stop being read and a caveat says so.
    time_budget_s: float = 1800.0

    def layer_allowance(self, compressed_size: int) -> int:
        """Most decompressed bytes a layer blob of ``compressed_size`` may produce."""
        return min(
            self.max_layer_bytes, max(self.min_layer_allowance, compressed_size * self.max_ratio)
        )


DEFAULT_LIMITS = Limits()
