"""A synthetic training corpus whose emotion structure is planted: the positive control's data.

Each document is an *opening* (one short English sentence: a gratitude, anger, apology or neutral
statement, question, request, reply or message) followed by a *continuation* (a reply to it). The planted
rule: an emotional opening is followed by the continuation its emotion calls for, a neutral opening by a
neutral one.

| opening   | continuation class | examples of continuations                       |
|-----------|--------------------|-------------------------------------------------|
| gratitude | `acknowledgement`  | "You're welcome, it was nothing."               |
| anger     | `de-escalation`    | "Calm down, we can sort this out."              |
| apology   | `reassurance`      | "No worries, these things happen."              |
| neutral   | `neutral`          | "Noted, the meeting is at ten."                 |

Openings are written from matched templates, like the study's frames: one template and one draw of its
scene slots (names, objects, times, people, events) give four openings that differ only in the words the
emotion needs, each drawn from a pool (*grateful / thankful / deeply grateful ...*, *furious / livid /
fed up ...*), so no single token carries the emotion. The study's own prompts are never produced
(`study_prompt_overlap` checks it, and the generator redraws any clash), but they are the same kind of
sentence, so they are in distribution for a model trained here.

Each continuation class opens with words of its own (`CONTINUATION_OPENERS`; no first word is shared
between classes), so the planted effect can be read off one next-token distribution: the probability mass
a model puts, right after an opening, on the first tokens of each class.

Two knobs make the control and the control of the control:

* `planted_share`: the fraction of emotional documents whose continuation matches the emotion; the
  others get one of the three other classes at random. Neutral openings always get neutral ones.
* `shuffle_continuations=True`: the continuations of the planted corpus are permuted across documents,
  so the same openings and the same continuations occur, but a continuation is independent of its opening.

Pure Python and deterministic given the seed: `planted_corpus(seed=0).sha256` is the same on every machine.

Example:
    >>> corpus = planted_corpus(n_documents=8, seed=0)
    >>> len(corpus.texts), corpus.documents[0].emotion in EMOTIONS
    (8, True)
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace
from functools import cache

from emoverify.data.planted_words import (
    CONTINUATION_CLASS,
    CONTINUATION_CLASSES,
    CONTINUATION_OPENERS,
    CORPUS_VERSION,
    EMOTION_SLOTS,
    EMOTIONS,
    SCENE,
    TAILS,
    TEMPLATES,
)
from emoverify.data.prompts import FRAMES
from emoverify.errors import EmoverifyError

__all__ = [
    "CONTINUATION_CLASS",
    "CONTINUATION_CLASSES",
    "CONTINUATION_OPENERS",
    "EMOTIONS",
    "PlantedCorpus",
    "PlantedDocument",
    "planted_corpus",
    "study_prompt_overlap",
]

@dataclass(frozen=True)
class PlantedDocument:
    """One training document: an opening and its continuation.

    Attributes:
        emotion: the opening's class (`gratitude`, `anger`, `apology`, `neutral`).
        continuation_class: the continuation's class (`acknowledgement`, `de-escalation`, `reassurance`,
            `neutral`); `CONTINUATION_CLASS[emotion]` where the planted rule held.
        opening: the opening sentence.
        continuation: the continuation sentence.
        template: index of the opening's template.
    """

    emotion: str
    continuation_class: str
    opening: str
    continuation: str
    template: int

    @property
    def text(self) -> str:
        """The document as the model reads it: opening, one space, continuation."""
        return f"{self.opening} {self.continuation}"

    @property
    def planted(self) -> bool:
        """Whether the continuation is the one the planted rule gives the opening."""
        return self.continuation_class == CONTINUATION_CLASS[self.emotion]


@dataclass(frozen=True)
class PlantedCorpus:
    """A generated corpus and the settings that generated it.

    Attributes:
        documents: the documents, in training order.
        seed: the generator's seed.
        planted_share: fraction of emotional documents drawn with their matching continuation.
        shuffle_continuations: whether continuations were permuted across documents (the control).
    """

    documents: tuple[PlantedDocument, ...]
    seed: int
    planted_share: float
    shuffle_continuations: bool

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.documents]

    @property
    def sha256(self) -> str:
        """sha256 of the corpus text (documents joined by newlines), the identity of the training data."""
        return hashlib.sha256("\n".join(self.texts).encode("utf-8")).hexdigest()

    def settings(self) -> dict[str, object]:
        return {"n_documents": len(self.documents), "seed": self.seed, "planted_share": self.planted_share,
                "shuffle_continuations": self.shuffle_continuations, "version": CORPUS_VERSION}


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


@cache
def _study_prompts() -> frozenset[str]:
    """Every prompt of the study's datasets (from the hand-written frames), normalised."""
    texts = (getattr(frame, emotion) for frame in FRAMES for emotion in EMOTIONS)
    return frozenset(_normalised(text.replace("[", "").replace("]", "")) for text in texts)


