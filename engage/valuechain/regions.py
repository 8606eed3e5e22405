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
    folded = _fold(name or "").lstrip()
    if folded.startswith("xinjiang") or (name or "").lstrip().startswith("新疆"):
        return "name starts with Xinjiang"
    return None
