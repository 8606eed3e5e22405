"""The matching engine (engage/lists/matching.py): identifiers, names, scores, reasons, blocking.

Pure module: no database. Names come from the seeded lists and fixtures:
- seeds/lists/us_entity_list.csv (84 FR 54002, 9 Oct 2019: Hikvision, Dahua, iFlytek with their
  aliases; 86 FR 33119, 24 Jun 2021: Xinjiang Daqo New Energy Co. Ltd.),
- seeds/lists/cbp_wro.csv (CBP WRO of 24 Jun 2021 on Hoshine Silicon Industry Co., Ltd. and its
  subsidiaries),
- tests/fixtures/ishares_em.csv (provider-style rows "HANGZHOU HIKVISION DIGITAL TECHNOLOGY LTD A"),
- the provider truncations quoted in issue 15 ("HANGZHOU HIKVISION DIGITAL TECHNOLO A",
  "ZHEJIANG DAHUA TECHNOLOGY CO LTD-A", "IFLYTEK CO LTD A").
Daqo New Energy Corp is the NYSE-listed parent of the listed Xinjiang Daqo New Energy Co. Ltd.
"""

from __future__ import annotations

import csv
import random
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engage.lists import matching
from engage.lists.matching import FLAG_SCORE, REVIEW_SCORE, CompanyRecord, EntryRecord, match, match_all_pairs

ROOT = Path(__file__).resolve().parents[1]
HIKVISION = EntryRecord(1, ("Hangzhou Hikvision Digital Technology Co. Ltd.", "Hikvision"))
DAHUA = EntryRecord(2, ("Zhejiang Dahua Technology Co. Ltd.", "Dahua", "Dahua Technology"))
IFLYTEK = EntryRecord(3, ("iFlytek Co. Ltd.", "iFlytek"))
DAQO = EntryRecord(4, ("Xinjiang Daqo New Energy Co. Ltd.",))
HOSHINE = EntryRecord(5, ("Hoshine Silicon Industry Co., Ltd. and its subsidiaries",))
CHINA_MOBILE_GAMES = EntryRecord(6, ("China Mobile Games & Entertainment Group Ltd",))
CHINA_MOBILE_GAMES_SHORT = EntryRecord(7, ("China Mobile Games",))
ENTRIES = [HIKVISION, DAHUA, IFLYTEK, DAQO, HOSHINE, CHINA_MOBILE_GAMES, CHINA_MOBILE_GAMES_SHORT]


def best(company: CompanyRecord, entries=ENTRIES) -> dict[int, matching.Candidate]:
    return {c.entry_id: c for c in match([company], entries)}


