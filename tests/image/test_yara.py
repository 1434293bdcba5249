"""``--yara``: the user's rules run over every file of every layer; image.yara.match
findings name the layer and, for content a later layer hid, the hiding layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from podmortem.errors import InputError
from podmortem.image.analysis import analyze
from podmortem.image.yara_scan import YaraScanner

RULES = """
rule planted_miner {
    meta:
        description = "miner strings"
    strings:
        $a = "cryptonight"
    condition:
        $a
}
rule never_matches { strings: $a = "zzzz-not-here-zzzz" condition: $a }
"""


def test_yara_sees_hidden_files(tmp_path: Path, compromised_images: dict[str, Path]) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "miners.yar").write_text(RULES)
    scanner = YaraScanner(tmp_path / "r")
    a = analyze(compromised_images["oci-archive-zstd"], yara=scanner)
    hits = [f for f in a.findings if f.rule_id == "image.yara.match"]
    assert [
        (f.extra["path"], f.extra["layer_index"], f.extra["hidden_by_layer"]) for f in hits
    ] == [("/opt/miner/xmrig", 3, 4)]
    assert hits[0].extra["yara_rule"] == "miners:planted_miner"
    assert scanner.scanned >= 20  # every regular file of every layer


def test_bad_rules_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no \.yar"):
        YaraScanner(tmp_path)
    (tmp_path / "bad.yar").write_text("rule x { condition: nope }")
    with pytest.raises(InputError, match="does not compile"):
        YaraScanner(tmp_path)
