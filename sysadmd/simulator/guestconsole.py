"""A simulated guest's serial console: a pseudo-terminal standing in for its nmdm pair.

On a host, bhyve holds ``/dev/nmdm<N>A`` and a client opens ``/dev/nmdm<N>B``. Here a small
program plays the guest on the pseudo-terminal's master side and puts a symbolic link to the
other side where the daemon looks for the B device (``<root>/dev/nmdm<N>B`` for the iohyve
dialect). The program prints a FreeBSD-like boot transcript ending in ``login: `` (naming the
ISO when the guest was started by ``install``), echoes what is typed as a terminal would, and
understands a handful of commands: ``root`` at the login prompt, then ``uname -a``,
``echo <text>`` and ``poweroff``. ``poweroff`` runs the command it was given to mark the guest
stopped (the dialect's own ``stop``) and ends.

The program runs detached from the command that started it, in a session of its own, and
records its process id in a pid file; :func:`stop_console` ends it. It also ends by itself
when its pid file disappears (the simulator's root was removed), so no program outlives the
state it simulates. Standard library only: any dialect may call :func:`start_console`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import subprocess
import sys
import time
import tty

#: Seconds between checks that the pid file still names this program.
_WATCH_INTERVAL = 1.0

_BACKSPACE = (b"\x7f", b"\x08")


def start_console(
    guest: str,
    device: str,
    pidfile: str,
    *,
    iso: str | None = None,
    poweroff: list[str] | None = None,
) -> int:
    """Start the console program of guest ``guest``; its console appears at ``device`` (a
    symbolic link to the pseudo-terminal's daemon side). ``poweroff`` is the argument vector
    run when the guest powers off. Returns the program's process id once the device exists."""
    stop_console(pidfile, device)
    os.makedirs(os.path.dirname(os.path.abspath(device)), exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(pidfile)), exist_ok=True)
    argv = [sys.executable, "-m", "sysadmd.simulator.guestconsole"]
    if iso:
        argv += ["--iso", iso]
    argv += ["--", guest, device, pidfile, *(poweroff or [])]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    # The device exists before the start command returns, so that whoever sees the guest
    # running finds its console.
    deadline = time.monotonic() + 5.0
    while not os.path.lexists(device) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.01)
    return process.pid


def stop_console(pidfile: str, device: str) -> None:
    """End the console program recorded in ``pidfile`` (if any) and remove its device."""
    pid = _read_pid(pidfile)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(device)


def iohyve_console(root: str, guest: str, con: str) -> tuple[str, str]:
    """The device (``<root>/dev/<con>B``, standing for ``/dev/<con>B``) and pid file of
    iohyve guest ``guest`` whose ``con`` property is ``con``."""
    return (
        os.path.join(root, "dev", f"{con}B"),
        os.path.join(root, "console", f"{guest}.pid"),
    )


def _read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def boot_transcript(guest: str, iso: str | None) -> list[str]:
    """The lines a FreeBSD guest prints from the loader to the login prompt."""
    source = f"cd9660:/dev/cd0 ({iso})" if iso else "zfs:zroot/ROOT/default"
    lines = [
        "Consoles: serial port  ",
        "BIOS drive C: is disk0",
        "BIOS 2048kB/3143680kB available memory",
        "",
        "FreeBSD/x86 bootstrap loader, Revision 1.1",
        f"Loading /boot/defaults/loader.conf from {source}",
        "/boot/kernel/kernel text=0x1a4c8d8 data=0x1e8 data=0x1d0c44",
        "Booting...",
        "Copyright (c) 1992-2024 The FreeBSD Project.",
        "FreeBSD 14.1-RELEASE releng/14.1-n267679-10e31f0946d8 GENERIC amd64",
        "CPU: Intel(R) Xeon(R) CPU (2400.00-MHz K8-class CPU)",
        "real memory  = 1073741824 (1024 MB)",
        "uart0: <16550 or compatible> port 0x3f8-0x3ff irq 4 on acpi0",
        "uart0: console (115200,n,8,1)",
        "vtbd0: <VirtIO Block Adapter> on virtio_pci0",
    ]
    if iso:
        lines += [
            f"cd0: <BHYVE DVD-ROM> Removable CD-ROM SCSI device ({iso})",
            f"Mounting from cd9660:/dev/iso9660/{iso.removesuffix('.iso')} ...",
        ]
    else:
        lines.append("Trying to mount root from zfs:zroot/ROOT/default []...")
    lines += [
        "Starting devd.",
        "Starting sshd.",
        "Starting cron.",
        "",
        f"FreeBSD/amd64 ({guest}) (ttyu0)",
        "",
    ]
    return lines


