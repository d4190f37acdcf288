"""docs/domain.md stays true: its example decodes, its vocabulary table matches the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fieldapp.domain import Vocabulary, canonical_bytes, codec, validate_testimony

DOC = (Path(__file__).parents[2] / "docs" / "domain.md").read_text(encoding="utf-8")


def test_the_canonical_example_is_a_valid_canonical_record() -> None:
    match = re.search(r"<!-- canonical-example[^>]*-->\n```json\n(.*?)\n```", DOC, re.DOTALL)
    assert match is not None
    pretty = json.loads(match.group(1))
    data = json.dumps(pretty, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    t = codec.testimony_from_bytes(data)
    assert canonical_bytes(t) == data
    validate_testimony(t, Vocabulary.load_default())
    assert f"one line of {len(data):,} bytes" in DOC


def test_the_vocabulary_table_lists_every_term_with_its_labels() -> None:
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \| ([^|]+) \| ([^|]+) \|", DOC, re.MULTILINE))
    expected = {(t.code, t.label, t.label_in("ar")) for t in Vocabulary.load_default().terms}
    assert {(code, en.strip(), ar.strip()) for code, en, ar in rows} >= expected
