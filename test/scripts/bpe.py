"""A byte-level BPE tokenizer in the manner of GPT-2, written for tabtune's default model.

Training learns merges over words split by GPT-2's pre-tokenization pattern
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
which is matched here by hand (Debian's Python has no `regex` module), with JavaScript's
definition of \\s, since the tokenizer is run in the browser by @huggingface/tokenizers.
The result is written as a Hugging Face tokenizer.json (model BPE, ByteLevel pre-tokenizer
and decoder), and the encoder below gives the same ids as that file does.
"""
import unicodedata

# JavaScript's \s: ECMAScript WhiteSpace and LineTerminator (the Zs category plus a few).
JS_SPACE = frozenset("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(chr(c) for c in range(0x2000, 0x200B)))
CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


def bytes_to_unicode():
    """GPT-2's map from the 256 bytes to printable characters, in GPT-2's order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


BYTE_ORDER = bytes_to_unicode()
BYTE_CHAR = {b: c for b, c in BYTE_ORDER}


def _cls(c):
    """'s' for whitespace, 'L' for a letter, 'N' for a number, 'O' for anything else."""
    if c in JS_SPACE:
        return "s"
    k = unicodedata.category(c)[0]
    return k if k in ("L", "N") else "O"


def pretokenize(text):
    """The words of text, as GPT-2's pattern (leftmost match, alternatives in order) splits it."""
    out, i, n = [], 0, len(text)
    cls = [_cls(c) for c in text]
    while i < n:
        c = text[i]
        if c == "'":
            hit = next((s for s in CONTRACTIONS if text.startswith(s, i + 1)), None)
            if hit:
                out.append("'" + hit)
                i += 1 + len(hit)
                continue
        # ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one class.
        start = i + 1 if c == " " and i + 1 < n and cls[i + 1] != "s" else i
        k = cls[start]
        if k != "s":
            j = start + 1
            while j < n and cls[j] == k:
                j += 1
            out.append(text[i:j])
            i = j
            continue
        # '\s+(?!\S)' then '\s+': whitespace, leaving the last one to a following word.
        j = i + 1
        while j < n and cls[j] == "s":
            j += 1
        if j < n and j - 1 > i:
            j -= 1
        out.append(text[i:j])
        i = j
    return out


def word_symbols(word):
    return [BYTE_CHAR[b] for b in word.encode("utf-8")]


def train_bpe(texts, vocab_size, special="<|endoftext|>"):
    """Merges learned from texts: 256 byte tokens + merges + one special token = vocab_size.
    Each step merges the most frequent adjacent pair; ties go to the pair of lowest ids."""
    counts = {}
    for t in texts:
        for w in pretokenize(t):
            counts[w] = counts.get(w, 0) + 1
    tokens = [c for _, c in BYTE_ORDER]
    tid = {c: i for i, c in enumerate(tokens)}
    words = [[tid[c] for c in word_symbols(w)] for w in sorted(counts)]
    freq = [counts[w] for w in sorted(counts)]
    pairs, where = {}, {}
    for wi, syms in enumerate(words):
        for a, b in zip(syms, syms[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + freq[wi]
            where.setdefault((a, b), set()).add(wi)
    merges = []
    while len(tokens) < vocab_size - 1 and pairs:
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        a, b = best
        s = tokens[a] + tokens[b]
        if s not in tid:  # the same string can be reached by two merges: one token for both
            tid[s] = len(tokens)
            tokens.append(s)
        new = tid[s]
        merges.append((tokens[a], tokens[b]))
        for wi in sorted(where.pop(best, ())):
            syms, f = words[wi], freq[wi]
            for p in zip(syms, syms[1:]):
                pairs[p] -= f
                if pairs[p] == 0:
                    del pairs[p]
            merged, j = [], 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(syms[j])
                    j += 1
            words[wi] = merged
            for p in zip(merged, merged[1:]):
                pairs[p] = pairs.get(p, 0) + f
                where.setdefault(p, set()).add(wi)
        pairs.pop(best, None)
    tokens.append(special)
    return tokens, merges


class BPE:
    def __init__(self, tokens, merges, special="<|endoftext|>"):
        self.tokens = tokens
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.merges = merges
        self.special = special
        self.eos_id = self.ids[special]
        self.cache = {}
        self.char_byte = {c: b for b, c in BYTE_ORDER}

    def _word(self, word):
        if word in self.cache:
            return self.cache[word]
        syms = word_symbols(word)
        while len(syms) > 1:
            cand = [(self.ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(syms, syms[1:]))]
            r, _ = min(cand)
            if r == 1 << 30:
                break
            a, b = self.merges[r]
            merged, j = [], 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    merged.append(a + b)
                    j += 2
                else:
                    merged.append(syms[j])
                    j += 1
            syms = merged
        ids = [self.ids[s] for s in syms]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        """Ids of text; the special token is recognised where it appears literally."""
        out = []
        for k, part in enumerate(text.split(self.special)):
            if k:
                out.append(self.eos_id)
            for w in pretokenize(part):
                out.extend(self._word(w))
        return out

    def decode(self, ids):
        bs = bytearray()
        for i in ids:
            t = self.tokens[i]
            if t == self.special:
                bs.extend(t.encode("utf-8"))
            else:
                bs.extend(self.char_byte[c] for c in t)
        return bs.decode("utf-8", errors="replace")

    def tokenizer_json(self):
        special = {"id": self.eos_id, "content": self.special, "single_word": False, "lstrip": False,
                   "rstrip": False, "normalized": True, "special": True}
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": [special],
            "normalizer": None, "pre_tokenizer": byte_level,
            "post_processor": {**byte_level, "trim_offsets": False},
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "vocab": {t: i for i, t in enumerate(self.tokens)},
                      "merges": [list(m) for m in self.merges]},
        }

    def tokenizer_config(self, model_max_length):
        return {
            "tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "add_bos_token": False,
            "bos_token": self.special, "eos_token": self.special, "unk_token": self.special,
            "model_max_length": model_max_length, "clean_up_tokenization_spaces": False, "errors": "replace",
            "added_tokens_decoder": {str(self.eos_id): {"content": self.special, "lstrip": False, "normalized": True,
                                                         "rstrip": False, "single_word": False, "special": True}},
        }
