"""A line-exact INI reader.

configparser lower-cases keys, folds duplicate lines, splits on '=' and ':' and drops bare words
unless told otherwise; actions.conf needs every line verbatim and in order, so both config files
are read here, line by line, and every item keeps its line number for error messages.
"""

from dataclasses import dataclass, field

MAX_LINE = 8192  # longer is a broken file, and would be slow to split (shlex)


class ConfigError(Exception):
    """One or more problems, each 'file:line: message'."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class Section:
    name: str
    lineno: int
    lines: list = field(default_factory=list)  # (lineno, text) with surrounding blanks stripped


def read_sections(path, text=None):
    """Split a file into sections; raise ConfigError naming file:line for structural problems."""
    if text is None:
        try:
            raw = open(path, "rb").read()
        except OSError as e:
            raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise ConfigError([f"{path}:{line}: not valid UTF-8"]) from None
    sections, problems, seen = [], [], {}
    current = None
    discard = Section("", 0)  # swallows the body of a broken header, so it is reported once
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if len(stripped) > MAX_LINE:
            problems.append(f"{path}:{lineno}: line of {len(stripped)} characters (at most "
                            f"{MAX_LINE})")
            continue
        if "\x00" in stripped:
            problems.append(f"{path}:{lineno}: NUL character")
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                problems.append(f"{path}:{lineno}: malformed section header {stripped!r}")
                current = discard
                continue
            name = stripped[1:-1].strip()
            if name in seen:
                problems.append(f"{path}:{lineno}: section [{name}] repeated "
                                f"(first at line {seen[name]})")
                current = discard
                continue
            seen[name] = lineno
            current = Section(name, lineno)
            sections.append(current)
            continue
        if current is None:
            problems.append(f"{path}:{lineno}: line outside any [section]: {stripped!r}")
            current = discard
            continue
        current.lines.append((lineno, stripped))
    if problems:
        raise ConfigError(problems)
    return sections


def split_setting(path, lineno, text):
    """'key = value' -> (key, value); a setting line without '=' is an error."""
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise ConfigError([f"{path}:{lineno}: expected 'key = value', got {text!r}"])
    return key, value.strip()
