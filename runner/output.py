"""Every line testgate prints passes through ``emit``: untrusted text can issue no command.

testgate prints text it composes around untrusted parts: test ids, file names, failure
messages, notes, problems read from a shard's ``results.json``, a scanner's log. GitHub's
runner reads a step's output with .NET ``ReadLine``, which ends a line at ``\\r``, ``\\n``
or ``\\r\\n``; it parses a line whose text, leading blanks trimmed, starts with ``::`` as a
workflow command, and the legacy form ``##[command]`` anywhere in a line. A terminal, for
its part, obeys ESC sequences, BEL and the other controls. So:

* ``emit`` splits what it is given at ``\\n`` (testgate's own line ends) and writes each line
  with every other line terminator and control character shown as an escape (``\\r``
  becomes the two characters ``\\r``), ``::`` at a line start and ``##[`` anywhere broken
  up, unless the text is a workflow command testgate means to issue (``commands=True``,
  whose data and properties ``runner.github`` has escaped already).
* ``clean`` makes an untrusted field one inert line: ``\\n`` and every other terminator
  (``\\v``, ``\\f``, U+001C-U+001E, U+0085, U+2028, U+2029, which ``str.splitlines`` and
  other readers split on) shown as escapes too, and every control character.
* ``table_cell`` is ``clean`` fit for one Markdown table cell (no pipe, no backtick), for
  a code span (where Markdown reads no other syntax).
* ``markdown_text`` is ``clean`` shown as it is in Markdown's running text, a table cell or
  a list item: every character that Markdown or the HTML it passes through would read as
  syntax is escaped, so that a mock's repr (``<MagicMock id='1'>``, a raw HTML tag to
  GitHub) or ``a*b*c`` (emphasis) shows every character it has.
* ``first_line`` is the first line of an untrusted text, split wherever any reader would.
* ``bounded`` cuts a long untrusted text and says how much was cut.
* ``emit(..., colours=True)`` shows a child's output (pytest's, relayed on a runner) the
  same way, keeping only its SGR colour sequences, which GitHub's log shows as colours.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

# C0 controls but TAB, DEL, the C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "\f": "\\f"}
_COMMAND_START = re.compile(r"^(\s*):(?=:)")
# A child's SGR colours (pytest's, on GitHub with FORCE_COLOR), kept by ``inert(colours=True)``,
# which breaks ``::`` after leading blanks and colours: no reader that drops colours finds one.
_COLOUR = re.compile("(\x1b\\[[0-9;]*m)")
_COLOURED_COMMAND_START = re.compile("^((?:\\s|\x1b\\[[0-9;]*m)*):(?=:)")
LEGACY_COMMAND = "##["
PRINTED_LIMIT = 2000


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def clean(text: str) -> str:
    """An untrusted field as one printable line: terminators and controls as escapes."""
    return _CONTROL.sub(_escape, text)


def table_cell(text: str) -> str:
    """An untrusted text inside one Markdown table cell: one inert line, no ``|`` or backtick."""
    return clean(text).replace("|", "\\|").replace("`", "'")


# Markdown's inline syntax, as GitHub Flavored Markdown reads it: code spans, emphasis
# (``*`` anywhere, ``_`` but between two letters or digits) and strikethrough, raw HTML and
# autolinks, entity references, a table's cell separator; the ``]`` that closes a link's
# or image's text (``](``, ``][``) or a link definition's label (``]:``); the escape itself
# before the punctuation it would escape. The rest shows as it is, unescaped, so that the
# summary's own text stays readable as a file.
_MARKDOWN_INLINE = re.compile(
    r"[`*~<&|]|\\(?=[!-/:-@\[-`{-~])|\](?=[(\[:])|(?<![^\W_])_|_(?![^\W_])"
)
# What makes a list item's text a block of its own: a heading, a quote, a list, a rule.
_MARKDOWN_BLOCK = re.compile(r"^(\s*(?:\d+(?=[.)])|(?=[#>+=-])))")


def markdown_text(text: str) -> str:
    """An untrusted text in Markdown, shown as it is: one inert line, syntax escaped."""
    escaped = _MARKDOWN_INLINE.sub(lambda match: "\\" + match.group(), clean(text))
    return _MARKDOWN_BLOCK.sub(lambda match: match.group(1) + "\\", escaped, count=1)


def first_line(text: str) -> str:
    """The first line of an untrusted text, split at every line terminator any reader knows."""
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def bounded(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit} more characters cut by testgate]"


def inert(line: str, *, colours: bool = False) -> str:
    """One line that no runner parses as a command and no terminal obeys.

    ``colours`` keeps SGR colour sequences (and only those) as they are.
    """
    if colours:  # split at colours: the odd parts
        parts = _COLOUR.split(line)
        line = "".join(
            part if odd % 2 else _LINE_CONTROL.sub(_escape, part) for odd, part in enumerate(parts)
        )
        line = _COLOURED_COMMAND_START.sub(r"\1\\:", line)
    else:
        line = _COMMAND_START.sub(r"\1\\:", _LINE_CONTROL.sub(_escape, line))
    return line.replace(LEGACY_COMMAND, "# #[")


def emit(
    text: str, *, stream: TextIO | None = None, commands: bool = False, colours: bool = False
) -> None:
    """Write testgate's text, each line made inert (commands: escaped controls only).

    ``colours``: a child's output, whose SGR colours are kept (``inert``).
    """
    out = sys.stdout if stream is None else stream
    lines = text.split("\n")
    if commands:
        made = [_LINE_CONTROL.sub(_escape, line) for line in lines]
    else:
        made = [inert(line, colours=colours) for line in lines]
    out.write("\n".join(made))
    out.flush()
