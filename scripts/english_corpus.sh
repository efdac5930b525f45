#!/bin/sh
# Write the public-domain English text the shipped `english` model is trained on, from two Debian
# packages, into DIR (default: corpora/english), then print the command that builds the model.
#
#     sudo apt-get install bible-kjv jargon-text    # bible-kjv-text comes with bible-kjv
#     sh scripts/english_corpus.sh [DIR]
#
#   kjv.txt     the King James Bible (1611; public domain), extracted by Debian's `bible` program
#               from bible-kjv-text's own format, with its chapter headings and verse numbers removed
#   jargon.txt  the Jargon File 4.4.7 (Eric S. Raymond; "in the public domain"), from jargon-text
# Beside them the model reads `nietzsche` (reverie's named corpus, public domain).
set -eu
dir=${1:-corpora/english}
for tool in bible zcat; do
    command -v "$tool" >/dev/null || { echo "english_corpus.sh: error: $tool not found; install it with: apt-get install bible-kjv jargon-text" >&2; exit 2; }
done
jargon=/usr/share/doc/jargon-text/jargon.txt.gz
[ -f "$jargon" ] || { echo "english_corpus.sh: error: $jargon not found; install it with: apt-get install jargon-text" >&2; exit 2; }
mkdir -p "$dir"
# `bible` prints "Genesis 1" headings and "  12 And ..." verse lines wrapped at 80 columns.
bible -l80 'gen1:1-rev22:21' | grep -v -E '^[1-3]? ?[A-Z][a-z]+( of [A-Z][a-z]+)? [0-9]+$' \
    | sed -E 's/^ +[0-9]+ //' | cat -s > "$dir/kjv.txt.part"
mv "$dir/kjv.txt.part" "$dir/kjv.txt"
zcat "$jargon" > "$dir/jargon.txt.part"
mv "$dir/jargon.txt.part" "$dir/jargon.txt"
wc -c "$dir/kjv.txt" "$dir/jargon.txt" >&2
echo "python scripts/pretrain.py english --corpus $dir/kjv.txt nietzsche $dir/jargon.txt"
