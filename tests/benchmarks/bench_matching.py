"""Synthetic list entries for the screening-matching benchmark (`make bench`, or alone with
`BENCH_ONLY=matching make bench`).

Entries look like a real screening list against the `flask synth` companies: most are other
companies built from the same words (synth's WORDS and KINDS, Chinese place names, coined
brand words, legal forms in English and Chinese), so blocking meets shared and common words;
a few hundred are true matches of portfolio companies written the way publishers and index
providers write them (upper case, "CO LTD-A", truncated with a share class, an alias only,
"and its subsidiaries", "a/k/a", an ISIN, a ticker on its exchange).
"""

from __future__ import annotations

import random

from engage.lists.matching import CompanyRecord, EntryRecord
from engage.synth import KINDS, WORDS

PLACES = ["Xinjiang", "Hangzhou", "Zhejiang", "Shenzhen", "Beijing", "Shanghai", "Hefei", "Aksu", "Changji",
          "Urumqi", "Jiangsu", "Guangdong", "Hotan", "Kashgar", "Shihezi", "Nanjing", "Xiamen", "Wuhan"]
SYLLABLES = ["hai", "kang", "hua", "da", "xin", "tai", "long", "feng", "jin", "ming", "rui", "sheng", "tian", "yu",
             "zhong", "bao", "chen", "guang", "hong", "li", "peng", "qi", "wei", "xiang", "yang", "zhi", "an", "bo",
             "cheng", "de", "fu", "heng", "jia", "kai", "lan", "mei", "nuo", "ou", "pu", "quan", "run", "sen"]
DESCRIPTORS = ["Technology", "Digital Technology", "New Energy", "Silicon Industry", "Textiles", "Information",
               "Science and Technology", "Network Technology", "Cotton", "Apparel", "Nonferrous Metals",
               "Electronics", "Intelligent Systems", "Communication Development", "Materials", "Group"]
LEGAL = ["Co., Ltd.", "Co. Ltd.", "Limited", "Inc.", "Corporation", "Group Co., Ltd.", "Company Limited", "",
         "Ltd", "LLC"]
CJK = list("杭州海康威视数字技术大华浙江新疆能源科技纺织棉业硅业光电信息网络通讯集团")
CJK_FORMS = ["股份有限公司", "有限公司", "有限责任公司", ""]


def _coined(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _other(rng: random.Random, i: int) -> EntryRecord:
    """An entry naming some other company, with words shared with the portfolio."""
    roll = rng.random()
    brand = _coined(rng)
    if roll < 0.25:  # the portfolio's own words, another company
        name = f"{rng.choice(WORDS)} {rng.choice(KINDS)} {rng.choice(['Group', 'International', ''])} {rng.choice(LEGAL)}"
    elif roll < 0.35:  # the portfolio's words and a number like synth's, not the same company
        name = f"{rng.choice(WORDS)} {rng.choice(KINDS)} {rng.randint(0, 99999):05d} {rng.choice(LEGAL)}"
    else:
        place = rng.choice(PLACES) + " " if rng.random() < 0.7 else ""
        name = f"{place}{brand} {rng.choice(DESCRIPTORS)} {rng.choice(LEGAL)}"
    names = [" ".join(name.split())]
    extra = rng.random()
    if extra < 0.3:  # the brand alone as an alias
        names.append(brand if roll >= 0.35 else f"{names[0].split()[0]} {names[0].split()[1]}")
    elif extra < 0.4:
        names[0] += " and its subsidiaries"
    elif extra < 0.5:
        names[0] += f" a/k/a {_coined(rng)} {rng.choice(DESCRIPTORS)}"
    elif extra < 0.6:
        names.append("".join(rng.choice(CJK) for _ in range(rng.randint(4, 8))) + rng.choice(CJK_FORMS))
    return EntryRecord(i, tuple(names))


def _true_match(rng: random.Random, i: int, company: CompanyRecord) -> tuple[EntryRecord, str]:
    """An entry naming `company`, written as a publisher or a provider would, and the outcome
    expected ("flag", or "review" for a regional company carrying its name)."""
    name = company.names[0]
    core = name.replace(" Co., Ltd.", "")
    style = i % 8
    if style == 0:
        return EntryRecord(i, (name.upper().replace(",", "").replace(".", "") + "-A",)), "flag"
    if style == 1:
        return EntryRecord(i, ((name.upper().replace(",", "").replace(".", ""))[:30] + " A",)), "flag"
    if style == 2:
        return EntryRecord(i, (f"{core} Company Limited and its subsidiaries",)), "flag"
    if style == 3:
        return EntryRecord(i, (f"{_coined(rng)} Holdings a/k/a {core} Co. Ltd.",)), "flag"
    if style == 4:
        return EntryRecord(i, (f"{_coined(rng)} {rng.choice(DESCRIPTORS)}",), {"isin": [company.isin or ""]}), "flag"
    if style == 5:
        return EntryRecord(i, (f"{_coined(rng)} Group",), {"ticker": [f"{company.exchange}:{company.ticker}"]}), "flag"
    if style == 6:
        return EntryRecord(i, (f"{rng.choice(PLACES)} {core} Co., Ltd.",)), "review"
    return EntryRecord(i, (f"{_coined(rng)} {rng.choice(DESCRIPTORS)} Co., Ltd.", name)), "flag"


def synthetic_entries(companies: list[CompanyRecord], count: int, seed: int = 2,
                      true_share: float = 0.03) -> tuple[list[EntryRecord], dict[tuple[int, int], str]]:
    """`count` entries, `true_share` of them naming a company; and the expected outcome per
    (company id, entry id) of those."""
    rng = random.Random(seed)
    chosen = rng.sample(companies, min(len(companies), int(count * true_share)))
    entries, expected = [], {}
    for i, company in enumerate(chosen, start=1):
        entry, outcome = _true_match(rng, i, company)
        entries.append(entry)
        expected[(company.id, entry.id)] = outcome
    entries += [_other(rng, i + 1) for i in range(len(entries), count)]
    return entries, expected
