"""The ISO commands: ``isolist``, ``fetch``/``fetchiso``, ``renameiso`` and ``rmiso``.

On a real host an ISO is the dataset ``<pool>/iohyve/ISO/<name>`` mounted at
``/iohyve/ISO/<name>`` and holding the file ``/iohyve/ISO/<name>/<name>``. Here the dataset is
the directory ``ROOT/iohyve/ISO/<name>``. Messages name the real paths (``/iohyve/...``) and
datasets (``tank/iohyve/...``), never the simulator's root.
"""

from __future__ import annotations

import os
import signal

from sysadmd.simulator import datasets, shell, zfs
from sysadmd.simulator.context import Context, arg
from sysadmd.simulator.state import Store, dataset_busy


def zfs_list_names(ctx: Context, store: Store) -> list[str]:
    """Return the names ``zfs list -H`` prints for the simulated pool, in its (byte) order."""
    return [dataset.name for dataset in datasets.datasets(ctx, store)]


def cmd_isolist(ctx: Context, args: list[str]) -> int:
    """``iohyve isolist``: the title line, then the ISO datasets' names.

    Like the real pipeline (``zfs list -H | grep iohyve/ISO | cut -f1 | cut -d/ -f4 | sed 1d``)
    this lists datasets, not files, and a guest whose name starts with ``ISO`` adds an empty
    line and one line per zvol (``disk0``...).
    """
    ctx.output.out("Listing ISO's...")
    with ctx.root.locked() as store:
        names = zfs_list_names(ctx, store)
    selected = [name for name in names if "iohyve/ISO" in name]
    for name in selected[1:]:
        parts = name.split("/")
        ctx.output.out(parts[3] if len(parts) > 3 else "")
    return 0


def cmd_rmiso(ctx: Context, args: list[str]) -> int:
    """``iohyve rmiso <ISO>``: ``zfs destroy`` the ISO's dataset."""
    name = arg(args, 0)
    if ctx.profile.argument_checks and not name:
        return ctx.usage("rmiso")
    ctx.output.out(f"Deleting {name}...")
    path = ctx.dataset("ISO", name)
    with ctx.root.locked():
        problem = zfs.name_error("open", path, name, changing=False)
        directory = ctx.root.iso_dataset(name)
        if problem is None and not os.path.isdir(directory):
            problem = zfs.error("open", path, zfs.DOES_NOT_EXIST)
        if problem is None and dataset_busy(directory):
            problem = zfs.error("destroy", path, zfs.BUSY)
        if problem is not None:
            ctx.output.err(problem)
            return 1
        import shutil  # noqa: PLC0415

        shutil.rmtree(directory)
    return 0


def _mv_iso_file(ctx: Context, iso: str, new: str) -> None:
    """Run ``mv /iohyve/ISO/<iso>/<iso> /iohyve/ISO/<iso>/<new>`` and print mv's error."""
    source_text = f"/iohyve/ISO/{iso}/{iso}"
    target_text = f"/iohyve/ISO/{iso}/{new}"
    source = os.path.join(ctx.root.iso_dataset(iso), iso)
    target = os.path.join(ctx.root.iso_dataset(iso), new)
    if os.path.isdir(target):
        # mv into an existing directory keeps the source's last name component.
        leaf = shell.basename(source_text)
        target = os.path.join(target, leaf)
        target_text += ("" if target_text.endswith("/") else "/") + leaf
    if not iso:
        # "/iohyve/ISO//" is the ISO directory itself: rename(2) cannot move it below itself.
        ctx.output.err(f"mv: rename {source_text} to {target_text}: Invalid argument")
        return
    if os.path.lexists(source) and os.path.abspath(source) == os.path.abspath(target):
        return
    try:
        os.rename(source, target)
    except OSError as exc:
        ctx.output.err(f"mv: rename {source_text} to {target_text}: {exc.strerror}")


