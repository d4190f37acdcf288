"""Deterministic synthetic testimonies for the store benchmark (``bench.store_bench``).

Everything comes from one ``random.Random(seed)``: the same seed gives the same
testimonies, byte for byte, so the SQLCipher store and the plain sqlite3 store
get exactly the same work. Narratives are about 1 KiB of UTF-8, mostly Arabic
(with Latin names and unit designations mixed in) or mostly English (with
Arabic place names), built from word lists with a Zipf-like frequency, so a few
words are common and most are rare, as in real text. Nothing here is real data.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from fieldapp.domain import (
    Consent,
    ConsentScope,
    IncidentDate,
    Perpetrator,
    Place,
    Reliability,
    SourceType,
    Status,
    Testimony,
    Victims,
    Vocabulary,
    new_witness_code,
)

NARRATIVE_BYTES = 1024  # target UTF-8 size of a narrative
ARABIC_SHARE = 0.6  # narratives written mostly in Arabic; the rest mostly in English


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ARABIC_WORDS = _words("""
الحاجز المعتقلين الشاهد الجنود السيارة الليل الصباح القرية المدينة الشارع البيت
المنزل الباب النافذة الطريق الجسر المستشفى المدرسة المسجد السوق الفرن المخبز
الجامعة الساحة الحي المخيم الملجأ القبو السجن الفرع المكتب الضابط العسكري
المسلحين الأمن المخابرات الشرطة الدورية الدبابة المدفعية الطائرة القذيفة البرميل
الصاروخ الانفجار الدخان النار الركام الجرحى القتلى الضحايا الأطفال النساء الرجال
الشيوخ العائلة الأسرة الأب الأم الأخ الأخت الابن الابنة الزوج الزوجة الجار الطبيب
الممرض المعلم الطالب الصحفي المحامي القاضي المحكمة التحقيق الاستجواب الزنزانة
الضرب التعذيب الصعق الكهرباء الجوع العطش البرد المرض الدواء الطعام الماء الخبز
الوقود الكهرباء الهاتف الرسالة الصورة الفيديو الوثيقة الهوية البطاقة الجواز
الحدود المعبر النقطة الكتيبة اللواء الفرقة الميليشيا الفصيل القائد الأوامر
اعتقلوا نقلوا أخذوا ضربوا هددوا أطلقوا قصفوا هدموا نهبوا أحرقوا منعوا فتشوا
سألوا صرخوا هربوا اختبأوا انتظروا رأيت سمعت شاهدت عرفت تذكرت قال قالت أخبرني
ليلاً نهاراً صباحاً مساءً فجأة بسرعة ببطء بعيداً قريباً هناك هنا أمام خلف داخل
خارج بين حول نحو ثلاثة أربعة خمسة عشرة عشرين مئة أيام أسابيع أشهر سنوات ساعات
مجهول مفقود معتقل جريح شهيد حي ميت خائف صامت مغمض مقيد معصوب مكسور محروق
حلب حمص حماة إدلب درعا دوما داريا الرقة دير الزور القامشلي اللاذقية طرطوس
""")

ARABIC_PARTICLES = _words("في من إلى على عن مع أن لم لا ثم و قد كان كانت هذا هذه التي الذي")

LATIN_WORDS = _words("""
checkpoint detainees witness soldiers vehicle night morning village town street house
door window road bridge hospital school mosque market bakery university square
neighbourhood camp shelter basement prison branch office officer military gunmen
security intelligence police patrol tank artillery aircraft shell barrel rocket
explosion smoke fire rubble wounded killed victims children women men elderly family
father mother brother sister son daughter husband wife neighbour doctor nurse teacher
student journalist lawyer judge court investigation interrogation cell beating torture
electricity hunger thirst cold illness medicine food water bread fuel phone message
photo video document identity card passport border crossing unit battalion brigade
division militia faction commander orders arrested transferred taken beaten threatened
fired shelled demolished looted burned blocked searched questioned shouted fled hid
waited saw heard recognised remembered said told suddenly quickly slowly far near
there here front behind inside outside between around three four five ten twenty
hundred days weeks months years hours unknown missing detained injured dead alive
afraid silent blindfolded handcuffed broken burnt convoy ambulance tunnel roof
stairs courtyard warehouse factory stadium airport station cemetery orchard farm
""")

LATIN_PARTICLES = _words("the a of to in on at and was were had they we he she it that from with")

# Transliterated and Latin-script names that appear inside Arabic narratives.
LATIN_NAMES = _words("""
Aleppo Homs Hama Idlib Daraa Douma Daraya Raqqa Deir-ez-Zor Qamishli Latakia Tartus
Sednaya Mezzeh Adra Palmyra Bustan-al-Qasr Salaheddine Sheikh-Maqsoud Ghouta Yarmouk
T-72 BMP-1 Kia Hyundai Toyota Hilux 4th-Division Branch-215 Branch-227 Branch-235
""")

PLACES = [
    "Aleppo, Bustan al-Qasr crossing",
    "Aleppo, a hotel room",
    "Homs, Baba Amr",
    "Douma, near the old market",
    "Daraya, western farms",
    "Idlib city centre",
    "Daraa al-Balad",
    "Raqqa, the clock roundabout",
    "حلب، معبر بستان القصر",
    "حمص، حي بابا عمرو",
    "دوما، قرب السوق القديم",
    "داريا، المزارع الغربية",
    "إدلب، مركز المدينة",
    "درعا البلد",
    "الرقة، دوار الساعة",
    "دير الزور، حي الجورة",
    "Camp Atmeh, block 7",
    "مخيم اليرموك",
]

PERPETRATORS = [
    ("three men in black uniforms", "state security"),
    ("soldiers at the checkpoint", "4th Division"),
    ("masked gunmen", "unknown"),
    ("عناصر الحاجز", "المخابرات الجوية"),
    ("رجال مسلحون ملثمون", "فصيل مسلح"),
    ("officers in civilian clothes", "military intelligence"),
]

VICTIMS = [
    "the witness's brother, 24",
    "two students from the university",
    "a family of five",
    "ابن الشاهد، ١٧ عاماً",
    "ثلاثة رجال من الحي",
    "a nurse from the field hospital",
]

MONITORS = ["monitor 7", "R. H.", "م. ع.", "field team north"]
ZONES = [timezone(timedelta(hours=2)), timezone(timedelta(hours=3))]
STATUSES = (Status.DRAFT, Status.READY, Status.SENT, Status.CONFIRMED)
STATUS_WEIGHTS = (15, 25, 25, 35)


def _cumulative_zipf(n: int, exponent: float = 1.0) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank**exponent) for rank in range(1, n + 1)))


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Word lists with their cumulative Zipf weights (shuffled per seed)."""

    arabic: Sequence[str]
    latin: Sequence[str]
    arabic_weights: Sequence[float]
    latin_weights: Sequence[float]

    @classmethod
    def build(cls, rng: random.Random) -> Lexicon:
        arabic, latin = list(dict.fromkeys(ARABIC_WORDS)), list(dict.fromkeys(LATIN_WORDS))
        rng.shuffle(arabic)  # which words are common depends on the seed, not on list order
        rng.shuffle(latin)
        return cls(arabic, latin, _cumulative_zipf(len(arabic)), _cumulative_zipf(len(latin)))

    def word(self, rng: random.Random, *, arabic: bool) -> str:
        words, weights = (
            (self.arabic, self.arabic_weights) if arabic else (self.latin, self.latin_weights)
        )
        return rng.choices(words, cum_weights=weights)[0]


