from __future__ import annotations

from typing import Any

import pytest

from portside.core.fieldtypes import FieldError
from portside.core.schema import TagRule
from portside.core.validation import conform, validate


def fails(tags: str, attrs: dict[str, Any], column: str = "f", *, partial: bool = True) -> str:
    with pytest.raises(FieldError) as info:
        validate([TagRule(column, tags)], attrs, partial=partial)
    assert info.value.column == column
    assert str(info.value) == info.value.message
    return info.value.message


def passes(tags: str, attrs: dict[str, Any], column: str = "f", *, partial: bool = True) -> None:
    validate([TagRule(column, tags)], attrs, partial=partial)


# ---------------------------------------------------------------- conform


def test_conform_tags() -> None:
    rules = [
        TagRule("email", "email"),
        TagRule("name", "name"),
        TagRule("t", "title"),
        TagRule("u", "trim,upper"),
        TagRule("l", "lowercase"),
        TagRule("lt", "ltrim"),
        TagRule("rt", "rtrim"),
    ]
    attrs = {
        "email": "  John@Example.COM ",
        "name": "  john   mcDonald\tsmith ",
        "t": "hello WORLD",
        "u": "  abc ",
        "l": "MiXeD",
        "lt": "  x  ",
        "rt": "  x  ",
        "other": " untouched ",
    }
    out = conform(rules, attrs)
    assert out == {
        "email": "john@example.com",
        "name": "John McDonald Smith",
        "t": "Hello World",
        "u": "ABC",
        "l": "mixed",
        "lt": "x  ",
        "rt": "  x",
        "other": " untouched ",
    }
    assert attrs["email"] == "  John@Example.COM "  # input not mutated
    assert out is not attrs


def test_conform_ignores_non_strings_missing_and_unknown_tags() -> None:
    rules = [TagRule("n", "trim,upper"), TagRule("missing", "trim"), TagRule("s", "bogus, trim ,snake")]
    assert conform(rules, {"n": 5, "s": " a "}) == {"n": 5, "s": "a"}
    assert conform([TagRule("x", "lower")], {"x": None}) == {"x": None}


# ---------------------------------------------------------------- validate


def test_required() -> None:
    assert fails("required", {}, "name", partial=False) == "'name' is required"
    passes("required", {}, "name", partial=True)  # PATCH: absent columns are not checked
    assert fails("required", {"name": ""}, "name") == "'name' is required"
    assert fails("required", {"name": None}, "name") == "'name' is required"
    assert fails("required", {"name": []}, "name") == "'name' is required"
    passes("required", {"name": "x"}, "name", partial=False)
    passes("required", {"name": 0}, "name", partial=False)
    passes("required", {"name": False}, "name", partial=False)


def test_email_and_url() -> None:
    msg = fails("required,email", {"email": "nope"}, "email")
    assert msg == "'email' must be a valid email address"
    passes("required,email", {"email": "a@b.co"}, "email")
    fails("email", {"f": ""})  # go-playground: empty string is not an email without omitempty
    fails("email", {"f": 5})
    assert fails("url", {"f": "not a url"}) == "'f' must be a valid URL"
    passes("url", {"f": "https://example.com/x"})


def test_min_max_len_strings() -> None:
    assert fails("min=8", {"password": "short"}, "password") == "'password' must be at least 8 characters"
    passes("min=8", {"password": "12345678"}, "password")
    assert fails("max=3", {"f": "abcd"}) == "'f' must be at most 3 characters"
    assert fails("len=5", {"f": "abcd"}) == "'f' must be exactly 5 characters"
    passes("len=5", {"f": "abcde"})
    assert fails("min=1", {"f": ""}) == "'f' must be at least 1 character"
    passes("max=2", {"f": "éé"})  # characters, not bytes


def test_min_max_numbers_and_lists() -> None:
    assert fails("min=18", {"age": 17}, "age") == "'age' must be at least 18"
    passes("min=18", {"age": 18}, "age")
    assert fails("max=100", {"f": 100.5}) == "'f' must be at most 100"
    assert fails("gt=0", {"f": 0}) == "'f' must be greater than 0"
    assert fails("lt=10", {"f": 10}) == "'f' must be less than 10"
    passes("gte=0,lte=10", {"f": 10})
    assert fails("min=2", {"f": [1]}) == "'f' must be at least 2 items"
    assert fails("max=1", {"f": {"a": 1, "b": 2}}) == "'f' must be at most 1 item"


def test_oneof_and_eq() -> None:
    assert fails("oneof=red green 'light blue'", {"f": "blue"}) == "'f' must be one of red, green, light blue"
    passes("oneof=red green 'light blue'", {"f": "light blue"})
    passes("oneof=1 2 3", {"f": 2})
    assert fails("eq=yes", {"f": "no"}) == "'f' must equal 'yes'"
    assert fails("ne=admin", {"f": "admin"}) == "'f' must not equal 'admin'"


def test_eqfield() -> None:
    rule = "required,eqfield=passwordConfirm"
    msg = fails(rule, {"password": "abcdefgh", "password_confirm": "x"}, "password")
    assert msg == "'password' must equal 'passwordConfirm'"
    passes(rule, {"password": "abcdefgh", "password_confirm": "abcdefgh"}, "password")
    passes(rule, {"password": "abcdefgh", "passwordConfirm": "abcdefgh"}, "password")
    fails(rule, {"password": "abcdefgh"}, "password")  # confirmation missing
    fails("nefield=old", {"f": "same", "old": "same"})


def test_string_shape_tags() -> None:
    fails("alpha", {"f": "ab1"})
    passes("alpha", {"f": "ab"})
    fails("alphanum", {"f": "a-1"})
    fails("numeric", {"f": "1.2.3"})
    passes("numeric", {"f": "-1.5"})
    passes("numeric", {"f": 3})
    fails("number", {"f": "-1"})
    fails("lowercase", {"f": "Ab"})
    fails("uppercase", {"f": "Ab"})
    fails("contains=@", {"f": "ab"})
    fails("excludes=@", {"f": "a@b"})
    fails("startswith=x", {"f": "ab"})
    fails("endswith=x", {"f": "ab"})
    passes("startswith=a,endswith=b,contains=a", {"f": "ab"})


def test_omitempty_and_null() -> None:
    passes("omitempty,email", {"f": ""})
    passes("omitempty,min=8", {}, partial=False)
    fails("omitempty,email", {"f": "x"})
    passes("email,min=3", {"f": None})  # null skips non-required tags


def test_unknown_tags_and_bad_params_are_ignored() -> None:
    passes("iscolor,dive,whatever=1", {"f": "x"})
    passes("min=abc,max=", {"f": "x"})
    passes("min=inf", {"f": "x"})


def test_first_failure_wins_and_rule_order() -> None:
    rules = [TagRule("a", "required"), TagRule("b", "min=3")]
    with pytest.raises(FieldError) as info:
        validate(rules, {"b": "x"}, partial=False)
    assert info.value.column == "a"
    with pytest.raises(FieldError) as info:
        validate(rules, {"b": "x"}, partial=True)
    assert info.value.column == "b"
    assert info.value.message == "'b' must be at least 3 characters"


def test_tags_with_spaces_and_case() -> None:
    assert fails(" Required , Email ", {"f": "x"}) == "'f' must be a valid email address"