def cmd_renameiso(ctx: Context, args: list[str]) -> int:
    """``iohyve renameiso <ISO> <new>``: rename the file inside the dataset, then the dataset.

    The two steps are not atomic in iohyve and are not here: when the target dataset exists the
    file has already been renamed inside the source dataset when ``zfs rename`` fails.
    """
    iso, new = arg(args, 0), arg(args, 1)
    if ctx.profile.argument_checks and not (iso and new):
        return ctx.usage("renameiso")
    ctx.output.out(f"Renaming ISO {iso} to {new}...")
    source_path, target_path = ctx.dataset("ISO", iso), ctx.dataset("ISO", new)
    with ctx.root.locked():
        # The simulator refuses names that would leave its root before running mv.
        for component, verb, path in ((iso, "open", source_path), (new, "rename to", target_path)):
            unsafe = zfs.unsafe_component(component)
            if unsafe is not None:
                ctx.output.err(zfs.error(verb, path, unsafe))
                return 1
        _mv_iso_file(ctx, iso, new)
        problem = zfs.name_error("open", source_path, iso, changing=False)
        source_dir, target_dir = ctx.root.iso_dataset(iso), ctx.root.iso_dataset(new)
        if problem is None and not os.path.isdir(source_dir):
            problem = zfs.error("open", source_path, zfs.DOES_NOT_EXIST)
        if problem is None and source_path == target_path:
            return 0
        if problem is None:
            problem = zfs.name_error("rename to", target_path, new, changing=True)
        if problem is None and os.path.lexists(target_dir):
            problem = zfs.error("rename to", target_path, zfs.ALREADY_EXISTS)
        if problem is None and dataset_busy(source_dir):
            problem = zfs.error("rename", source_path, zfs.BUSY)
        if problem is not None:
            ctx.output.err(problem)
            return 1
        os.rename(source_dir, target_dir)
    return 0


def _temp_name(directory: str, file_name: str) -> tuple[str, int]:
    """Create ``.fetch.XXXXXX.<file>`` in ``directory`` (:func:`fetch.temp_file`)."""
    from sysadmd.simulator import fetch  # noqa: PLC0415 - loaded by downloads only

    return fetch.temp_file(directory, file_name)