def _arabic_sentence(rng: random.Random, lex: Lexicon) -> str:
    words: list[str] = []
    for _ in range(rng.randint(6, 14)):
        roll = rng.random()
        if roll < 0.25:
            words.append(rng.choice(ARABIC_PARTICLES))
        elif roll < 0.30:
            words.append(rng.choice(LATIN_NAMES))
        else:
            word = lex.word(rng, arabic=True)
            if word.startswith("ال") and rng.random() < 0.15:
                word = rng.choice(("و", "ب", "ف")) + word  # attached conjunction/preposition
            if rng.random() < 0.05:
                cut = len(word) // 2 + 1
                word = word[:cut] + "\u064e" + word[cut:]  # an optional short vowel (fatha)
            words.append(word)
    return " ".join(words) + rng.choice(("،", ".", ".", "."))


def _latin_sentence(rng: random.Random, lex: Lexicon) -> str:
    words: list[str] = []
    for _ in range(rng.randint(8, 18)):
        roll = rng.random()
        if roll < 0.35:
            words.append(rng.choice(LATIN_PARTICLES))
        elif roll < 0.40:
            words.append(lex.word(rng, arabic=True))  # an Arabic name or term, as written
        elif roll < 0.45:
            words.append(rng.choice(LATIN_NAMES))
        else:
            words.append(lex.word(rng, arabic=False))
    text = " ".join(words)
    return text[:1].upper() + text[1:] + rng.choice((".", ".", ",", ";"))


def narrative(rng: random.Random, lex: Lexicon, *, arabic: bool) -> str:
    """About ``NARRATIVE_BYTES`` of UTF-8, in paragraphs."""
    sentences: list[str] = []
    size = 0
    while size < NARRATIVE_BYTES:
        sentence = _arabic_sentence(rng, lex) if arabic else _latin_sentence(rng, lex)
        sentences.append(sentence)
        size += len(sentence.encode("utf-8")) + 1
    out = []
    for i, sentence in enumerate(sentences):
        out.append(sentence)
        out.append("\n\n" if i % 4 == 3 else " ")
    return "".join(out).rstrip()


