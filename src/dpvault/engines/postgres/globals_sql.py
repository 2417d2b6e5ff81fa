"""The globals of a whole-server point (``pg_dumpall --globals-only --no-role-passwords``) read as
statements, so a restore into a server applies what it should and leaves existing roles alone.

pg_dumpall writes one statement per line or more (a comment may span lines), identifiers quoted
where they need it, strings in standard form (``'it''s'``), and psql meta-commands (``\\restrict``)
on lines of their own. :func:`statements` splits such a script on the ``;`` that end statements
outside quotes and comments, and names what each statement is about:

- ``set``: ``SET client_encoding = ...`` and the like;
- ``create-role`` / ``alter-role`` / ``comment-role``: ``CREATE ROLE r``, ``ALTER ROLE r ...`` (and
  ``SECURITY LABEL ... ON ROLE r``), ``COMMENT ON ROLE r IS '...'`` (``comment`` holds the text);
- ``grant-role``: a membership, ``GRANT g TO r [WITH ADMIN OPTION] [GRANTED BY x]`` (``role`` is r);
- ``grant``: a privilege, ``GRANT SET ON PARAMETER p TO r`` (``role`` is r);
- ``tablespace``: anything about tablespaces; ``other``: anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*|[0-9][0-9.]*|\S")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word" (a keyword or bare identifier), "ident" (quoted), "string", "punct"
    value: str  # a word as written; an identifier or string unquoted
    start: int  # offsets in the statement's text
    end: int

    def upper(self) -> str:
        return self.value.upper() if self.kind == "word" else ""

    def name(self) -> str | None:
        """The object name a word or quoted identifier denotes (bare words fold to lower case)."""
        if self.kind == "ident":
            return self.value
        if self.kind == "word":
            return self.value.lower()
        return None


@dataclass(frozen=True, slots=True)
class Statement:
    text: str  # without its terminating ';'
    kind: str
    role: str | None = None
    comment: str | None = None
    tokens: list[Token] = field(default_factory=list, repr=False)

    def without(self, words: set[str]) -> str:
        """The text with the (upper-case) keyword tokens in ``words`` left out."""
        out, at = [], 0
        for tok in self.tokens:
            if tok.kind == "word" and tok.upper() in words:
                out.append(self.text[at : tok.start].rstrip(" "))
                at = tok.end
        out.append(self.text[at:])
        return "".join(out).strip()

    def before(self, word: str) -> str:
        """The text up to the first top-level keyword ``word`` (all of it if there is none)."""
        for tok in self.tokens:
            if tok.kind == "word" and tok.upper() == word:
                return self.text[: tok.start].rstrip()
        return self.text

    def words(self) -> set[str]:
        return {t.upper() for t in self.tokens if t.kind == "word"}


class GlobalsError(ValueError):
    """Text that is not a script pg_dumpall writes (an unclosed quote or comment)."""


def _split(script: str) -> list[tuple[str, list[Token]]]:
    out: list[tuple[str, list[Token]]] = []
    i, n = 0, len(script)
    start: int | None = None  # where the statement being read begins
    tokens: list[Token] = []

    def tok(kind: str, value: str, a: int, b: int) -> None:
        nonlocal start
        if start is None:
            start = a
        tokens.append(Token(kind, value, a - start, b - start))

    while i < n:
        c = script[i]
        if c in " \t\r\n\f":
            i += 1
            continue
        if c == "\\" and start is None and (i == 0 or script[i - 1] == "\n"):
            end = script.find("\n", i)
            i = n if end == -1 else end + 1  # a psql meta-command line
            continue
        if script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if script.startswith("/*", i):
            end = script.find("*/", i + 2)
            if end == -1:
                raise GlobalsError("a /* comment is not closed")
            i = end + 2
            continue
        if c in "'\"":
            j, parts = i + 1, []
            while True:
                k = script.find(c, j)
                if k == -1:
                    raise GlobalsError("a quoted string or identifier is not closed")
                parts.append(script[j:k])
                if script.startswith(c, k + 1):  # a doubled quote: one quote inside
                    parts.append(c)
                    j = k + 2
                    continue
                break
            tok("string" if c == "'" else "ident", "".join(parts), i, k + 1)
            i = k + 1
            continue
        if c == ";":
            if start is not None:
                out.append((script[start:i], tokens))
            start, tokens = None, []
            i += 1
            continue
        m = _WORD.match(script, i)
        assert m is not None
        tok("word" if m.group(0)[0].isalpha() or m.group(0)[0] == "_" else "punct", m.group(0), i, m.end())
        i = m.end()
    if start is not None:
        out.append((script[start:], tokens))
    return out


def _classify(text: str, tokens: list[Token]) -> Statement:
    up = [t.upper() for t in tokens]
    words = set(up)

    def name_at(k: int) -> str | None:
        return tokens[k].name() if k < len(tokens) else None

    if up[:1] == ["SET"]:
        return Statement(text, "set", tokens=tokens)
    if "TABLESPACE" in words and up[:1] in (["CREATE"], ["ALTER"], ["DROP"], ["COMMENT"], ["GRANT"], ["REVOKE"],
                                           ["SECURITY"]):  # fmt: skip
        return Statement(text, "tablespace", tokens=tokens)
    if up[:2] == ["CREATE", "ROLE"]:
        return Statement(text, "create-role", name_at(2), tokens=tokens)
    if up[:2] == ["ALTER", "ROLE"]:
        return Statement(text, "alter-role", name_at(2), tokens=tokens)
    if up[:3] == ["COMMENT", "ON", "ROLE"]:
        literal = tokens[5].value if len(tokens) > 5 and tokens[5].kind == "string" else None
        return Statement(text, "comment-role", name_at(3), literal, tokens=tokens)
    if up[:2] == ["SECURITY", "LABEL"] and "ROLE" in up:
        return Statement(text, "alter-role", name_at(up.index("ROLE") + 1), tokens=tokens)
    if up[:1] == ["GRANT"] and "TO" in up:
        to = up.index("TO")
        kind = "grant" if "ON" in up[:to] else "grant-role"
        return Statement(text, kind, name_at(to + 1), tokens=tokens)
    return Statement(text, "other", tokens=tokens)


def statements(script: str) -> list[Statement]:
    """The script's statements in order (see the module docstring); GlobalsError if it cannot be
    read as SQL."""
    return [_classify(text, tokens) for text, tokens in _split(script) if tokens]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