class Guest:
    """The guest's side of the console: a tiny system reading lines."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd = fd
        self._line = bytearray()
        self._logged_in = False
        self.powered_off = False

    def write(self, text: str) -> None:
        data = text.replace("\n", "\r\n").encode()
        while data:
            try:
                data = data[os.write(self._fd, data) :]
            except BlockingIOError:
                select.select([], [self._fd], [], 1.0)

    def prompt(self) -> None:
        self.write(f"root@{self.name}:~ # " if self._logged_in else "login: ")

    def feed(self, data: bytes) -> None:
        """Take typed bytes: echo them, edit the line, run it at Enter."""
        for value in data:
            byte = bytes([value])
            if byte in (b"\r", b"\n"):
                self.write("\n")
                line = self._line.decode(errors="replace").strip()
                self._line.clear()
                self._run(line)
                if self.powered_off:
                    return
            elif byte in _BACKSPACE:
                if self._line:
                    self._line.pop()
                    self.write("\b \b")
            elif byte == b"\x03":
                self._line.clear()
                self.write("^C\n")
                self.prompt()
            elif value >= 0x20:
                self._line += byte
                self.write(byte.decode(errors="replace"))

    def _run(self, line: str) -> None:
        if not self._logged_in:
            if line == "root":
                self._logged_in = True
                self.write(f"FreeBSD 14.1-RELEASE (GENERIC) #0\n\nWelcome to {self.name}!\n\n")
            elif line:
                self.write("Login incorrect\n")
            self.prompt()
            return
        words = line.split()
        if not words:
            pass
        elif words == ["uname", "-a"]:
            self.write(f"FreeBSD {self.name} 14.1-RELEASE FreeBSD 14.1-RELEASE amd64\n")
        elif words == ["uname"]:
            self.write("FreeBSD\n")
        elif words[0] == "jot" and len(words) == 2 and words[1].isdigit():
            # FreeBSD's jot(1): the numbers 1 to N, one a line (plenty of output at once).
            count = int(words[1])
            for start in range(1, count + 1, 10000):
                end = min(count, start + 9999)
                self.write("".join(f"{n}\n" for n in range(start, end + 1)))
        elif words[0] == "echo":
            self.write(line[4:].strip() + "\n")
        elif words == ["poweroff"]:
            self.write("Shutdown NOW!\npoweroff: [pid 1]\n\nThe operating system has halted.\n")
            self.powered_off = True
            return
        elif words in (["exit"], ["logout"]):
            self._logged_in = False
            self.write(f"\nFreeBSD/amd64 ({self.name}) (ttyu0)\n\n")
        else:
            self.write(f"{words[0]}: Command not found.\n")
        self.prompt()


def _publish(device: str, pidfile: str, slave: int) -> None:
    """Link ``device`` to the daemon's side of the terminal and record this program."""
    link = device + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.symlink(os.ttyname(slave), link)
    os.replace(link, device)
    with open(pidfile + ".new", "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(pidfile + ".new", pidfile)


def _read_master(master: int) -> bytes:
    try:
        return os.read(master, 4096)
    except BlockingIOError:
        return b""
    except OSError as e:
        # Linux: EIO while nobody holds the other side (this program always does).
        if e.errno != errno.EIO:
            raise
        return b""


def _serve(system: Guest, master: int, pidfile: str, stopped: list[bool]) -> None:
    """Read what is typed until the guest powers off, is stopped, or loses its pid file."""
    next_check = time.monotonic() + _WATCH_INTERVAL
    while not stopped[0]:
        try:
            ready, _, _ = select.select([master], [], [], _WATCH_INTERVAL)
        except InterruptedError:
            continue
        if ready:
            system.feed(_read_master(master))
            if system.powered_off:
                return
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + _WATCH_INTERVAL
            if _read_pid(pidfile) != os.getpid():
                return


def run(guest: str, device: str, pidfile: str, iso: str | None, poweroff: list[str]) -> int:
    """Play guest ``guest`` on a new pseudo-terminal until it powers off or is stopped."""
    master, slave = os.openpty()
    # The daemon's side is a raw line: what the guest sends arrives unchanged. This program
    # keeps the daemon's side open too, so output waits in the terminal while nobody reads.
    tty.setraw(slave)
    os.set_blocking(master, False)
    _publish(device, pidfile, slave)
    stopped = [False]

    def stop(signum: int, frame: object) -> None:
        stopped[0] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    system = Guest(guest, master)
    for line in boot_transcript(guest, iso):
        system.write(line + "\n")
    system.prompt()
    _serve(system, master, pidfile, stopped)
    if _read_pid(pidfile) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pidfile)
        with contextlib.suppress(FileNotFoundError):
            if os.path.realpath(device) == os.ttyname(slave):
                os.unlink(device)
    if system.powered_off and poweroff:
        subprocess.run(poweroff, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    # Let the daemon read the last words before the terminal goes away.
    time.sleep(0.2)
    os.close(master)
    os.close(slave)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guestconsole")
    parser.add_argument("guest")
    parser.add_argument("device")
    parser.add_argument("pidfile")
    parser.add_argument("--iso")
    parser.add_argument("poweroff", nargs="*")
    options = parser.parse_args(argv)
    return run(options.guest, options.device, options.pidfile, options.iso, options.poweroff)


if __name__ == "__main__":
    sys.exit(main())
