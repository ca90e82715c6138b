"""sWUGGY-style word / non-word pairs: real words, and pronounceable non-words matched in phone count.

Non-words come from grapheme substitutions (an onset, vowel or coda spelling swapped for another one
seen in the same position of real words), kept only when espeak-ng's pronunciation (a) has exactly as
many phones as the word, (b) is not the pronunciation of any word in the lexicon, and (c) uses only
phone bigrams (word edges included) that real words use: phonotactically legal. Half of the words are
in the built-in stories' vocabulary (frequency > 0: how often they occur in 20,000 stories of seed 0),
half are common English words the stories never use (frequency 0), as in the official split.
Where a system word list is installed (Debian ``wamerican``: /usr/share/dict/words), no non-word is
spelled like any of its ~100k words either, nor pronounced like any of its ~64k lower-case words
(spoken, "nead" is the word "need"; the list's pronunciations are cached on disk).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import random
import re

from slmjax import fileio
from slmjax.synth import benchio, engines, phonemes, settings, stories
from slmjax.synth import lexicon as L
from slmjax.synth.errors import SynthError

FREQ_SEED, FREQ_STORIES = 0, 20000
# Bumped when the same seed draws other pairs (2: no non-word sounds like a listed word; a word without
# a legal non-word is replaced by another of its pool).
ITEMS_VERSION = 2
# Common English words outside the story lexicon (filtered against it at run time).
EXTRA_WORDS = """
window pocket ladder kettle blanket pillow button mirror basket carpet cushion curtain bottle bucket
hammer needle candle jacket wallet pepper butter cheese orange lemon banana cherry potato tomato onion
garlic salad soup bread sandwich noodle rice honey coffee letter parcel engine wheel bridge tunnel
island valley mountain desert river canyon meadow village city market museum hospital office factory
prison church temple palace cottage cabin tent hotel airport harbor bottle pencil marble puzzle
rocket violin trumpet cello banjo whistle ribbon feather pebble crystal silver copper metal plastic
rubber cotton velvet leather paper timber stone brick glass wire chain rope string thread magnet
battery lamp clock watch calendar camera radio phone screen keyboard mouse cable signal rhythm melody
chorus lesson question answer problem number letter picture story chapter poem puzzle riddle secret
promise danger courage honest gentle clever lucky silly angry hungry thirsty sleepy tired quick slow
heavy light narrow wide shallow steep smooth rough bitter sour spicy salty frozen empty hollow
crooked golden wooden woolen purple orange scarlet violet yellow crimson tiger lion zebra monkey
giraffe camel donkey rabbit turtle lizard spider beetle cricket parrot pigeon eagle falcon raven
sparrow salmon shark whale walrus otter beaver badger weasel ferret llama panda koala kangaroo
jump climb crawl whisper shout wander gather scatter borrow follow swallow tumble wobble giggle
wiggle juggle sneeze cough hiccup shiver blink wink nibble munch sip stir pour slice chop peel
squeeze polish wrap fold stitch sew knit carve build repair measure count divide multiply guess
wonder remember forget imagine explain describe discover invent travel visit arrive depart return
winter summer autumn spring morning evening midnight weekend holiday season minute second century
doctor nurse farmer sailor pilot soldier tailor barber plumber dentist lawyer writer actor dancer
""".split()
WORD_LISTS = ("/usr/share/dict/words", "/usr/share/dict/american-english", "/usr/share/dict/british-english")
_CHUNK = re.compile(r"[aeiou]+y?|y(?![aeiou])|[^aeiouy]+|y")
_VOWEL = set("aeiouy")


def _chunks(word: str) -> list[str]:
    return _CHUNK.findall(word)


def _slot(chunks: list[str], i: int) -> tuple[bool, str]:
    pos = "initial" if i == 0 else "final" if i == len(chunks) - 1 else "medial"
    return chunks[i][0] in _VOWEL and not (i == 0 and chunks[i] == "y"), pos


def _candidates(word: str, inventory: dict, rng: random.Random, k: int) -> list[str]:
    chunks = _chunks(word)
    out = []
    n_sub = 1 if len(chunks) <= 4 else 2
    for _ in range(k):
        new = list(chunks)
        for i in rng.sample(range(len(chunks)), min(n_sub, len(chunks))):
            options, weights = inventory[_slot(chunks, i)]
            new[i] = rng.choices(options, weights)[0]
        cand = "".join(new)
        if cand != word:
            out.append(cand)
    return out


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[dict[str, int], list[str]]:
    """(in-vocabulary words with their story frequency, out-of-vocabulary words), names excluded."""
    counts = stories.word_counts(FREQ_SEED, FREQ_STORIES)
    names = {w.lower() for w in L.FEMALE + L.MALE}
    inv = {w: c for w, c in counts.items() if len(w) >= 3 and w.isalpha() and w not in names}
    oov = sorted({w for w in EXTRA_WORDS if w not in counts and w.isalpha()})
    return inv, oov


@functools.lru_cache(maxsize=1)
def _pronunciations(words: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return dict(zip(words, phonemes.phonemize(list(words))))


@functools.lru_cache(maxsize=1)
def system_words() -> tuple[set[str], str | None]:
    """Lower-cased words of the first system word list found, and its path (empty, None when none)."""
    for path in WORD_LISTS:
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                return {w.strip().lower() for w in f if w.strip()}, path
    return set(), None


def _phones_cache(word_list: str) -> str:
    key = hashlib.sha256(f"{settings.file_digest(word_list)}|{phonemes.engine_version()}".encode()).hexdigest()
    return os.path.join(fileio.cache_dir("word_list_phones"), key[:32] + ".txt")


@functools.lru_cache(maxsize=2)
def word_list_pronunciations(word_list: str | None) -> frozenset[tuple[str, ...]]:
    """Pronunciations of the lower-case words of a system word list (none without one). espeak-ng reads
    them once per list and espeak-ng version and data (~64k words: 20-60 s), then they come from a cache
    file."""
    if word_list is None:
        return frozenset()
    cache = _phones_cache(word_list)
    if os.path.exists(cache):
        with open(cache, encoding="utf-8") as f:
            return frozenset(tuple(line.split()) for line in f)
    with open(word_list, encoding="utf-8", errors="replace") as f:
        words = sorted({w for w in map(str.strip, f) if w.isascii() and w.isalpha() and w.islower()})
    phones = frozenset(phonemes.phonemize(words, jobs=os.cpu_count() or 1)) - {()}
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        fileio.atomic_write_text(cache, "".join(" ".join(p) + "\n" for p in sorted(phones)))
    except OSError:
        pass  # an unwritable cache only costs the next run the same reading
    return phones


def items(n: int, seed: int, splits=("dev", "test")) -> dict[str, list[dict]]:
    """``n`` pairs per split: dicts with word, nonword, frequency and both phone tuples. Both splits are
    always drawn, so that a split's items never depend on which splits are asked for."""
    splits = benchio.check_splits(splits)
    inv, oov = vocabulary()
    n_inv, n_oov = (n + 1) // 2, n // 2
    k = len(benchio.SPLITS)
    if n_inv * k > len(inv) or n_oov * k > len(oov):
        most = min(2 * (len(inv) // k), 2 * (len(oov) // k) + 1)
        raise SynthError(f"swuggy: --n={n} needs {n_inv * k} in-vocabulary and {n_oov * k} other words; the "
                         f"lexicon has {len(inv)} and {len(oov)} (max --n={most})")
    real = sorted(set(inv) | set(oov))
    real_phones = _pronunciations(tuple(real))
    pron_set = set(real_phones.values())
    heard = pron_set | word_list_pronunciations(system_words()[1])  # a non-word must sound like no word
    bigrams = {b for ph in pron_set for b in zip(("#",) + ph, ph + ("#",))}
    inventory: dict = collections.defaultdict(collections.Counter)
    for w in real:
        ch = _chunks(w)
        for i in range(len(ch)):
            inventory[_slot(ch, i)][ch[i]] += 1
    inventory = {k: (list(c), list(c.values())) for k, c in inventory.items()}

    rng = random.Random(f"swuggy:{seed}")
    pool_inv, pool_oov = sorted(inv), list(oov)
    rng.shuffle(pool_inv)
    rng.shuffle(pool_oov)
    real_set, used_nonwords = set(real) | system_words()[0], set()

    def pair_up(chosen: list[str]) -> list[dict]:
        """The chosen words that have a legal non-word among their candidates, each with its first."""
        cands = {w: [c for c in _candidates(w, inventory, rng, 40) if c not in real_set] for w in chosen}
        flat = sorted({c for cs in cands.values() for c in cs})
        cand_phones = dict(zip(flat, phonemes.phonemize(flat)))
        rows = []
        for w in chosen:
            target = real_phones[w]
            for c in cands[w]:
                ph = cand_phones[c]
                if (len(ph) == len(target) and ph not in heard and ph != target and c not in used_nonwords
                        and all(b in bigrams for b in zip(("#",) + ph, ph + ("#",)))):
                    used_nonwords.add(c)
                    rows.append({"word": w, "nonword": c, "frequency": inv.get(w, 0),
                                 "phones": target, "nonword_phones": ph})
                    break
        return rows

    def draw(split: str, pool: list[str], want: int, half: str) -> list[dict]:
        rows: list[dict] = []
        while len(rows) < want and pool:  # a word without a legal non-word: the next word of its pool
            rows += pair_up([pool.pop() for _ in range(min(want - len(rows), len(pool)))])
        if len(rows) < want:  # a short split would also break the half in, half out of vocabulary
            raise SynthError(f"swuggy: --n={n}: the {split} split found legal non-words for {len(rows)} of "
                             f"its {want} {half} words before the word pool ran out; use a smaller --n")
        return rows

    out = {s: draw(s, pool_inv, n_inv, "in-vocabulary") + draw(s, pool_oov, n_oov, "out-of-vocabulary")
           for s in benchio.SPLITS}
    return {split: out[split] for split in splits}


def build(root: str, n: int, voices: list[engines.Voice], seed: int = 1, workers: int | None = None,
          splits=("dev", "test")) -> dict:
    """Write ``root/lexical/{split}/`` wavs and gold.csv (both rows of a pair carry the word's frequency)."""
    word_list = system_words()[1]  # non-words are checked against it: it decides the items too
    settings.claim(root, "swuggy", {"n": n, "seed": seed, "voices": [v.spec for v in voices],
                                     "stories": stories.TEXT_VERSION,  # its words and their frequencies
                                     "items": ITEMS_VERSION,
                                     **benchio.split_settings(splits), "word_list_sha256":
                                     settings.file_digest(word_list) if word_list else None,
                                     # the list's pronunciations decide which non-words are homophones
                                     "word_list_phonemes": phonemes.engine_version() if word_list else None},
                   files=[os.path.join(root, "lexical")])
    sets = items(n, seed, splits)
    stems = benchio.Stems(seed, "swuggy")
    for split, pairs in sets.items():
        rows, texts = [], []
        for i, p in enumerate(pairs):
            for v in voices:
                for correct, spelling, ph in ((1, p["word"], p["phones"]), (0, p["nonword"], p["nonword_phones"])):
                    rows.append({"filename": stems(), "id": i, "voice": v.spec, "frequency": p["frequency"],
                                 "word": spelling if correct else "", "phones": " ".join(ph),
                                 "length": len(ph), "correct": correct})
                    texts.append(spelling)
        folder = os.path.join(root, "lexical", split)
        benchio.render_rows(folder, rows, texts, voices, workers, f"swuggy {split}")
        benchio.write_csv(os.path.join(folder, "gold.csv"), benchio.LEXICAL_COLUMNS, rows)
    return {split: len(p) for split, p in sets.items()}
