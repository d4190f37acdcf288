"""Drive a real program in a detached tmux pane, as a person at a terminal would.

One private tmux server per ``TmuxPane`` (``tmux -L <unique name>``, our own
config file, no user or system config), one 80x24 pane without a status line.
Keys go in with ``send-keys``; what the terminal shows comes back with
``capture-pane -p`` together with the cursor position, and tests poll it against
a deadline instead of sleeping. ``close`` kills the server: call it in a
``finally`` (or use the pane as a context manager).

The program runs under ``/bin/sh``, which waits for it, prints its exit status
into the pane and then sleeps until the server is killed, so the pane stays alive
and shows it. tmux's own ``#{pane_dead_status}`` is not used: tmux 3.3a sometimes
sees the pty close but never reaps the child (a zombie, the status stays empty),
and it may drop the last output of a process that exits right after writing it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

TMUX = shutil.which("tmux")
POLL = 0.05  # seconds between two looks at the screen
WIDTH, HEIGHT = 80, 24
_STATE = "#{cursor_x} #{cursor_y} #{pane_dead} #{pane_width} #{pane_height}"
_CONFIG = """\
set-option -g status off
set-option -g remain-on-exit on
set-option -g default-terminal xterm-256color
set-option -g history-limit 100
"""
# "$@" is the program; its status goes into the pane once it has ended. The sleep
# only keeps the pane open for reading; close() kills it with the server.
_WRAPPER = '"$@"; echo "[exit status $?]"; exec sleep 300'
_EXIT_LINE = re.compile(r"^\[exit status (\d+)\]$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Screen:
    """One look at the pane: its rows as text, the cursor, and whether the program ended."""

    lines: tuple[str, ...]
    cursor_x: int
    cursor_y: int
    dead: bool  # tmux's view: the pane's pty is closed
    width: int
    height: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def exit_status(self) -> int | None:
        """The program's exit status once it has ended, else None."""
        found = _EXIT_LINE.search(self.text)
        return None if found is None else int(found.group(1))

    @property
    def ended(self) -> bool:
        return self.dead or self.exit_status is not None

    @property
    def cursor_line(self) -> str:
        return self.lines[self.cursor_y] if 0 <= self.cursor_y < len(self.lines) else ""

    def row_of(self, needle: str) -> int | None:
        """The first row showing ``needle``, or None."""
        return next((i for i, line in enumerate(self.lines) if needle in line), None)

    def __str__(self) -> str:
        if self.exit_status is not None:
            state = f"exited with status {self.exit_status}"
        else:
            state = "ended" if self.dead else "running"
        ruler = "-" * self.width
        return (
            f"{self.width}x{self.height}, cursor at ({self.cursor_x}, {self.cursor_y}), "
            f"program {state}\n{ruler}\n{self.text}\n{ruler}"
        )


class TmuxPane:
    """``command`` (an argv, no shell quoting needed) in its own tmux server."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        width: int = WIDTH,
        height: int = HEIGHT,
    ) -> None:
        if TMUX is None:
            raise RuntimeError("tmux is not installed")
        self.tmux = TMUX
        self.socket = f"fieldapp-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.env = dict(env)
        self.config = cwd / "tmux.conf"
        self.config.write_text(_CONFIG, encoding="utf-8")
        self.target = "main:0.0"
        size = ("-x", str(width), "-y", str(height))
        program = ("/bin/sh", "-c", _WRAPPER, "sh", *command)
        self.socket_path: Path | None = None
        try:
            self._run("new-session", "-d", "-s", "main", *size, "-c", str(cwd), *program)
            self.socket_path = Path(self._run("display-message", "-p", "#{socket_path}").strip())
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ tmux itself

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [self.tmux, "-L", self.socket, "-f", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=10,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"tmux {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def close(self) -> None:
        """Kill the server and with it the program, if it still runs; remove the socket."""
        subprocess.run(
            [self.tmux, "-L", self.socket, "kill-server"],
            env=self.env,
            capture_output=True,
            timeout=10,
            check=False,
        )
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)  # tmux 3.3a leaves it behind

    def __enter__(self) -> TmuxPane:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ input

    def type(self, text: str) -> None:
        """Type ``text`` literally (UTF-8 passes through as typed)."""
        self._run("send-keys", "-t", self.target, "-l", text)

    def press(self, *keys: str) -> None:
        """Press named keys, in tmux's names: ``Enter``, ``Tab``, ``Escape``, ``C-s``, ``n``."""
        self._run("send-keys", "-t", self.target, *keys)

    # ------------------------------------------------------------ output

    def screen(self) -> Screen:
        """The pane's rows and state, from one tmux command list."""
        capture = ("capture-pane", "-p", "-t", self.target)
        state = ("display-message", "-p", "-t", self.target, _STATE)
        out = self._run(*capture, ";", *state)
        *rows, last = out.rstrip("\n").split("\n")
        x, y, dead, width, height = last.split(" ")
        return Screen(
            lines=tuple(row.rstrip() for row in rows),
            cursor_x=int(x),
            cursor_y=int(y),
            dead=dead == "1",
            width=int(width),
            height=int(height),
        )

    def wait_for(
        self,
        ready: Callable[[Screen], object],
        what: str,
        *,
        timeout: float = 30.0,
        allow_exit: bool = False,
    ) -> Screen:
        """Look at the screen until ``ready(screen)`` is true; fail with the last screen.

        Fails at once if the program ended, unless ``allow_exit`` (waiting for it to end).
        """
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if ready(screen):
                return screen
            if screen.ended and not allow_exit:
                raise AssertionError(f"the program ended while waiting for {what}:\n{screen}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout:g} s; the screen shows:\n{screen}")
            time.sleep(POLL)

    def wait_for_text(self, needle: str, *, timeout: float = 30.0) -> Screen:
        return self.wait_for(lambda s: needle in s.text, repr(needle), timeout=timeout)

    def wait_for_exit(self, *, timeout: float = 30.0) -> Screen:
        """Wait until the program has ended and its exit status is on screen."""
        return self.wait_for(
            lambda s: s.exit_status is not None, "exit status", timeout=timeout, allow_exit=True
        )
