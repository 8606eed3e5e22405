"""Whether a place (or a counterparty's name) is in the Uyghur Region (Xinjiang).

`in_uyghur_region(region, name)` is true when the region names Xinjiang, the XUAR, the Uyghur
Region or East Turkistan, or one of the prefectures and cities below; or when the counterparty's
name starts with "Xinjiang" (companies registered there are named after the region, as Xinjiang
Daqo New Energy and Xinjiang GCL are). The place names are the region's prefecture-level
divisions and its main cities and counties where the solar, aluminium, cotton, tomato and PVC
industries sit, in their usual English (pinyin) spellings and the common Uyghur-derived ones,
plus the Chinese names of the region. Names shared with places elsewhere (Manas, Aral, Xinxing,
Shuanghe) are left out; a region text is matched on whole words, so "Illinois" is not "Ili".
"""

from __future__ import annotations

import re
import unicodedata

#: The region itself.
REGION_NAMES = (
    "xinjiang", "xuar", "uyghur region", "uighur region", "uyghur autonomous region", "uighur autonomous region",
    "east turkistan", "east turkestan", "新疆",
)
#: Prefectures, prefecture-level cities, county-level cities and industrial counties of Xinjiang.
PLACE_NAMES = (
    # prefecture-level cities
    "urumqi", "ürümqi", "wulumuqi", "karamay", "kelamayi", "turpan", "turfan", "tulufan", "hami", "kumul",
    # prefectures and autonomous prefectures
    "kashgar", "kashi", "hotan", "khotan", "hetian", "aksu", "akesu", "changji", "bayingolin", "bayingholin",
    "bayinguoleng", "ili", "yili", "kizilsu", "kezilesu", "bortala", "boertala", "altay", "aletai", "tacheng",
    "qoqek",
    # county-level cities (several run by the XPCC)
    "shihezi", "korla", "kuerle", "kuytun", "kuitun", "wujiaqu", "alar", "tumxuk", "tumushuke",
    "beitun", "kokdala", "kunyu", "huyanghe", "atush", "artux", "yining",
    "ghulja", "kuqa", "kuche", "bole", "fukang", "midong", "hutubi", "jimsar", "qitai", "zhundong",
    "shanshan", "toksun", "yarkand", "shache", "wusu",
    # Chinese names
    "乌鲁木齐", "克拉玛依", "吐鲁番", "哈密", "喀什", "和田", "阿克苏", "昌吉", "巴音郭楞", "伊犁", "石河子",
    "库尔勒", "鄯善", "五家渠", "准东",
)
_WORDS = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff]")


def _fold(text: str) -> str:
    if (text or "").isascii():  # no compatibility forms, no marks: what the normalising below gives
        return (text or "").lower()
    text = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


_PHRASES = tuple(sorted({_fold(p) for p in REGION_NAMES + PLACE_NAMES if not _CJK.search(p)}))
_CHINESE = tuple(p for p in REGION_NAMES + PLACE_NAMES if _CJK.search(p))
_PATTERN = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in _PHRASES) + r")\b")


def region_place(region: str) -> str | None:
    """The Xinjiang place name the region text contains (as matched), or None."""
    folded = _fold(region)
    match = _PATTERN.search(folded)
    if match:
        return match.group(0)
    for name in _CHINESE:
        if name in (region or ""):
            return name
    return None


def in_uyghur_region(region: str | None, name: str | None = None) -> str | None:
    """Why the counterparty is in the Uyghur Region ("region names Hotan", "name starts with Xinjiang"), or None."""
    place = region_place(region or "")
    if place:
        return f"region names {place.title() if place.isascii() else place}"
    name = (name or "").lstrip()
    folded = _fold(name[:40]).lstrip()  # the name's start is enough, unless marks alone made it short
    if len(folded) < 8 < len(name):
        folded = _fold(name).lstrip()
    if folded.startswith("xinjiang") or name.startswith("新疆"):
        return "name starts with Xinjiang"
    return None


# --- is it a place? -----------------------------------------------------------------------------
#
# A region cell is read as a place when it could name one: a province, a prefecture, a city, a
# county, an industrial zone or an address, in any script. Cities and addresses are places
# too, so nothing is refused for not being an ISO 3166-2 subdivision; what is refused is what
# clearly is not a place (`region_problem`). When a part of it names a subdivision of the row's
# country in ISO 3166-2 (pycountry's data), the row records that code (`subdivision`).

#: Longest region kept (the column's size); a longer cell is refused, not cut.
MAX_REGION = 200
#: Cells that say there is no place: the region is left empty instead.
PLACEHOLDERS = frozenset(
    "n/a na n.a. n.a none null nil nan unknown unspecified not applicable not available not disclosed "
    "undisclosed confidential tbd tbc to be confirmed to be determined various multiple several see above "
    "see below same as above other others".split(" ")
) | {"n/a", "not applicable", "not available", "not disclosed", "to be confirmed", "to be determined",
     "see above", "see below", "same as above", "-", "--", "—", "?", "x", "xx", "xxx", "无", "不详", "未知", "暂无", "待定"}
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december|"
           "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