@pytest.mark.parametrize(
    ("names", "entry", "score", "reason"),
    [
        # provider truncation and share class (issue 15's examples)
        (("HANGZHOU HIKVISION DIGITAL TECHNOLO A",), HIKVISION, 94,
         'name "HANGZHOU HIKVISION DIGITAL TECHNOLO A" ~ entry name "Hangzhou Hikvision Digital Technology Co. Ltd." '
         '(truncated word "technolo" read as "technology"); share class "A" dropped from name'),
        (("ZHEJIANG DAHUA TECHNOLOGY CO LTD-A",), DAHUA, 97,
         'name "ZHEJIANG DAHUA TECHNOLOGY CO LTD-A" = entry name "Zhejiang Dahua Technology Co. Ltd." '
         '(both read "zhejiang dahua technology"); share class "A" dropped from name'),
        (("IFLYTEK CO LTD A",), IFLYTEK, 97,
         'name "IFLYTEK CO LTD A" = entry name "iFlytek Co. Ltd." (both read "iflytek"); share class "A" dropped from name'),
        # tests/fixtures/ishares_em.csv
        (("HANGZHOU HIKVISION DIGITAL TECHNOLOGY LTD A",), HIKVISION, 97,
         'name "HANGZHOU HIKVISION DIGITAL TECHNOLOGY LTD A" = entry name "Hangzhou Hikvision Digital Technology Co. Ltd." '
         '(both read "hangzhou hikvision digital technology"); share class "A" dropped from name'),
        # legal forms and punctuation
        (("Hangzhou Hikvision Digital Technology Co., Ltd.",), HIKVISION, 97,
         'name "Hangzhou Hikvision Digital Technology Co., Ltd." = entry name "Hangzhou Hikvision Digital Technology Co. Ltd." '
         '(both read "hangzhou hikvision digital technology")'),
        # the brand alias: a distinctive word of the full name
        (("Hikvision",), HIKVISION, 97, 'name "Hikvision" = entry alias "Hikvision" (both read "hikvision")'),
        (("Hangzhou Hikvision Digital Technology Company Limited", "Hikvision Digital"), EntryRecord(9, ("Hikvision",)), 91,
         'name "Hangzhou Hikvision Digital Technology Company Limited" contains the distinctive word entry name "Hikvision"'),
        # a legal form cut short by the provider
        (("ZHEJIANG DAHUA TECHNOLOGY CO L",), DAHUA, 94,
         'name "ZHEJIANG DAHUA TECHNOLOGY CO L" ~ entry name "Zhejiang Dahua Technology Co. Ltd." '
         '(truncated legal form "l" read as "ltd")'),
        # "and its subsidiaries" (CBP WRO, 24 June 2021)
        (("Hoshine Silicon Industry Co Ltd",), HOSHINE, 97,
         'name "Hoshine Silicon Industry Co Ltd" = entry name "Hoshine Silicon Industry Co., Ltd. and its subsidiaries" '
         '(both read "hoshine silicon industry"); the entry extends to subsidiaries'),
        # Chinese legal names, with and without the legal form
        (("Dahua", "浙江大华技术股份有限公司"), EntryRecord(10, ("浙江大华技术有限公司",)), 96,
         'alias "浙江大华技术股份有限公司" = entry name "浙江大华技术有限公司" (same Chinese name, read "zhejiangdahuajishu")'),
        (("Zhejiang Dahua",), EntryRecord(11, ("浙江大华",)), 92,
         'name "Zhejiang Dahua" = entry name "浙江大华" (transliterated: both read "zhejiang dahua")'),
        # a/k/a and formerly
        (("Acme Surveillance Ltd",), EntryRecord(12, ("Yuxin Vision Co. a/k/a Acme Surveillance Co.",)), 97,
         'name "Acme Surveillance Ltd" = entry alias "Acme Surveillance Co." (both read "acme surveillance")'),
        (("Acme Surveillance Ltd",), EntryRecord(13, ("Yuxin Vision Co. (formerly Acme Surveillance Ltd)",)), 97,
         'name "Acme Surveillance Ltd" = entry alias "Acme Surveillance Ltd" (both read "acme surveillance")'),
        # review, not flag: a regional company carrying the listed parent's name (86 FR 33119)
        (("Daqo New Energy Corp",), DAQO, 85,
         'name "Daqo New Energy Corp" ~ entry name "Xinjiang Daqo New Energy Co. Ltd." (all words shared, entry name '
         'adds "xinjiang": the same company or a related legal entity)'),
        # review, not flag: common words only
        (("China Mobile Ltd",), CHINA_MOBILE_GAMES_SHORT, 72,
         'name "China Mobile Ltd" ~ entry name "China Mobile Games" (only common words, all shared; entry name adds "games")'),
        # a typo in a distinctive name: review
        (("Hefei Meiling Co. Ltd.",), EntryRecord(14, ("Hefei Meilling Co Ltd",)), 89,
         'name "Hefei Meiling Co. Ltd." 96% like entry name "Hefei Meilling Co Ltd"'),
    ],
)
def test_names_score_with_reason(names, entry, score, reason):
    candidates = match([CompanyRecord(100, names)], [entry])
    assert [(c.score, c.reason) for c in candidates] == [(score, reason)]
    assert (score >= FLAG_SCORE) == (candidates[0].score >= FLAG_SCORE)


@pytest.mark.parametrize(
    ("company", "reason"),
    [
        (CompanyRecord(1, ("Anything",), isin="cne100000pm8"), "ISIN CNE100000PM8"),
        (CompanyRecord(1, ("Anything",), lei="5493001KJTIIGC8Y1R12"), "LEI 5493001KJTIIGC8Y1R12"),
        (CompanyRecord(1, ("Anything",), ticker="002415", exchange="XSHE"), "ticker XSHE:002415 (ticker and exchange)"),
    ],
)
def test_identifiers_first(company, reason):
    entry = EntryRecord(50, ("Something else entirely",),
                        {"isin": ["CNE100000PM8"], "lei": ["5493001KJTIIGC8Y1R12"], "ticker": ["XSHE:002415"]})
    assert [(c.score, c.reason) for c in match([company], [entry])] == [(100, reason)]


def test_a_ticker_needs_its_exchange():
    entry = EntryRecord(50, ("Something else entirely",), {"ticker": ["002415", "XSHG:002415"]})
    assert match([CompanyRecord(1, ("Anything",), ticker="002415", exchange="XSHE")], [entry]) == []
    assert match([CompanyRecord(1, ("Anything",), ticker="002415")], [entry]) == []