def _incident_date(rng: random.Random, taken: date) -> IncidentDate | None:
    roll = rng.random()
    if roll < 0.1:
        return None
    day = taken - timedelta(days=rng.randint(0, 900))
    if roll < 0.25:
        return IncidentDate.parse(f"{day.year:04d}")
    if roll < 0.55:
        return IncidentDate.parse(f"{day.year:04d}-{day.month:02d}")
    if roll < 0.9:
        return IncidentDate.parse(day.isoformat())
    end = day + timedelta(days=rng.randint(1, 60))
    return IncidentDate.parse(f"{day.year:04d}-{day.month:02d}/{end.isoformat()}")


def _place(rng: random.Random) -> Place:
    text = rng.choice(PLACES)
    if rng.random() < 0.3:
        lat = f"{rng.uniform(32.3, 37.3):.4f}"
        lon = f"{rng.uniform(35.7, 42.3):.4f}"
        return Place(text, lat, lon)
    return Place(text)


class Corpus:
    """Testimonies number 0, 1, 2, ... for one seed; ``batch`` continues where it stopped."""

    def __init__(self, seed: int, vocabulary: Vocabulary, recorded_by: str) -> None:
        self._rng = random.Random(seed)
        self.lexicon = Lexicon.build(self._rng)
        self._codes = sorted(t.code for t in vocabulary.terms if not t.deprecated)
        self._recorded_by = recorded_by
        self._start = datetime(2012, 3, 1, 8, 0)

    def testimony(self) -> Testimony:
        rng = self._rng
        arabic = rng.random() < ARABIC_SHARE
        zone = rng.choice(ZONES)
        taken_at = (self._start + timedelta(minutes=rng.randint(0, 12 * 365 * 24 * 60))).replace(
            tzinfo=zone
        )
        status = rng.choices(STATUSES, weights=STATUS_WEIGHTS)[0]
        source = rng.choices(list(SourceType), weights=(70, 20, 10))[0]
        consent = None
        if status is not Status.DRAFT or rng.random() < 0.5:
            scopes = rng.choice(
                (
                    {ConsentScope.JUSTICE_MECHANISMS},
                    {ConsentScope.ANONYMOUS_PUBLICATION, ConsentScope.JUSTICE_MECHANISMS},
                    {ConsentScope.INTERNAL_ONLY},
                    {ConsentScope.INTERNAL_ONLY, ConsentScope.RE_CONTACT},
                )
            )
            consent = Consent(frozenset(scopes), rng.choice(MONITORS), taken_at.date())
        n_victims = rng.choice((0, 1, 1, 2))
        return Testimony(
            recorded_by=self._recorded_by,
            taken_at=taken_at,
            taken_place=_place(rng),
            language="ar" if arabic else "en",
            narrative=narrative(rng, self.lexicon, arabic=arabic),
            incident_date=_incident_date(rng, taken_at.date()),
            incident_place=_place(rng) if rng.random() < 0.7 else None,
            violations=tuple(rng.sample(self._codes, rng.choice((1, 1, 2, 2, 3)))),
            perpetrators=tuple(
                Perpetrator(*p) for p in rng.sample(PERPETRATORS, rng.choice((0, 1, 1, 2)))
            ),
            victims=Victims(
                count=rng.choice((None, 1, 2, 3, 5, 12)),
                descriptions=tuple(rng.sample(VICTIMS, n_victims)),
            ),
            source_type=source,
            reliability=rng.choice(list(Reliability)),
            witness_code=new_witness_code(rng.randbytes) if rng.random() < 0.9 else None,
            consent=consent,
            status=status,
        )

    def batch(self, n: int) -> list[Testimony]:
        return [self.testimony() for _ in range(n)]


def queries(seed: int, lexicon: Lexicon, n: int) -> list[str]:
    """``n`` search queries of one or two words, half Arabic, half Latin.

    Words are drawn with the corpus's own frequencies (common words come up more
    often, as they do in text), and may be typed without the article (الحاجز ->
    حاجز) or as a prefix, the way a monitor types them.
    """
    rng = random.Random(seed ^ 0x5EA4C4)
    out = []
    for i in range(n):
        arabic = i % 2 == 0
        words = []
        for _ in range(1 if i % 4 < 2 else 2):
            word = lexicon.word(rng, arabic=arabic)
            if arabic and word.startswith("ال") and rng.random() < 0.5:
                word = word[2:]
            elif not arabic and len(word) > 6 and rng.random() < 0.3:
                word = word[: rng.randint(4, len(word) - 1)]  # a prefix, still typing
            words.append(word)
        out.append(" ".join(words))
    return out