#: "5 May 2024", "May 5th, 2024", "March 2024": a month's name with a day or a year, nothing else.
_DATE_WORDS = re.compile(rf"^(?:\d{{1,4}}(?:st|nd|rd|th)?[\s,./-]*)?(?:{_MONTHS})\.?(?:[\s,./-]*\d{{1,4}}(?:st|nd|rd|th)?)+$"
                         rf"|^\d{{1,4}}(?:st|nd|rd|th)?[\s,./-]*(?:{_MONTHS})\.?$")
_DATE_CJK = re.compile(r"^\d{2,4}\s*年(?:\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?)?$|^\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?$")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]{2,}")
_URL = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+"
                  r"|^[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|info|biz|io|co|cn|hk|tw|de|uk|fr|jp|kr|vn|my|in|us)(?:/\S*)?$")
_NO_VOWEL = re.compile(r"(?i)\b[b-df-hj-np-tv-xz]{5,}\b")
_REPEATED = re.compile(r"([^\W\d_])\1{3,}")  # a letter four times running ("xxxx"; "Anhui...." is fine)
_SPREADSHEET_ERRORS = frozenset("#n/a #ref! #value! #name? #div/0! #null! #num! #spill! #calc! #getting_data".split())


def has_letters(text: str) -> bool:
    """Whether `text` has a letter of any script (Latin, accented, Chinese, Uyghur, Cyrillic...)."""
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def region_problem(text: str) -> str | None:
    """Why a region cell is clearly not a place, or None when it can be one.

    Refused: more than MAX_REGION characters; no letter at all (a number, a date in digits,
    punctuation); a number however written ("1e5", "NaN"); a date in words ("5 May 2024",
    "March 2024", "2024年5月"); an email or web address; a spreadsheet error ("#REF!") or
    formula ("=A1"); a placeholder saying there is none ("N/A", "unknown", "TBD": leave the cell
    empty); keyboard junk (a word of five or more Latin consonants, one letter four times
    running). Everything else is accepted, in any script and with any punctuation: "Shihezi,
    Xinjiang", "Île-de-France", "São Paulo", "新疆", "No. 88 Weiyi Road, Shihezi".
    """
    text = " ".join((text or "").split())
    if not text:
        return None
    if len(text) > MAX_REGION:
        return f"a region is a place's name, at most {MAX_REGION} characters (this one has {len(text):,})"
    lowered = text.casefold()
    if lowered in _SPREADSHEET_ERRORS or (lowered.startswith("#") and lowered.endswith(("!", "?", "/a"))):
        return "a spreadsheet error, not a place"
    if text[0] in "=+@" and len(text) > 1:
        return "a spreadsheet formula, not a place"
    if lowered.strip(" .") in PLACEHOLDERS or lowered in PLACEHOLDERS:
        return "says there is no region; leave the cell empty when the region is not known"
    if _is_number(text):
        return "a number, not a place"
    if not has_letters(text):
        return "not a place: no letters (a number, a date or punctuation)"
    if _DATE_WORDS.match(lowered) or _DATE_CJK.match(text):
        return "a date, not a place"
    if _EMAIL.search(text):
        return "an email address, not a place"
    if _URL.search(text):
        return "a web address, not a place"
    if _NO_VOWEL.search(_fold(text)) or _REPEATED.search(lowered):
        return "not a place (it reads as junk: letters typed at random or repeated)"
    return None


#: Words that say what kind of division a name is, left out when comparing with ISO 3166-2 names
#: (pycountry writes Chinese provinces in pinyin with their kind: "Anhui Sheng", "Xinjiang Uygur Zizhiqu").
_DIVISION_WORDS = frozenset(
    "province provincial prefecture prefectural region regional autonomous state county district municipality "
    "city special administrative sar sheng shi zizhiqu uygur uyghur uighur huizu zhuangzu of the".split())


def _core(text: str) -> str:
    words = re.findall(r"[^\W_]+", _fold(re.sub(r"\[.*?\]", "", text)))
    kept = [w for w in words if w not in _DIVISION_WORDS]
    return " ".join(kept or words)


def subdivision(region: str, country: str | None) -> tuple[str, str] | None:
    """(ISO 3166-2 code, name) of the subdivision of `country` that a part of `region` names.

    The region's comma-separated parts are compared with pycountry's subdivision names of the
    row's country, accents, case and the kind of division ("Province", "Sheng", "Zizhiqu") aside:
    "Shihezi, Xinjiang" in CN is CN-XJ, "Anhui Province" is CN-AH, "São Paulo" in BR is BR-SP.
    None when nothing matches (a city, an English exonym such as "Bavaria", no country).
    """
    if not region or not country:
        return None
    names = _subdivisions(country.upper())
    for part in [region, *region.split(",")]:
        found = names.get(_core(part))
        if found:
            return found
    return None


_SUBDIVISIONS: dict[str, dict[str, tuple[str, str]]] = {}


def _subdivisions(country: str) -> dict[str, tuple[str, str]]:
    """Core name -> (code, name) of a country's subdivisions (pycountry's ISO 3166-2 data; read once)."""
    if country not in _SUBDIVISIONS:
        import pycountry  # imported here: only maps with a region and a country pay for it

        found: dict[str, tuple[str, str]] = {}
        for division in pycountry.subdivisions.get(country_code=country) or []:
            for key in (_fold(division.name).strip(), _core(division.name)):
                if key:
                    found.setdefault(key, (division.code, division.name))
        _SUBDIVISIONS[country] = found
    return _SUBDIVISIONS[country]