def test_unrelated_companies_with_similar_words_do_not_flag():
    found = best(CompanyRecord(1, ("China Mobile Ltd",)))
    assert CHINA_MOBILE_GAMES.id not in found  # too different to review
    assert found[CHINA_MOBILE_GAMES_SHORT.id].score < FLAG_SCORE
    assert all(c.score < FLAG_SCORE for c in found.values())
    found = best(CompanyRecord(2, ("China Mobile Games & Entertainment Group Ltd",)))
    assert found[CHINA_MOBILE_GAMES.id].score == 97  # the same name does match
    assert CHINA_MOBILE_GAMES_SHORT.id not in found  # "games" is no distinctive word


@pytest.mark.parametrize("name", ["Mobile", "Technology Ltd", "Group", "China", "Digital Technology Co Ltd", "Energy"])
def test_single_generic_words_do_not_flag(name):
    assert all(c.score < FLAG_SCORE for c in match([CompanyRecord(1, (name,))], ENTRIES))


def test_different_numbers_are_different_companies():
    entry = EntryRecord(1, ("Golden Mining 00042 Co., Ltd.",))
    assert match([CompanyRecord(1, ("Golden Mining 00043 Co., Ltd.",))], [entry]) == []
    assert [c.score for c in match([CompanyRecord(1, ("GOLDEN MINING 00042 CO LTD-A",))], [entry])] == [97]


def test_a_word_prefix_is_not_a_truncation():
    """"China Mobile Communications" is not a truncated "China Mobile Communications Group Services"."""
    entry = EntryRecord(1, ("China Mobile Communications Group Services Co Ltd",))
    assert all(c.score < FLAG_SCORE for c in match([CompanyRecord(1, ("China Mobile Communications Ltd",))], [entry]))


def test_truncated_but_the_other_name_goes_on_is_review():
    entry = EntryRecord(1, ("Hangzhou Hikvision Digital Technology Services Co Ltd",))
    [candidate] = match([CompanyRecord(1, ("HANGZHOU HIKVISION DIGITAL TECHNOLO A",))], [entry])
    assert REVIEW_SCORE <= candidate.score < FLAG_SCORE
    assert 'truncated word "technolo" read as "technology", but the longer name goes on: "services"' in candidate.reason


def test_name_reading():
    [form] = matching.name_forms(["Hoshine Silicon Industry Co., Ltd. and its subsidiaries"], entry=True)
    assert (form.tokens, form.subsidiaries, form.label) == (("hoshine", "silicon", "industry"), True, "entry name")
    [form] = matching.name_forms(["Alibaba Group Holding Ltd SPONSORED ADR"])
    assert (form.text, form.share_class) == ("alibaba group holding", "SPONSORED ADR")
    [form] = matching.name_forms(["杭州海康威视数字技术股份有限公司"])
    assert form.cjk and form.text == "hangzhouhaikangweishishuzijishu"
    assert matching.split_names("Acme a/k/a Foo; f/k/a Bar Ltd") == ["Acme", "Foo", "Bar Ltd"]
    assert matching.split_names("Foo (Shenzhen) Co (formerly Bar Ltd)") == ["Foo (Shenzhen) Co", "Bar Ltd"]
    assert matching.name_forms(["Co., Ltd."]) == []
    assert matching.covers_subsidiaries("Hoshine Silicon Industry Co., Ltd. & its subsidiaries")
    assert not matching.covers_subsidiaries("Subsidiary Holdings Ltd")


def test_seeded_entity_list_finds_the_provider_rows():
    """The seeded Entity List against the iShares EM fixture's company rows."""
    with open(ROOT / "seeds/lists/us_entity_list.csv", newline="", encoding="utf-8") as handle:
        entries = [EntryRecord(i, (row["name"], *[a for a in row["alt_names"].split("; ") if a]))
                   for i, row in enumerate(csv.DictReader(handle), start=1)]
    lines = (ROOT / "tests/fixtures/ishares_em.csv").read_text(encoding="utf-8-sig").splitlines()
    rows = list(csv.DictReader(lines[lines.index(next(l for l in lines if l.startswith("Ticker,"))):]))
    companies = [CompanyRecord(i, (row["Name"],)) for i, row in enumerate(rows, start=1) if row.get("Asset Class") == "Equity"]
    flagged = {(next(c.names[0] for c in companies if c.id == m.company_id), entries[m.entry_id - 1].names[0])
               for m in match(companies, entries) if m.score >= FLAG_SCORE}
    assert flagged == {
        ("HANGZHOU HIKVISION DIGITAL TECHNOLOGY LTD A", "Hangzhou Hikvision Digital Technology Co. Ltd."),
        ("ZHEJIANG DAHUA TECHNOLOGY LTD A", "Zhejiang Dahua Technology Co. Ltd."),
    }


