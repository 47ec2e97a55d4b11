"""Rebuild LLaMA-1/2's (and so Vicuna-1.5's and LLaVA-1.5's) sentencepiece `tokenizer.model` offline, byte for byte.

Why: tests need the real 32,000-piece vocabulary to check stf-bench's input ids against LLaVA's official ones
(docs/protocols.md, "Input ids"), and the model file is not downloadable here. The MIT npm package
`llama-tokenizer-js` (belladoreai/llama-tokenizer-js, 1.2.2) ships the vocabulary in id order; sentencepiece's BPE
model needs, per piece, a type and a score:

- id 0 `<unk>` UNKNOWN, ids 1-2 `<s>` `</s>` CONTROL, ids 3-258 `<0x00>`..`<0xFF>` BYTE, all score 0;
- every other piece NORMAL (left unset: it is the field's default), score -(id - 259) (the order of the BPE
  merges), except the 16 pieces made only of "▁" (the lone "▁", id 29871, and the 15 runs "▁▁" .. 16 x "▁"):
  they rank below every other piece, score -1e9 (`allow_whitespace_only_pieces`);
- trainer and normalizer specs as printed from Meta's file (karpathy/llama2.c, doc/train_llama_tokenizer.md).

The result has sha256 9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347, Meta's file; the
script refuses to write anything else.

Run (from the repository root; npm is only used to download the package):
    mkdir -p /tmp/ltjs && (cd /tmp/ltjs && npm pack llama-tokenizer-js@1.2.2 && tar xzf llama-tokenizer-js-1.2.2.tgz)
    .venv/bin/python scripts/make_llama_tokenizer_model.py /tmp/ltjs/package/llama-tokenizer.js \\
        tests/data/llama/tokenizer.model
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2 as pb

SHA256 = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"
WHITESPACE_SCORE = -1e9


def vocabulary(js_file: Path) -> list[str]:
    """The 32,000 pieces in id order, from the package's base64 `llama_vocab_base64` constant."""
    found = re.search(r'const llama_vocab_base64 = "([A-Za-z0-9+/=]+)"', js_file.read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit(f"{js_file}: no llama_vocab_base64 constant; is it llama-tokenizer-js 1.2.x?")
    return base64.b64decode(found.group(1)).decode("utf-8").split("\n")


def model_proto(pieces: list[str]) -> bytes:
    """The serialized ModelProto (see the module docstring for types, scores and specs)."""
    m = pb.ModelProto()
    t = m.trainer_spec
    t.input.append("/large_experiments/theorem/datasets/MERGED/all.test1.merged")
    t.model_prefix = "spm_model_32k_200M_charcov099995_allowWSO__v2"
    t.model_type = pb.TrainerSpec.BPE
    t.vocab_size = 32000
    t.self_test_sample_size = 0
    t.input_format = "text"
    t.character_coverage = 0.99995
    t.input_sentence_size = 200000000
    t.seed_sentencepiece_size = 1000000
    t.shrinking_factor = 0.75
    t.num_threads = 80
    t.num_sub_iterations = 2
    t.max_sentence_length = 4192
    t.shuffle_input_sentence = True
    t.max_sentencepiece_length = 16
    t.split_by_unicode_script = True
    t.split_by_whitespace = True
    t.split_by_number = True
    t.treat_whitespace_as_suffix = False
    t.split_digits = True
    t.allow_whitespace_only_pieces = True
    t.vocabulary_output_piece_score = True
    t.hard_vocab_limit = True
    t.use_all_vocab = False
    t.byte_fallback = True
    t.required_chars = ""
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = 0, 1, 2, -1
    t.unk_surface = " \u2047 "
    t.unk_piece, t.bos_piece, t.eos_piece, t.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    t.train_extremely_large_corpus = False
    t.enable_differential_privacy = False
    t.differential_privacy_noise_level = 0.0
    t.differential_privacy_clipping_threshold = 0
    n = m.normalizer_spec
    n.name = "identity"
    n.precompiled_charsmap = b""
    n.add_dummy_prefix = True
    n.remove_extra_whitespaces = False
    n.normalization_rule_tsv = ""
    for i, text in enumerate(pieces):
        piece = m.pieces.add()
        piece.piece = text
        if i == 0:
            piece.score, piece.type = 0.0, pb.ModelProto.SentencePiece.UNKNOWN
        elif i < 3:
            piece.score, piece.type = 0.0, pb.ModelProto.SentencePiece.CONTROL
        elif i < 259:
            piece.score, piece.type = 0.0, pb.ModelProto.SentencePiece.BYTE
        else:
            # NORMAL is the field's default: Meta's file leaves it unset (2 bytes a piece)
            piece.score = WHITESPACE_SCORE if set(text) == {"\u2581"} else -(i - 259)
    return m.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("js_file", type=Path, help="llama-tokenizer.js from the npm package llama-tokenizer-js")
    parser.add_argument("output", type=Path, help="where to write tokenizer.model")
    args = parser.parse_args()
    pieces = vocabulary(args.js_file)
    if len(pieces) != 32000:
        raise SystemExit(f"{args.js_file}: {len(pieces)} pieces, expected 32000")
    data = model_proto(pieces)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"rebuilt model has sha256 {digest}, not Meta's {SHA256}; nothing written")
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
