"""`FileStorage`: the coordinator's Raft log, durable on local disk (the `RaftStorage` contract).

Why by hand and not RocksDB: the Raft log needs exactly an append-only file with a checksum per
record, one fsync per batch, a durable truncate of a conflicting suffix and atomic small files for
the hard state and the snapshot. That is a few hundred lines whose crash behaviour can be read and
tested directly (torn tail versus corruption in the middle, crash mid-compaction), where RocksDB
would hide it behind its own WAL and add a column-family layout to keep in step with the snapshot.

Layout of the directory:

    meta                 format header + the member id the log belongs to (written once)
    hardstate            term, vote, commit (replaced atomically)
    snapshot             snapshot metadata + data + the generation of the live segment (atomic)
    log-<gen>.seg        the live segment: header (base index) + records of entries base, base+1, ...

Every file starts with the 16-byte header b"KEYCHAIN" + kind + format version. A record is
u32 length + u32 CRC32 (of the length and the payload) + payload (u64 index, u64 term, u8 type, data).
Small files are written as temp file + fsync + rename + fsync of the directory, so a reader sees
either the old or the new version, never a mix.

Compaction and `apply_snapshot` write a new segment (generation + 1) holding the retained entries,
then the snapshot naming that generation (the commit point), then delete the old segment. On open
the snapshot decides which segment is live and any other segment is a leftover of an interrupted
compaction: a crash at any point leaves either the old pair or the new pair, both consistent.
The retained entries are rewritten on every compaction; the coordinator keeps only a short tail
after its snapshot, so that copy is small.

Recovery: a bad record with no valid record anywhere after it is a torn tail (a crash during an
unsynced append); it is reported and cut away. A bad record followed by a valid one, a file with a
foreign header, a missing live segment, or a hard state whose commit index lies beyond the log is
`StorageCorrupt` and the coordinator must not start. Known limit: if the disk persisted the pages of
one unsynced batch out of order, a hole followed by a valid record is also reported as corruption,
never silently accepted.

All retained entries are also held in memory (a `MemoryStorage`, which keeps the semantics of the
contract in one place), so reads never touch the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from keychain.coordinator.log import Entry, EntryType, HardState, MemoryStorage, Snapshot, StorageError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAGIC = b"KEYCHAIN"
_FILE_HEADER = struct.Struct("<8s4sHH")  # magic, kind, version, reserved
_SEG_BASE = struct.Struct("<QI4x")  # base index, CRC32 of the base
_FRAME = struct.Struct("<II")  # payload length, CRC32 of length + payload
_ENTRY = struct.Struct("<QQB")  # index, term, type
_SNAP = struct.Struct("<QQQ")  # index, term, segment generation
_HARD = struct.Struct("<QQ")  # term, commit
_U32 = struct.Struct("<I")
_SEG_HEADER_SIZE = _FILE_HEADER.size + _SEG_BASE.size
MAX_RECORD = 256 << 20  # larger lengths are garbage, not entries
_FLUSH_AT = 4 << 20  # write buffered records early (no fsync) past this size

_KIND_META = b"META"
_KIND_HARD = b"HARD"
_KIND_SNAP = b"SNAP"
_KIND_LOG = b"LOG "

META_FILE = "meta"
HARDSTATE_FILE = "hardstate"
SNAPSHOT_FILE = "snapshot"
_TMP_SUFFIX = ".tmp"


class StorageCorrupt(StorageError):
    """The files on disk are damaged or not ours; the coordinator must refuse to start."""


class MemberMismatch(StorageError):
    """The directory holds the log of another coordinator member."""


def segment_name(generation: int) -> str:
    return f"log-{generation:016x}.seg"


def _segment_generation(name: str) -> int | None:
    if not (name.startswith("log-") and name.endswith(".seg")):
        return None
    try:
        return int(name[4:-4], 16)
    except ValueError:
        return None


def _crc(*parts: bytes) -> int:
    value = 0
    for part in parts:
        value = zlib.crc32(part, value)
    return value


def _file_header(kind: bytes) -> bytes:
    return _FILE_HEADER.pack(_MAGIC, kind, FORMAT_VERSION, 0)


def _check_header(path: Path, blob: bytes, kind: bytes) -> None:
    if len(blob) < _FILE_HEADER.size:
        raise StorageCorrupt(f"{path}: offset 0: file too short for a header ({len(blob)} bytes)")
    magic, got_kind, version, _ = _FILE_HEADER.unpack_from(blob)
    if magic != _MAGIC or got_kind != kind:
        raise StorageCorrupt(f"{path}: offset 0: not a KeychainDB {kind.decode().strip()} file")
    if version != FORMAT_VERSION:
        raise StorageCorrupt(f"{path}: offset 0: format version {version}, this build reads {FORMAT_VERSION}")


def _frame(payload: bytes) -> bytes:
    length = _U32.pack(len(payload))
    return length + _U32.pack(_crc(length, payload)) + payload


def _pack_strs(items: tuple[str, ...]) -> bytes:
    out = [_U32.pack(len(items))]
    for item in items:
        raw = item.encode()
        out += [_U32.pack(len(raw)), raw]
    return b"".join(out)


def _unpack_strs(blob: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    (count,) = _U32.unpack_from(blob, pos)
    pos += 4
    items = []
    for _ in range(count):
        (n,) = _U32.unpack_from(blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise ValueError("string runs past the end")
        items.append(blob[pos : pos + n].decode())
        pos += n
    return tuple(items), pos


def _encode_entry(e: Entry) -> bytes:
    if not isinstance(e.data, bytes | bytearray):
        raise StorageError(f"entry {e.index}: data must be bytes, not {type(e.data).__name__}")
    try:
        payload = _ENTRY.pack(e.index, e.term, EntryType(e.type)) + bytes(e.data)
    except (struct.error, ValueError) as exc:
        raise StorageError(f"entry {e.index}: cannot encode ({exc})") from exc
    if len(payload) > MAX_RECORD:
        raise StorageError(f"entry {e.index}: {len(payload)} bytes exceeds the record limit {MAX_RECORD}")
    return _frame(payload)


def _decode_frame(blob: bytes | memoryview, pos: int, min_length: int = _ENTRY.size) -> bytes | None:
    """The payload of the record at pos, or None if none is complete and intact there."""
    if pos + _FRAME.size > len(blob):
        return None
    length, crc = _FRAME.unpack_from(blob, pos)
    end = pos + _FRAME.size + length
    if length < min_length or length > MAX_RECORD or end > len(blob):
        return None
    payload = bytes(blob[pos + _FRAME.size : end])
    if _crc(_U32.pack(length), payload) != crc:
        return None
    return payload


def _valid_record_after(blob: bytes, start: int) -> int | None:
    """Offset of the first intact record at or after start, scanning every byte offset."""
    view = memoryview(blob)
    for pos in range(start, len(blob) - _FRAME.size - _ENTRY.size + 1):
        if _decode_frame(view, pos) is not None:
            return pos
    return None


def _fsync_dir(dir_fd: int) -> None:
    os.fsync(dir_fd)


class FileStorage:
    """RaftStorage on disk; same semantics as `MemoryStorage`, durable once `sync()` returns.

    `append` buffers records and `set_hard_state` only remembers; `sync` writes the records, fsyncs
    the segment, then replaces the hard state (log first, so a durable commit index never points
    past the durable log). Truncating a conflicting suffix, `compact` and `apply_snapshot` are
    durable when they return. After any I/O error the object refuses further changes: a failed
    fsync cannot be retried safely.
    """

    def __init__(self, path: str | os.PathLike[str], member_id: str) -> None:
        if not member_id:
            raise ValueError("member_id must be a non-empty string")
        self.path = Path(path)
        self.member_id = member_id
        self._failed: BaseException | None = None
        self._seg_fd = -1
        self.path.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StorageError(f"{self.path}: in use by another process") from None
            self._recover()
        except BaseException:
            self.close()
            raise

    # -- reads (served from memory) ------------------------------------------------------------

    def hard_state(self) -> HardState:
        return self._mem.hard_state()

    def snapshot(self) -> Snapshot:
        return self._mem.snapshot()

    def first_index(self) -> int:
        return self._mem.first_index()

    def last_index(self) -> int:
        return self._mem.last_index()

    def term(self, index: int) -> int:
        return self._mem.term(index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        return self._mem.entries(lo, hi, max_bytes)

    # -- writes --------------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        self._check_usable()
        if not entries:
            return
        records = [_encode_entry(e) for e in entries]
        first = entries[0].index
        had_last = self._mem.last_index()
        self._mem.append(entries)  # validates (consecutive, no gap, not compacted) before changing
        with self._failing_on_io_error():
            if first <= had_last:
                self._truncate_from(first)
            for rec in records:
                self._offsets.append(self._end)
                self._pending += rec
                self._end += len(rec)
            if len(self._pending) >= _FLUSH_AT:
                self._write_pending()

    def set_hard_state(self, hs: HardState) -> None:
        self._check_usable()
        self._mem.set_hard_state(hs)
        self._hard_dirty = True

    def sync(self) -> None:
        self._check_usable()
        with self._failing_on_io_error():
            if self._pending or self._seg_dirty:
                self._write_pending()
                os.fsync(self._seg_fd)
                self._seg_dirty = False
            if self._hard_dirty:
                hs = self._mem.hard_state()
                payload = _HARD.pack(hs.term, hs.commit) + hs.vote.encode()
                self._write_atomic(HARDSTATE_FILE, _KIND_HARD, payload)
                self._hard_dirty = False

    def compact(self, snap: Snapshot) -> None:
        self._check_usable()
        self._mem.compact(snap)  # validates before changing
        with self._failing_on_io_error():
            self._install(snap)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._check_usable()
        self._mem.apply_snapshot(snap)
        with self._failing_on_io_error():
            self._install(snap)

    def close(self) -> None:
        if self._seg_fd >= 0:
            os.close(self._seg_fd)
            self._seg_fd = -1
        if self._dir_fd >= 0:
            os.close(self._dir_fd)  # also releases the lock
            self._dir_fd = -1

    def __enter__(self) -> FileStorage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageError(f"{self.path}: storage failed earlier and refuses changes: {self._failed}")
        if self._seg_fd < 0:
            raise StorageError(f"{self.path}: storage is closed")

    @contextlib.contextmanager
    def _failing_on_io_error(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            self._failed = exc
            log.error("event=storage_failed path=%s error=%r", self.path, exc)
            raise StorageError(f"{self.path}: I/O error: {exc}") from exc

    def _write_pending(self) -> None:
        view = memoryview(self._pending)
        pos = self._written
        while view:
            n = os.pwrite(self._seg_fd, view, pos)
            view = view[n:]
            pos += n
        self._written = pos
        self._pending = bytearray()
        self._seg_dirty = True

    def _truncate_from(self, index: int) -> None:
        """Drop the records of entries >= index (already dropped in memory)."""
        cut = self._offsets[index - self._base]
        del self._offsets[index - self._base :]
        self._end = cut
        if cut >= self._written:
            del self._pending[cut - self._written :]
            return
        self._pending = bytearray()
        os.ftruncate(self._seg_fd, cut)
        os.fsync(self._seg_fd)
        self._written = cut
        log.debug("event=truncated path=%s index=%d offset=%d", self._seg_path(), index, cut)

    def _write_atomic(self, name: str, kind: bytes, payload: bytes) -> None:
        self._write_file_atomic(name, _file_header(kind) + _frame(payload))

    def _write_file_atomic(self, name: str, blob: bytes) -> None:
        tmp = self.path / (name + _TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path / name)
        _fsync_dir(self._dir_fd)

    def _seg_path(self) -> Path:
        return self.path / segment_name(self._gen)

    def _install(self, snap: Snapshot) -> None:
        """Make the memory state durable as a new segment + snapshot pair, then drop the old segment."""
        old_gen, gen = self._gen, self._gen + 1
        kept = self._mem.entries(self._mem.first_index(), self._mem.last_index() + 1)
        base = snap.index + 1
        body = bytearray(_segment_header(base))
        offsets = []
        for e in kept:
            offsets.append(len(body))
            body += _encode_entry(e)
        self._write_file_atomic(segment_name(gen), bytes(body))  # 1: new segment, not yet live
        payload = (
            _SNAP.pack(snap.index, snap.term, gen)
            + _pack_strs(snap.voters)
            + _pack_strs(snap.learners)
            + snap.data
        )
        self._write_atomic(SNAPSHOT_FILE, _KIND_SNAP, payload)  # 2: commit point
        os.close(self._seg_fd)
        self._seg_fd = -1
        (self.path / segment_name(old_gen)).unlink(missing_ok=True)  # 3: old segment is garbage
        _fsync_dir(self._dir_fd)
        self._gen, self._base = gen, base
        self._seg_fd = os.open(self._seg_path(), os.O_RDWR)
        self._offsets = offsets
        self._written = self._end = len(body)
        self._pending = bytearray()
        self._seg_dirty = False
        log.debug("event=snapshot_installed path=%s index=%d generation=%d", self.path, snap.index, gen)

    def _read_framed(self, name: str, kind: bytes) -> bytes | None:
        path = self.path / name
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        _check_header(path, blob, kind)
        pos = _FILE_HEADER.size
        payload = _decode_frame(blob, pos, min_length=0)
        if payload is None or len(blob) != pos + _FRAME.size + len(payload):
            raise StorageCorrupt(f"{path}: offset {pos}: truncated, wrong length or checksum mismatch")
        return payload

    def _recover(self) -> None:
        names = set(os.listdir(self.path))
        if META_FILE not in names:
            self._create(names)
            names = set(os.listdir(self.path))
        meta = self._read_framed(META_FILE, _KIND_META)
        if meta is None:
            raise StorageCorrupt(f"{self.path / META_FILE}: offset 0: missing")
        owner = meta.decode(errors="replace")
        if owner != self.member_id:
            raise MemberMismatch(
                f"{self.path}: holds the log of member {owner!r}, not {self.member_id!r}; "
                "refusing to open another member's data"
            )
        for name in names:
            if name.endswith(_TMP_SUFFIX):
                (self.path / name).unlink()  # an atomic write that never reached its rename

        snap, gen = self._load_snapshot()
        hard = self._load_hard_state()
        for name in names:
            other = _segment_generation(name)
            if other is not None and other != gen:
                (self.path / name).unlink()
                log.info("event=removed_stale_segment path=%s generation=%d", self.path / name, other)
        _fsync_dir(self._dir_fd)

        self._gen, self._base = gen, snap.index + 1
        seg_path = self._seg_path()
        if not seg_path.exists():
            raise StorageCorrupt(f"{seg_path}: offset 0: the live log segment is missing")
        entries, offsets, end = self._scan_segment(seg_path)
        self._seg_fd = os.open(seg_path, os.O_RDWR)
        if end < seg_path.stat().st_size:
            os.ftruncate(self._seg_fd, end)
            os.fsync(self._seg_fd)
        self._offsets = offsets
        self._written = self._end = end
        self._pending = bytearray()
        self._seg_dirty = False
        self._hard_dirty = False
        self._mem = MemoryStorage(hard, snap, entries)
        if hard.commit > self._mem.last_index():
            raise StorageCorrupt(
                f"{self.path / HARDSTATE_FILE}: offset {_FILE_HEADER.size}: commit index {hard.commit} "
                f"is beyond the last log index {self._mem.last_index()}"
            )
        log.debug(
            "event=opened path=%s member=%s first=%d last=%d term=%d commit=%d",
            self.path, self.member_id, self._mem.first_index(), self._mem.last_index(), hard.term, hard.commit,
        )  # fmt: skip

    def _create(self, names: set[str]) -> None:
        """Initialise an empty directory (or finish an interrupted initialisation)."""
        leftovers = {n for n in names if n.endswith(_TMP_SUFFIX)} | ({segment_name(0)} & names)
        if names - leftovers:
            raise StorageCorrupt(
                f"{self.path}: offset 0: not a KeychainDB raft log directory "
                f"(no {META_FILE} file; found {', '.join(sorted(names)[:5])})"
            )
        seg0 = self.path / segment_name(0)
        if seg0.exists() and seg0.stat().st_size > _SEG_HEADER_SIZE:
            raise StorageCorrupt(f"{seg0}: offset 0: log data present but no {META_FILE} file")
        for name in leftovers:
            (self.path / name).unlink()
        self._write_file_atomic(segment_name(0), _segment_header(1))
        self._write_atomic(META_FILE, _KIND_META, self.member_id.encode())  # creation's commit point
        log.info("event=created path=%s member=%s", self.path, self.member_id)

    def _load_snapshot(self) -> tuple[Snapshot, int]:
        payload = self._read_framed(SNAPSHOT_FILE, _KIND_SNAP)
        if payload is None:
            return Snapshot(), 0
        try:
            index, term, gen = _SNAP.unpack_from(payload)
            voters, pos = _unpack_strs(payload, _SNAP.size)
            learners, pos = _unpack_strs(payload, pos)
        except (struct.error, ValueError) as exc:
            raise StorageCorrupt(f"{self.path / SNAPSHOT_FILE}: offset {_FILE_HEADER.size}: {exc}") from exc
        return Snapshot(index, term, voters, learners, payload[pos:]), gen

    def _load_hard_state(self) -> HardState:
        payload = self._read_framed(HARDSTATE_FILE, _KIND_HARD)
        if payload is None:
            return HardState()
        try:
            term, commit = _HARD.unpack_from(payload)
            vote = payload[_HARD.size :].decode()
        except (struct.error, ValueError) as exc:
            raise StorageCorrupt(f"{self.path / HARDSTATE_FILE}: offset {_FILE_HEADER.size}: {exc}") from exc
        return HardState(term, vote, commit)

    def _scan_segment(self, path: Path) -> tuple[list[Entry], list[int], int]:
        """Entries, their record offsets, and the end of the last intact record."""
        blob = path.read_bytes()
        _check_header(path, blob, _KIND_LOG)
        if len(blob) < _SEG_HEADER_SIZE:
            raise StorageCorrupt(f"{path}: offset {_FILE_HEADER.size}: segment header truncated")
        base, base_crc = _SEG_BASE.unpack_from(blob, _FILE_HEADER.size)
        if _crc(struct.pack("<Q", base)) != base_crc:
            raise StorageCorrupt(f"{path}: offset {_FILE_HEADER.size}: segment header checksum mismatch")
        if base != self._base:
            raise StorageCorrupt(
                f"{path}: offset {_FILE_HEADER.size}: segment starts at index {base}, "
                f"the snapshot ends at {self._base - 1}"
            )
        entries: list[Entry] = []
        offsets: list[int] = []
        view = memoryview(blob)
        pos = _SEG_HEADER_SIZE
        while pos < len(blob):
            payload = _decode_frame(view, pos)
            if payload is None:
                following = _valid_record_after(blob, pos + 1)
                if following is not None:
                    raise StorageCorrupt(
                        f"{path}: offset {pos}: damaged record (entry {base + len(entries)}) "
                        f"followed by an intact record at offset {following}"
                    )
                log.warning(
                    "event=torn_tail path=%s offset=%d dropped_bytes=%d last_index=%d",
                    path, pos, len(blob) - pos, base + len(entries) - 1,
                )  # fmt: skip
                break
            index, term, etype = _ENTRY.unpack_from(payload)
            expected = base + len(entries)
            if index != expected:
                raise StorageCorrupt(f"{path}: offset {pos}: record holds entry {index}, expected {expected}")
            try:
                kind = EntryType(etype)
            except ValueError:
                raise StorageCorrupt(f"{path}: offset {pos}: unknown entry type {etype}") from None
            entries.append(Entry(index, term, kind, payload[_ENTRY.size :]))
            offsets.append(pos)
            pos += _FRAME.size + len(payload)
        return entries, offsets, pos


def _segment_header(base: int) -> bytes:
    return _file_header(_KIND_LOG) + _SEG_BASE.pack(base, _crc(struct.pack("<Q", base)))
