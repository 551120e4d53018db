#!/usr/bin/env bash
# Independent check of alloy's tokenizer: the tokenizer.json files the C++
# tests build (GPT-2 style, Llama-3 style, Llama-2 style legacy and
# Metaspace, Unigram with byte fallback, BERT-style WordPiece) are encoded by the npm package @huggingface/tokenizers (a JS
# port of HF tokenizers) and by `alloy tokenize --json` on the multilingual
# test corpus; the ids must be equal. Exit 77 (skipped) when node/npm are
# missing or the package cannot be installed (no registry access).
# Usage: check_tokenizers_js.sh FORMATS_TESTS ALLOY WORKDIR
set -euo pipefail
formats_tests=$(realpath "$1") alloy=$(realpath "$2") work=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../gguf_js/npm_package.sh"
npm_package "$work/js" @huggingface/tokenizers@0.2.0
cp "$here/compare_ids.mjs" "$work/js/"
rm -rf "$work/fixtures"
ALLOY_TOKENIZER_FIXTURES="$work/fixtures" "$formats_tests" "[.write-fixtures]" >/dev/null
( cd "$work/js" && node compare_ids.mjs "$alloy" "$work/fixtures" )
