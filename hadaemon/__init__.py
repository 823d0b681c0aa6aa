"""hadaemon: a small, transparent high-availability daemon."""

__version__ = "0.1.0"
