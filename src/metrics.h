// Evaluation metrics, compatible with sacreBLEU 2.6.0 (no torch dependency):
//   bleu.h                BLEU: corpus_bleu, sentence_bleu, per-segment statistics
//   chrf.h                chrF / chrF++: corpus_chrf, sentence_chrf
//   sacrebleu_tokenize.h  the 13a / none / intl tokenizers and the Unicode handling they share
#pragma once
#include "bleu.h"
#include "chrf.h"
#include "sacrebleu_tokenize.h"
