"""Where things are: a home directory holds etc/, checks/, actions/ and var/."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, home=None):
        """--home, else $HADAEMON_HOME, else the current directory."""
        return cls(Path(home or os.environ.get("HADAEMON_HOME") or ".").resolve())

    @property
    def etc(self):
        return self.root / "etc"

    @property
    def checks_dir(self):
        return self.root / "checks"

    @property
    def actions_dir(self):
        return self.root / "actions"

    @property
    def var(self):
        return self.root / "var"

    @property
    def checks_conf(self):
        return self.etc / "checks.conf"

    @property
    def actions_conf(self):
        return self.etc / "actions.conf"

    @property
    def state_db(self):
        return self.var / "state.db"

    @property
    def pidfile(self):
        return self.var / "hadaemon.pid"

    @property
    def control_socket(self):
        return self.var / "control.sock"

    @property
    def runner_lock(self):
        return self.var / "runner.lock"

    @property
    def command_lock(self):
        return self.var / "command.lock"

    @property
    def paused(self):
        return self.var / "paused"

    @property
    def logfile(self):
        return self.var / "hadaemon.log"

    def make_var(self):
        self.var.mkdir(mode=0o750, exist_ok=True)

    def find_check(self, word):
        """A check is checks/NAME, or an absolute path (Nagios plugins live elsewhere)."""
        _named(word)
        return _executable(self.checks_dir / word if "/" not in word else Path(word), word)

    def find_action(self, word, path=None):
        """actions/NAME if that file exists, else an absolute path, else a program on PATH."""
        _named(word)
        if "/" not in word and _exists(self.actions_dir / word):
            return _executable(self.actions_dir / word, word)
        if "/" in word:
            return _executable(Path(word), word)
        found = shutil.which(word, path=path or SAFE_PATH)
        if not found:
            raise LookupError(f"{_name(word)} is neither in {self.actions_dir} nor on PATH")
        return found

    def resolved(self, program, word):
        """The program a step was planned with, if it is still runnable. Never a new lookup: a
        name resolves once, when the config is loaded, by the rule strict mode checked."""
        if not program:
            raise LookupError(f"{_name(word)}: no program was resolved for it when the config "
                              f"was loaded")
        try:
            return _executable(Path(program), word)
        except LookupError as e:
            raise LookupError(f"{e} (resolved from {_name(word)} when the config was loaded; "
                              f"not looked up again)") from None


def _name(word):
    """A program name for a message, cut short if a broken config made it huge."""
    return f"{word[:60]!r}{'...' if len(word) > 60 else ''}"


def _exists(path):
    try:
        return path.exists()
    except OSError:
        return False


SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _named(word):
    if not word.strip() or word in (".", ".."):
        raise LookupError(f"{word!r} is not a program name")


def _executable(path, word):
    if not path.is_absolute():
        raise LookupError(f"{word!r}: a path must be absolute")
    try:
        if path.is_dir():
            raise LookupError(f"{path} is a folder, not a program")
        if not path.is_file():
            raise LookupError(f"{path} does not exist")
    except OSError as e:  # a name too long for the file system, ...
        raise LookupError(f"{_name(word)}: {e.strerror}") from None
    if not os.access(path, os.X_OK):
        raise LookupError(f"{path} is not executable")
    return str(path)
