#!/usr/bin/env python3
"""Regenerate wormhole-core/src/proto/wordlist.rs from pgp_wordlist.json (PROTOCOL §5.2)."""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent / "wormhole-core" / "src" / "proto"
d = json.loads((root / "pgp_wordlist.json").read_text())
assert [int(e[0], 16) for e in d] == list(range(256))
even = [e[1].lower() for e in d]
odd = [e[2].lower() for e in d]


def arr(name, doc, ws):
    s = f"/// {doc}\npub(crate) const {name}: [&str; 256] = [\n"
    for i in range(0, 256, 8):
        s += "    " + " ".join(f'"{w}",' for w in ws[i : i + 8]) + "\n"
    return s + "];\n"


out = (
    "//! The PGP wordlist (lowercased), generated from `pgp_wordlist.json` (PROTOCOL §5.2).\n"
    "//! Index = byte value. Regenerate with `scripts/gen-wordlist.py`; a unit test checks it\n"
    "//! against the JSON file.\n\n"
)
out += arr("EVEN_WORDS", 'Two-syllable ("even") words, used at odd positions (2nd, 4th, …) of a code.', even) + "\n"
out += arr("ODD_WORDS", 'Three-syllable ("odd") words, used at even positions (1st, 3rd, …) of a code.', odd)
(root / "wordlist.rs").write_text(out)
