"""A byte-level tokenizer built locally, for the random-init ``tiny-*`` models.

No download, no training: the vocabulary is the 256 byte symbols of GPT-2's byte-level
alphabet plus a few special tokens, and there are no merges, so every byte is one token.
It is saved to disk and re-loaded through ``AutoTokenizer`` because TransformerLens needs a
tokenizer that can be re-loaded by name.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

CAUSAL_SPECIALS = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>", "unk": "<|unk|>"}
MASKED_SPECIALS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]", "mask": "[MASK]"}


def _byte_vocab(specials: list[str]) -> dict[str, int]:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials)}
    for sym in alphabet:
        vocab[sym] = len(vocab)
    return vocab


def build_byte_tokenizer(folder: Path, *, masked: bool = False) -> PreTrainedTokenizerBase:
    """Write a byte-level tokenizer to ``folder`` and load it back with ``AutoTokenizer``.

    ``masked=True`` gives BERT-style specials ([CLS] ... [SEP]) for encoder models; the
    default gives causal-LM specials (BOS/EOS/PAD).
    """
    folder.mkdir(parents=True, exist_ok=True)
    specials = list((MASKED_SPECIALS if masked else CAUSAL_SPECIALS).values())
    vocab = _byte_vocab(specials)
    unk = MASKED_SPECIALS["unk"] if masked else CAUSAL_SPECIALS["unk"]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if masked:
        cls, sep = MASKED_SPECIALS["cls"], MASKED_SPECIALS["sep"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B {sep}",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            cls_token=cls,
            sep_token=sep,
            pad_token=MASKED_SPECIALS["pad"],
            unk_token=unk,
            mask_token=MASKED_SPECIALS["mask"],
        )
    else:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token=CAUSAL_SPECIALS["bos"],
            eos_token=CAUSAL_SPECIALS["eos"],
            pad_token=CAUSAL_SPECIALS["pad"],
            unk_token=unk,
        )
    fast.model_max_length = 1_000_000
    fast.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))
