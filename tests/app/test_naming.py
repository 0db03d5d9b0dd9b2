"""Task ids and output names: properties over arbitrary names and ETags, plus the known cases."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import naming

LEGAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
names = st.text(min_size=1, max_size=1100)
etags = st.from_regex(r'"0x[0-9A-F]{15}"', fullmatch=True)


@given(names, etags)
def test_task_id_is_batch_legal_and_deterministic(name, etag):
    tid = naming.task_id(name, etag)
    assert LEGAL_ID.match(tid), tid
    assert tid == naming.task_id(name, etag)


@given(names, etags, etags)
def test_new_etag_is_new_work(name, etag_a, etag_b):
    if etag_a != etag_b:
        assert naming.task_id(name, etag_a).lower() != naming.task_id(name, etag_b).lower()


@settings(max_examples=300)
@given(names, names, etags)
def test_distinct_names_get_case_insensitively_distinct_ids(name_a, name_b, etag):
    # Batch ids are unique case-insensitively: 'Clip.mp4' and 'clip.mp4' must not collide.
    if name_a != name_b:
        assert naming.task_id(name_a, etag).lower() != naming.task_id(name_b, etag).lower()


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_case_only_differences_are_distinct(stem):
    upper, lower = f"{stem.upper()}.mp4", f"{stem.lower()}.mp4"
    if upper != lower:
        assert naming.task_id(upper, '"0x1"').lower() != naming.task_id(lower, '"0x1"').lower()


def test_quoted_and_unquoted_etags_give_one_id():
    # Get Blob Properties quotes ETags, List Blobs does not: the sweep and trigger must agree.
    assert naming.task_id("a.mp4", '"0x8D1"') == naming.task_id("a.mp4", "0x8D1")
    assert naming.task_id("a.mp4", 'W/"0x8D1"') == naming.task_id("a.mp4", "0x8D1")


def test_readable_prefix_leads_the_id():
    assert naming.task_id("shows/Ep 1 ü.MP4", '"0x1"').startswith("shows_Ep_1_u-")
    assert naming.task_id("$(touch pwned).mp4", '"0x1"').startswith("touch_pwned-")
    assert naming.task_id("'\"`.mp4", '"0x1"').startswith("blob-")
    long_id = naming.task_id("x" * 1020 + ".mp4", '"0x1"')
    assert len(long_id) == 64 and long_id.startswith("x" * 47 + "-")


mp4_names = st.builds(lambda stem, ext: stem + ext,
                      st.text(min_size=1, max_size=1000).filter(lambda s: not s.endswith("/")),
                      st.sampled_from([".mp4", ".MP4", ".Mp4"]))


@given(mp4_names)
def test_output_name_replaces_only_the_last_extension(name):
    out = naming.output_name(name)
    assert out.endswith(".mp3")
    assert out[:-4] == name[:-4]
    assert len(out) == len(name)  # same length: a legal (<= 1,024) input gives a legal output


def test_output_name_examples():
    assert naming.output_name("a/b/clip.MP4") == "a/b/clip.mp3"
    assert naming.output_name("movie.tar.mp4") == "movie.tar.mp3"
    assert naming.output_name("x.mp4.mp4") == "x.mp4.mp3"


def test_is_mp4():
    assert naming.is_mp4("a/b/Clip.MP4")
    assert not naming.is_mp4("a/b/clip.mov")
    assert not naming.is_mp4("a/.mp4")            # no stem: a hidden file, not a clip
    assert not naming.is_mp4("clip.mp4/")
    assert not naming.is_mp4("clip.mp4.txt")


def test_name_problems():
    assert naming.name_problem("a b/ü;rm -rf.mp4") is None
    assert naming.name_problem("$(touch pwned).mp4") is None
    assert naming.name_problem("x" * 1020 + ".mp4") is None
    assert "1024" in naming.name_problem("x" * 1021 + ".mp4").reason
    assert "'..'" in naming.name_problem("a/../b.mp4").reason
    assert "'..'" in naming.name_problem("./b.mp4").reason
    assert naming.name_problem("a..b.mp4") is None
    assert "empty path segment" in naming.name_problem("a//b.mp4").reason
    assert "control" in naming.name_problem("a\nb.mp4").reason
    assert naming.name_problem("") is not None


def test_printable_name_escapes_only_unsafe_characters():
    assert naming.printable_name("a b/ü.mp4") == "a b/ü.mp4"
    assert naming.printable_name("a\nb\ud800.mp4") == "a\\nb\\ud800.mp4"


@pytest.mark.parametrize("name", ["invoice\u202egpj.mp4", "a\u2066b\u2069.mp4", "two\u2028lines.mp4",
                                  "para\u2029graph.mp4", "rtl\u200fmark.mp4"])
def test_names_that_display_as_another_are_rejected_and_escaped(name):
    problem = naming.name_problem(name)
    assert problem is not None and "bidirectional-text or line-separator" in problem.reason
    printable = naming.printable_name(name)
    assert all(ch not in printable for ch in "\u202e\u2066\u2069\u2028\u2029\u200f")


def test_harmless_format_characters_are_kept():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467.mp4"  # emoji joined by ZWJ
    assert naming.name_problem(family) is None and naming.printable_name(family) == family
