"""Results: ``EOF`` narrows under ``mypy --strict`` and ``unwrap``/``expect`` work.

The functions below are checked by ``mypy --strict`` (which covers ``tests/``): if ``EOF``
stopped narrowing, ``r.value`` after ``if r is EOF`` and the ``assert_never`` arms would
be type errors, and the run would fail.
"""

from __future__ import annotations

import pickle
from typing import assert_never

import pytest

from miragekit import result
from miragekit.result import EOF, Eof, Error, Ok, Unknown, UnwrapError

ReadResult = Ok[memoryview] | Eof | Error[Unknown]


def length_if(r: ReadResult) -> int:
    if r is EOF:
        return -1
    if isinstance(r, Error):
        return -2
    return len(r.value)  # r is Ok[memoryview] here


def length_match(r: ReadResult) -> int:
    match r:
        case Ok(v):
            return len(v)
        case result.EOF:
            return -1
        case Error():
            return -2
        case _:
            assert_never(r)


def length_match_class(r: ReadResult) -> int:
    match r:
        case Ok(v):
            return len(v)
        case Eof.EOF:
            return -1
        case Error(Unknown(msg)):
            return -len(msg) - 10
        case _:
            assert_never(r)


@pytest.mark.parametrize("fn", [length_if, length_match, length_match_class])
def test_eof_narrows(fn: object) -> None:
    assert callable(fn)
    assert fn(Ok(memoryview(b"abc"))) == 3
    assert fn(EOF) == -1
    assert fn(Error(Unknown("x"))) in (-2, -11)


def test_eof_is_one_value() -> None:
    assert repr(EOF) == "EOF"
    assert pickle.loads(pickle.dumps(EOF)) is EOF
    assert list(Eof) == [EOF]


def test_unwrap_and_expect() -> None:
    ok: Ok[int] | Error[Unknown] = Ok(5)
    assert ok.unwrap() == 5
    assert ok.expect("five") == 5
    bad: Ok[int] | Error[Unknown] = Error(Unknown("boom"))
    with pytest.raises(UnwrapError, match=r"unwrap\(\) on Error\(Unknown\(msg='boom'\)\)"):
        bad.unwrap()
    with pytest.raises(UnwrapError, match=r"^connect: Unknown\(msg='boom'\)$"):
        bad.expect("connect")
    n: int = ok.unwrap()  # the value's type survives the union
    assert n == 5