class _Download:
    """One ``fetch`` in progress: where the data goes and the temporary file receiving it."""

    __slots__ = ("destination", "fd", "shown", "temp", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        #: The final file.
        self.destination = ""
        #: The final file as iohyve's host would name it (``/iohyve/ISO/<name>/<file>``).
        self.shown = ""
        #: The temporary file, until it is renamed into place.
        self.temp = ""
        #: Its descriptor; the flock on it marks the dataset as busy.
        self.fd = -1

    def keep(self) -> None:
        """Put the temporary file's bytes under the final name, where fetch(1) wrote them."""
        if self.temp and os.path.lexists(self.temp):
            os.replace(self.temp, self.destination)
        self.temp = ""

    def discard(self) -> None:
        """Delete the temporary file if it was not renamed, and close it."""
        if self.temp and os.path.lexists(self.temp):
            os.unlink(self.temp)
        self.temp = ""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _prepare(ctx: Context, download: _Download, name: str) -> int:
    """Under the state lock: ``zfs create`` the ISO dataset and create the temporary file.

    Return 0 to go on with the transfer, else the command's status.
    """
    from sysadmd.simulator.fetch import output_file_name  # noqa: PLC0415

    path = ctx.dataset("ISO", name)
    with ctx.root.locked():
        problem = zfs.name_error("create", path, name, changing=True)
        dataset_dir = ctx.root.iso_dataset(name)
        if problem is None and os.path.lexists(dataset_dir):
            problem = zfs.error("create", path, zfs.ALREADY_EXISTS)
        elif problem is None:
            os.mkdir(dataset_dir)
        if problem is not None:
            # zfs create fails, but iohyve goes on with the download regardless.
            ctx.output.err(problem)
        if not download.url:
            ctx.output.err("usage: fetch [-146AadFlMmnPpqRrsUv] [-B bytes] [...] URL ...")
            return 1
        if os.path.isdir(dataset_dir):
            file_name = output_file_name(download.url)
            download.destination = os.path.join(dataset_dir, file_name)
            download.shown = f"/iohyve/ISO/{name}/{file_name}"
        else:
            # No dataset (a name ZFS refuses): "fetch -o" writes a plain file of that name,
            # which isolist never shows.
            file_name = name
            download.destination = dataset_dir
            download.shown = f"/iohyve/ISO/{name}"
        download.temp, download.fd = _temp_name(os.path.dirname(download.destination), file_name)
        import fcntl  # noqa: PLC0415

        fcntl.flock(download.fd, fcntl.LOCK_EX)
    return 0


def _receive(ctx: Context, download: _Download) -> int:
    """Transfer the data into the temporary file (no lock held); return fetch's status."""
    from sysadmd.simulator import fetch  # noqa: PLC0415 - loads the network stack

    try:
        source = fetch.open_source(download.url)
    except fetch.FetchError as exc:
        ctx.output.err(f"fetch: {exc}")
        return 1
    try:
        fetch.transfer(source, download.fd, download.url, download.shown, ctx.output)
    except fetch.Truncated as exc:
        ctx.output.err(f"fetch: {exc}")
        # fetch(1) keeps a transfer cut short, with the remote mtime (for a later -r).
        if source.mtime is not None:
            os.utime(download.fd, (source.mtime, source.mtime))
        with ctx.root.locked():
            download.keep()
        return 1
    except fetch.FetchError as exc:
        ctx.output.err(f"fetch: {exc}")
        return 1
    finally:
        source.close()
    if source.mtime is not None:
        os.utime(download.fd, (source.mtime, source.mtime))
    return 0


def _commit(ctx: Context, download: _Download) -> int:
    """Under the state lock: rename the complete file into place."""
    with ctx.root.locked():
        try:
            os.replace(download.temp, download.destination)
        except OSError as exc:
            ctx.output.err(f"fetch: {download.shown}: rename(): {exc.strerror}")
            return 1
        download.temp = ""
    return 0


def cmd_fetch(ctx: Context, args: list[str]) -> int:
    """``iohyve fetch <URL>`` (0.7.5+ ``fetchiso``): create the ISO dataset and download into it.

    The state lock is held only to create the dataset and the temporary file, and again for the
    final rename, so other commands run during the download. The temporary file is locked while
    the download runs, which makes ``rmiso`` and ``renameiso`` of that ISO report a busy dataset.
    What ends up on disk is what fetch(1) leaves, which writes straight into
    ``/iohyve/ISO/<name>/<name>``: a transfer cut short (``appears to be truncated``) or ended by
    SIGTERM leaves its bytes under the ISO's name (fetch keeps them, or is killed); SIGINT and
    other failures delete them; the dataset stays.
    """
    url = arg(args, 0)
    if ctx.profile.argument_checks and not url:
        return ctx.usage("fetchiso")
    if not url:
        # "basename $2" with an empty, unquoted $2 runs basename without an operand.
        ctx.output.err("usage: basename string [suffix]")
        ctx.output.err("       basename [-a] [-s suffix] string [...]")
    name = shell.basename(url) if url else ""
    ctx.output.out(f"Fetching {url}...")
    unsafe = zfs.unsafe_component(name)
    if unsafe is not None:
        ctx.output.err(zfs.error("create", ctx.dataset("ISO", name), unsafe))
        return 1

    from sysadmd.simulator import fetch  # noqa: PLC0415 - loads the signal machinery

    download = _Download(url)
    status = 1
    with fetch.SignalGuard() as guard:
        try:
            status = _prepare(ctx, download, name)
            if status == 0:
                status = _receive(ctx, download)
            if status == 0:
                guard.committing = True
                status = _commit(ctx, download)
        except fetch.Interrupted as interrupted:
            guard.pending = interrupted.signum
            if interrupted.signum != signal.SIGINT:
                # Killed: fetch(1) leaves what it wrote where it wrote it.
                guard.committing = True
                download.keep()
        finally:
            guard.committing = True  # a signal now must not interrupt the clean-up
            download.discard()
    if guard.pending is not None:
        if guard.pending == signal.SIGINT:
            ctx.output.err("fetch: transfer interrupted")
        ctx.terminated = guard.pending
        return 128 + guard.pending
    return status
