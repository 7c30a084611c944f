"""The container side of a pod the test kubelet runs: a root of its own, volumes, a user, then exec.

`python -m keychain.testing.podexec SPEC.json` is started as root by `ip netns exec <pod ns>`
(which already gave it a mount namespace of its own, with the pod's hosts file on /etc/hosts and
the namespace's /sys). It then does what a container runtime does, with this machine's files as
the image:

- a UTS namespace whose hostname is the pod's name;
- a new root on a tmpfs with the directories the image made (`image_dirs`): every top-level directory of the machine bind-mounted (read-only when
  the container asks for `readOnlyRootFilesystem`); directories other users cannot enter (such
  as /root) stay closed except for the paths the image needs (`expose`, e.g. the interpreter);
  fresh /proc, /run (tmpfs) and /dev;
- each volume bind-mounted on its mount path (a claim's directory on /data, an emptyDir on /tmp,
  the service account's token directory on /var/run/secrets/kubernetes.io/serviceaccount);
- chroot, chdir to the working directory, drop to the pod's uid/gid (no capabilities are left),
  and exec the container's argv with exactly its environment.

Every mount lives in the pod's own mount namespace and goes away with its last process. Written
by hand: the container runtimes that do this (runc, crun, bubblewrap) are not Python packages and
would need an image on disk.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

# Top-level directories the new root gets fresh instead of from the machine.
_FRESH = {"proc", "sys", "dev", "run", "tmp", "lost+found"}

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _bind(source: str, target: str, *, read_only: bool) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)


def _open_to_others(path: str) -> bool:
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def _mkdirs_on_new_root(root: Path, path: str) -> Path:
    target = root / path.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    return target


def build_root(spec: dict[str, Any]) -> Path:
    """Mount the pod's root under spec['root'] and return it."""
    root = Path(spec["root"])
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", str(root), "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    read_only = bool(spec.get("read_only_root"))
    closed: list[str] = []
    for entry in sorted(os.listdir("/")):
        source = f"/{entry}"
        target = root / entry
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        elif not os.path.isdir(source) or entry in _FRESH:
            continue
        elif not _open_to_others(source):
            target.mkdir()
            closed.append(source)
        else:
            target.mkdir()
            _bind(source, str(target), read_only=read_only)
    for path in spec.get("expose", []):
        if any(path == c or path.startswith(c + "/") for c in closed):
            _bind(path, str(_mkdirs_on_new_root(root, path)), read_only=True)
    (root / "proc").mkdir()
    _mount("proc", str(root / "proc"), "proc", MS_NOSUID | MS_NODEV)
    (root / "sys").mkdir()
    _bind("/sys", str(root / "sys"), read_only=True)
    (root / "dev").mkdir()
    _bind("/dev", str(root / "dev"), read_only=False)
    (root / "run").mkdir()
    _mount("tmpfs", str(root / "run"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)  # mkdir applies the umask
    for made in spec.get("image_dirs", []):  # what the image's build made (`mkdir /data && chown`)
        path = _mkdirs_on_new_root(root, made["path"])
        os.chown(path, made["uid"], made["gid"])
    for volume in spec.get("mounts", []):
        # Resolve the mount path inside the new root (/var/run is a link to /run on most systems).
        target = Path(os.path.realpath(root / volume["path"].lstrip("/")))
        if not str(target).startswith(str(root)):
            target = root / str(target).lstrip("/")
        if os.path.isdir(volume["source"]):
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():  # a file (the image's /etc/passwd) on a path that has none yet
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        _bind(volume["source"], str(target), read_only=bool(volume.get("read_only")))
    # The image's files under a directory the pod gets fresh (a checkout under /tmp, say) are bound
    # last, over the pod's own /tmp and any volume mounted there, or the pod could not find them.
    for path in spec.get("expose", []):
        if Path(path).parts[1:2] and Path(path).parts[1] in _FRESH:
            _bind(path, str(_mkdirs_on_new_root(root, path)), read_only=True)
    return root


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m keychain.testing.podexec SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    os.unshare(os.CLONE_NEWUTS)
    socket.sethostname(spec["hostname"])
    root = build_root(spec)
    os.chroot(root)
    os.chdir(spec.get("workdir") or "/")
    uid, gid = spec.get("uid"), spec.get("gid")
    if gid is not None:
        os.setgroups(spec.get("groups", []))
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    env = spec["env"]
    argv_ = spec["argv"]
    os.execvpe(argv_[0], argv_, env)  # searches the container's own PATH
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
