"""Logging for commands: cai's own INFO lines to stderr with the time, third-party chatter at WARNING,
and everything (Python warnings included, which never reach the screen) appended to the run folder's
``cai.log``."""

from __future__ import annotations

import logging
from pathlib import Path

LOG_FILE = "cai.log"
SCREEN_FORMAT, SCREEN_TIME = "%(asctime)s %(message)s", "%H:%M:%S"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_file_handler: logging.Handler | None = None
_screen = {"level": logging.INFO}  # what reaches the screen: --verbose DEBUG, --quiet WARNING (the file: all)


def set_verbosity(verbose: bool = False, quiet: bool = False) -> None:
    """``cai --verbose``: cai's debug lines on the screen too; ``--quiet``: warnings and errors only, no
    progress bars. The run folder's ``cai.log`` keeps cai's INFO lines either way.

    >>> set_verbosity(quiet=True); _screen["level"] == logging.WARNING
    True
    >>> set_verbosity(); _screen["level"] == logging.INFO
    True
    """
    import os

    if verbose and quiet:
        from cai.core.errors import CaiError

        raise CaiError("--verbose and --quiet together", hint="give one of them")
    _screen["level"] = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it for every bar it makes
    else:
        os.environ.pop("TQDM_DISABLE", None)


class _RunLog(logging.FileHandler):
    """A log file made (folder and all) at its first line: a command refused for bad input leaves none."""

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):  # noqa: ANN202 - logging's own signature
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def setup_logging(log_dir: Path | str | None = None, verbose: bool = False) -> None:
    """Say what the command is doing and where outputs went, without HTTP-client or deprecation noise;
    with ``log_dir``, also keep a timestamped log there (see :func:`log_to`)."""
    import os

    logging.basicConfig(level=logging.WARNING, format=SCREEN_FORMAT, datefmt=SCREEN_TIME)
    verbose = verbose or _screen["level"] == logging.DEBUG
    if not verbose:  # datasets' per-map "Tokenizing"/"Filter" bars: cai's own bars say what is going on
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("cai").setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # the screen (basicConfig's); the log file keeps all
            handler.setLevel(_screen["level"])
    logging.captureWarnings(True)  # warnings.warn(...) -> the "py.warnings" logger
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.propagate = False  # not to the screen: only to the log file, if any
    if not any(isinstance(h, logging.NullHandler) for h in warnings_log.handlers):
        warnings_log.addHandler(logging.NullHandler())  # else logging's last-resort handler prints them
    log_to(log_dir)


def log_to(log_dir: Path | str | None) -> Path | None:
    """Append this command's log lines (cai's INFO, others' WARNING, Python warnings) to
    ``log_dir/cai.log``, replacing the file of an earlier call; ``None`` stops file logging."""
    global _file_handler
    loggers = (logging.getLogger(), logging.getLogger("py.warnings"))
    if _file_handler is not None:
        for logger in loggers:
            logger.removeHandler(_file_handler)
        _file_handler.close()
        _file_handler = None
    if log_dir is None:
        return None
    path = Path(log_dir) / LOG_FILE
    _file_handler = _RunLog(path)
    _file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    for logger in loggers:
        logger.addHandler(_file_handler)
    return path


def to_file(message: str, name: str = "cai", *, if_started: bool = False) -> None:
    """Keep a line already shown on the screen (``typer.echo``) in the log file too, if one is open;
    ``if_started``: only if the file already has a line of this command (an error before any work leaves
    no log behind)."""
    if _file_handler is not None and not (if_started and _file_handler.stream is None):
        _file_handler.handle(logging.makeLogRecord(
            {"name": name, "levelno": logging.INFO, "levelname": "INFO", "msg": message}))