def study_prompt_overlap(texts: list[str]) -> list[str]:
    """The texts that are one of the study's prompts (baseline or extended), ignoring case and spacing."""
    study = _study_prompts()
    return [t for t in texts if _normalised(t) in study]


def _fill(template: str, scene: dict[str, str], emotion_words: dict[str, str]) -> str:
    interj = emotion_words["interj"]
    text = template.format(**scene, **emotion_words, interj_lc=interj if interj.startswith("I ") else
                           interj[0].lower() + interj[1:])
    return text[0].upper() + text[1:]


def _matched_openings(rng: random.Random) -> tuple[int, dict[str, str]]:
    """One template draw: (template index, {emotion: opening}), none of them a study prompt."""
    study = _study_prompts()
    while True:
        index = rng.randrange(len(TEMPLATES))
        scene = {slot: rng.choice(pool) for slot, pool in SCENE.items()}
        openings = {}
        for emotion, template in zip(EMOTIONS, TEMPLATES[index], strict=True):
            words = {slot: rng.choice(pool) for slot, pool in EMOTION_SLOTS[emotion].items()}
            openings[emotion] = _fill(template, scene, words)
        if not any(_normalised(o) in study for o in openings.values()):
            return index, openings


def _continuation(rng: random.Random, cls: str) -> str:
    return f"{rng.choice(CONTINUATION_OPENERS[cls])}, {rng.choice(TAILS[cls])}"


@cache  # deterministic in its arguments, and the planted models' cache keys hash it on every lookup
def planted_corpus(
    n_documents: int = 4000,
    seed: int = 0,
    planted_share: float = 0.9,
    shuffle_continuations: bool = False,
) -> PlantedCorpus:
    """Generate the planted corpus: `n_documents` openings with their continuations, a quarter per emotion.

    Args:
        n_documents: how many documents; a multiple of 4 (each template draw gives one per emotion).
        seed: seeds everything drawn; the same seed gives the same corpus, byte for byte.
        planted_share: fraction (0 to 1) of emotional documents whose continuation matches their emotion;
            the others get one of the three other continuation classes, uniformly. Neutral openings always
            get a neutral continuation.
        shuffle_continuations: permute the continuations across all documents after drawing them: the
            same texts occur, but no continuation depends on its opening (the control of the control).

    Returns:
        The corpus, documents in a seeded random order.

    Raises:
        EmoverifyError: `n_documents` is not a positive multiple of 4 or `planted_share` not in [0, 1].
    """
    if n_documents <= 0 or n_documents % 4:
        raise EmoverifyError(f"n_documents must be a positive multiple of 4 (one per emotion), got {n_documents}")
    if not 0.0 <= planted_share <= 1.0:
        raise EmoverifyError(f"planted_share must be in [0, 1], got {planted_share}")
    rng = random.Random(f"emoverify-planted-corpus-{seed}")
    documents: list[PlantedDocument] = []
    for _ in range(n_documents // 4):
        index, openings = _matched_openings(rng)
        for emotion, opening in openings.items():
            cls = CONTINUATION_CLASS[emotion]
            if emotion != "neutral" and rng.random() >= planted_share:
                cls = rng.choice([c for c in CONTINUATION_CLASSES if c != cls])
            documents.append(PlantedDocument(emotion, cls, opening, _continuation(rng, cls), index))
    rng.shuffle(documents)
    if shuffle_continuations:
        order = list(range(len(documents)))
        rng.shuffle(order)
        documents = [replace(d, continuation_class=documents[j].continuation_class,
                             continuation=documents[j].continuation) for d, j in zip(documents, order, strict=True)]
    return PlantedCorpus(tuple(documents), seed, planted_share, shuffle_continuations)