def test_output_is_sorted_and_independent_of_input_order():
    companies = [CompanyRecord(i, (name,)) for i, name in enumerate(
        ["IFLYTEK CO LTD A", "Hikvision", "ZHEJIANG DAHUA TECHNOLOGY CO LTD-A", "China Mobile Ltd", "Daqo New Energy Corp"], start=1)]
    first = match(companies, ENTRIES)
    assert first == sorted(first, key=lambda c: (c.company_id, c.entry_id))
    rng = random.Random(3)
    for _ in range(5):
        shuffled_c, shuffled_e = companies[:], ENTRIES[:]
        rng.shuffle(shuffled_c)
        rng.shuffle(shuffled_e)
        assert match(shuffled_c, shuffled_e) == first


def test_blocking_does_not_compare_all_pairs():
    """2,000 x 4,000 unrelated names run through the index, not 8 million comparisons."""
    rng = random.Random(5)
    syllables = ["hai", "kang", "hua", "da", "xin", "tai", "long", "feng", "jin", "ming", "rui", "sheng", "tian", "yu"]

    def coined():
        return "".join(rng.choice(syllables) for _ in range(3)).capitalize()

    companies = [CompanyRecord(i, (f"{coined()} Technology Co Ltd",)) for i in range(2000)]
    entries = [EntryRecord(i, (f"Xinjiang {coined()} New Energy Co Ltd",)) for i in range(4000)]
    prepared = matching._Prepared(companies, entries)
    pairs = sum(1 for _ in prepared.blocked_pairs())
    assert pairs < len(companies) * len(entries) / 100
    start = time.perf_counter()
    match(companies, entries)
    assert time.perf_counter() - start < 10


# ---------------------------------------------------------------------------------------------
# Blocking against brute force

WORDS = ["hikvision", "dahua", "daqo", "hoshine", "megvii", "iflytek", "meiling", "xinjiang", "zhejiang",
         "china", "mobile", "games", "new", "energy", "digital", "technology", "technolo", "silicon", "industry",
         "group", "co", "ltd", "co.,", "ltd.", "inc", "limited", "a", "-a", "00042", "00043", "and its subsidiaries",
         "a/k/a", "(formerly", ")", "浙江大华", "技术", "股份有限公司", "zhejiang dahua"]
IDS = ["CNE100000PM8", "US0378331005", None]


@st.composite
def names(draw):
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6))
    name = " ".join(words)
    if draw(st.booleans()) and len(name) > 18:  # a provider's truncation
        name = name[: draw(st.integers(16, len(name)))] + draw(st.sampled_from(["", " A"]))
    return name


@st.composite
def inputs(draw):
    pool = draw(st.lists(names(), min_size=1, max_size=8))
    pick = st.sampled_from(pool)
    companies = [CompanyRecord(i, tuple(draw(st.lists(pick, min_size=1, max_size=2))), isin=draw(st.sampled_from(IDS)))
                 for i in range(draw(st.integers(1, 6)))]
    entries = [EntryRecord(i, tuple(draw(st.lists(st.one_of(pick, names()), min_size=1, max_size=3))),
                           {"isin": [draw(st.sampled_from(IDS)) or ""]})
               for i in range(draw(st.integers(1, 8)))]
    return companies, entries


TRUNCATED_COMMON_WORDS = (  # only the truncation key leads from one to the other
    [CompanyRecord(1, ("CHINA MOBILE DIGITAL TECHNOLO A",))],
    [EntryRecord(1, ("China Mobile Digital Technology Co Ltd",)), EntryRecord(2, ("China Mobile Digital Games",)),
     EntryRecord(3, ("China Mobile Digital Services",))],
)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(inputs(), st.sampled_from([1, 2, 20]))
@example(TRUNCATED_COMMON_WORDS, 1)
def test_blocking_finds_every_flag_that_all_pairs_find(data, cutoff):
    companies, entries = data
    with mock.patch.object(matching, "common_cutoff", lambda n: cutoff):  # small inputs: make words common sooner
        blocked = match(companies, entries)
        brute = match_all_pairs(companies, entries)
    assert set(blocked) <= set(brute)
    assert [c for c in blocked if c.score >= FLAG_SCORE] == [c for c in brute if c.score >= FLAG_SCORE]


def test_one_common_word_alone_never_flags():
    """An alias that is one common word ("Solar") equal on both sides is at most a review, and
    blocking does not look it up at all."""
    company = CompanyRecord(1, ("Golden Sun Photovoltaic Ltd", "Solar"))
    entry = EntryRecord(1, ("Hetian Yuxin Co Ltd", "Solar Ltd"))
    assert match([company], [entry]) == []
    [candidate] = match_all_pairs([company], [entry])
    assert (candidate.score, candidate.reason) == (
        80, 'alias "Solar" = entry alias "Solar Ltd" (both read "solar", a single common word)')
