# Copyright 2026 The nova-vtpm-migration Authors
#
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""A guest that checks its own vTPM, built from Debian packages.

:func:`ensure_artifacts` downloads the current Debian cloud kernel
(``linux-image-cloud-amd64``'s dependency, resolved with ``apt-cache``) and
``busybox-static`` with ``apt-get download``, and builds a gzip'd cpio
(newc) initramfs holding busybox, the :data:`INIT_SCRIPT` and the raw TPM2
command files of :func:`tpm_commands`. The result is cached below
``~/.cache/nova-vtpm-migration/guest/``, keyed by both package versions
and a hash of the initramfs content.

The guest's ``init`` talks to ``/dev/tpm0`` with raw TPM2 command bytes:

* at boot, when NV index :data:`NV_INDEX` does not exist (``NV_ReadPublic``
  fails), it defines it (``NV_DefineSpace``, owner auth) and writes a
  random 32-byte nonce (``NV_Write``); then it reads the nonce back
  (``NV_Read``) and extends PCR 16 with it (``PCR_Extend``), once per boot;
* every second it prints one line (see :class:`CheckLine`) on the serial
  console: the NV nonce, PCR 16, the SHA-256 of the public area of the
  ECC P-256 EK created from the TCG default template (``CreatePrimary`` in
  the endorsement hierarchy, then ``FlushContext``), which is the same for
  the same vTPM identity, and every TPM return code.

After a migration the destination's console must show the same nonce, the
same EK hash and PCR 16 = SHA-256(32 zero bytes || nonce)
(:func:`expected_pcr16`); all return codes ``00000000``.
"""

import dataclasses
import fcntl
import gzip
import hashlib
import io
import os
import re
import shutil
import struct
import subprocess
import tempfile

CACHE_ROOT = os.path.join(
    os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
    'nova-vtpm-migration')
KERNEL_META = 'linux-image-cloud-amd64'
BUSYBOX = 'busybox-static'
#: Kernel command line of the guest.
CMDLINE = 'console=ttyS0 quiet panic=-1'
#: The NV index the guest defines (owner range, TPM_HT_NV_INDEX).
NV_INDEX = 0x01500016
NONCE_SIZE = 32
PCR = 16
LINE_TAG = 'VTPMCHECK'
RC_OK = '00000000'

# TPM 2.0 constants (TPM 2.0 Part 2).
_ST_NO_SESSIONS = 0x8001
_ST_SESSIONS = 0x8002
_RH_OWNER = 0x40000001
_RH_ENDORSEMENT = 0x4000000B
_RS_PW = 0x40000009
_ALG_SHA256 = 0x000B
_ALG_ECC = 0x0023
_ALG_AES = 0x0006
_ALG_CFB = 0x0043
_ALG_NULL = 0x0010
_ECC_NIST_P256 = 0x0003
_CC_NV_DEFINE_SPACE = 0x0000012A
_CC_CREATE_PRIMARY = 0x00000131
_CC_NV_WRITE = 0x00000137
_CC_NV_READ = 0x0000014E
_CC_FLUSH_CONTEXT = 0x00000165
_CC_NV_READ_PUBLIC = 0x00000169
_CC_PCR_READ = 0x0000017E
_CC_PCR_EXTEND = 0x00000182
# TPMA_NV: OWNERWRITE | AUTHWRITE | OWNERREAD | AUTHREAD | NO_DA.
_NV_ATTRIBUTES = 0x00000002 | 0x00000004 | 0x00020000 | 0x00040000 \
    | 0x02000000
# TPMA_OBJECT of the TCG EK templates: fixedTPM | fixedParent |
# sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.
_EK_ATTRIBUTES = 0x000300B2
# PolicySecret(TPM_RH_ENDORSEMENT): the EK templates' authPolicy.
_EK_POLICY = bytes.fromhex(
    '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa')


def _command(tag: int, code: int, body: bytes) -> bytes:
    return struct.pack('>HII', tag, 10 + len(body), code) + body


def _pw_session() -> bytes:
    """An authorization area with one empty password session."""
    session = struct.pack('>IHBH', _RS_PW, 0, 0, 0)
    return struct.pack('>I', len(session)) + session


def _tpm2b(data: bytes) -> bytes:
    return struct.pack('>H', len(data)) + data


def ek_template() -> bytes:
    """TPMT_PUBLIC of the TCG default ECC NIST P-256 EK (template L-2)."""
    return (struct.pack('>HHI', _ALG_ECC, _ALG_SHA256, _EK_ATTRIBUTES)
            + _tpm2b(_EK_POLICY)
            + struct.pack('>HHHHHH', _ALG_AES, 128, _ALG_CFB, _ALG_NULL,
                          _ECC_NIST_P256, _ALG_NULL)
            + _tpm2b(bytes(32)) + _tpm2b(bytes(32)))


def tpm_commands() -> dict[str, bytes]:
    """The raw TPM2 commands the guest's init sends, by file name.

    ``*.head`` files are followed by run-time bytes: ``nv_write.head`` by
    the nonce and ``nv_write.tail``, ``pcr_extend.head`` by the nonce (the
    SHA-256 digest to extend), ``flush.head`` by the handle to flush.
    """
    nv_public = struct.pack('>IHI', NV_INDEX, _ALG_SHA256, _NV_ATTRIBUTES) \
        + _tpm2b(b'') + struct.pack('>H', NONCE_SIZE)
    write_head = _command(
        _ST_SESSIONS, _CC_NV_WRITE,
        struct.pack('>II', _RH_OWNER, NV_INDEX) + _pw_session()
        + struct.pack('>H', NONCE_SIZE) + bytes(NONCE_SIZE)
        + struct.pack('>H', 0))
    extend_head = _command(
        _ST_SESSIONS, _CC_PCR_EXTEND,
        struct.pack('>I', PCR) + _pw_session()
        + struct.pack('>IH', 1, _ALG_SHA256) + bytes(32))
    flush_head = _command(_ST_NO_SESSIONS, _CC_FLUSH_CONTEXT, bytes(4))
    pcr_select = bytes([0, 0, 0])
    pcr_select = bytes(b | (1 << (PCR % 8)) if i == PCR // 8 else b
                       for i, b in enumerate(pcr_select))
    return {
        'nv_read_public.bin': _command(
            _ST_NO_SESSIONS, _CC_NV_READ_PUBLIC, struct.pack('>I', NV_INDEX)),
        'nv_define.bin': _command(
            _ST_SESSIONS, _CC_NV_DEFINE_SPACE,
            struct.pack('>I', _RH_OWNER) + _pw_session() + _tpm2b(b'')
            + _tpm2b(nv_public)),
        # The nonce goes between head and tail (its size is in the head).
        'nv_write.head': write_head[:-NONCE_SIZE - 2],
        'nv_write.tail': write_head[-2:],
        'nv_read.bin': _command(
            _ST_SESSIONS, _CC_NV_READ,
            struct.pack('>II', _RH_OWNER, NV_INDEX) + _pw_session()
            + struct.pack('>HH', NONCE_SIZE, 0)),
        'pcr_extend.head': extend_head[:-32],
        'pcr_read.bin': _command(
            _ST_NO_SESSIONS, _CC_PCR_READ,
            struct.pack('>IHB', 1, _ALG_SHA256, 3) + pcr_select),
        'ek_create.bin': _command(
            _ST_SESSIONS, _CC_CREATE_PRIMARY,
            struct.pack('>I', _RH_ENDORSEMENT) + _pw_session()
            + _tpm2b(struct.pack('>HH', 0, 0)) + _tpm2b(ek_template())
            + _tpm2b(b'') + struct.pack('>I', 0)),
        'flush.head': flush_head[:-4],
    }


# Response offsets: header 10 bytes (tag, size, rc); NV_Read: parameterSize
# (4), TPM2B size (2), data; PCR_Read: updateCounter (4), selection (10),
# digest count (4), TPM2B size (2), digest; CreatePrimary: handle (4),
# parameterSize (4), TPM2B_PUBLIC size (2), TPMT_PUBLIC.
INIT_SCRIPT = r'''#!/bin/busybox sh
# vTPM self-check of the nova-vtpm-migration real-libvirt tests.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
C=/cmd
R=/tmp/resp
hexat() { od -An -tx1 -j"$2" -N"$3" "$1" | tr -d ' \n'; }
tpm() {
    RC=nodev
    [ -c /dev/tpm0 ] || return
    exec 3<>/dev/tpm0 || return
    dd if="$1" bs=4096 count=1 2>/dev/null >&3
    : > "$2"
    dd bs=4096 count=1 2>/dev/null <&3 > "$2"
    exec 3>&-
    RC=$(hexat "$2" 6 4)
    [ -n "$RC" ] || RC=noresp
}
n=0
while [ ! -c /dev/tpm0 ] && [ $n -lt 30 ]; do sleep 1; n=$((n + 1)); done
echo "VTPMBOOT tpm0=$([ -c /dev/tpm0 ] && echo yes || echo no)"
tpm $C/nv_read_public.bin $R; B1=$RC; B2=-; B3=-
if [ "$B1" != 00000000 ]; then
    tpm $C/nv_define.bin $R; B2=$RC
    dd if=/dev/urandom of=/tmp/nonce bs=32 count=1 2>/dev/null
    cat $C/nv_write.head /tmp/nonce $C/nv_write.tail > /tmp/cmd
    tpm /tmp/cmd $R; B3=$RC
    rm -f /tmp/nonce
fi
tpm $C/nv_read.bin $R; B4=$RC
dd if=$R of=/tmp/nonce bs=1 skip=16 count=32 2>/dev/null
cat $C/pcr_extend.head /tmp/nonce > /tmp/cmd
tpm /tmp/cmd $R; B5=$RC
rm -f /tmp/nonce
seq=0
while true; do
    seq=$((seq + 1))
    tpm $C/nv_read.bin $R; R1=$RC; NV=-
    [ "$R1" = 00000000 ] && NV=$(hexat $R 16 32)
    tpm $C/pcr_read.bin $R; R2=$RC; P=-
    [ "$R2" = 00000000 ] && P=$(hexat $R 30 32)
    tpm $C/ek_create.bin $R; R3=$RC; EK=-; R4=-
    if [ "$R3" = 00000000 ]; then
        SZ=$((0x$(hexat $R 18 2)))
        EK=$(dd if=$R bs=1 skip=20 count=$SZ 2>/dev/null | sha256sum)
        EK=${EK%% *}
        dd if=$R of=/tmp/handle bs=1 skip=10 count=4 2>/dev/null
        cat $C/flush.head /tmp/handle > /tmp/cmd
        tpm /tmp/cmd /tmp/flushresp; R4=$RC
    fi
    echo "VTPMCHECK seq=$seq nv=$NV pcr16=$P ek=$EK" \
        "rc=$R1,$R2,$R3,$R4 boot=$B1,$B2,$B3,$B4,$B5"
    sleep 1
done
'''


# -- console lines -----------------------------------------------------------

_LINE = re.compile(
    r'VTPMCHECK seq=(?P<seq>\d+) nv=(?P<nv>[0-9a-f]{64}|-) '
    r'pcr16=(?P<pcr16>[0-9a-f]{64}|-) ek=(?P<ek>[0-9a-f]{64}|-) '
    r'rc=(?P<rc>[\w,-]+) boot=(?P<boot>[\w,-]+)')


@dataclasses.dataclass(frozen=True)
class CheckLine:
    """One self-check line of the guest.

    ``rc`` are the codes of the per-second commands (NV_Read, PCR_Read,
    CreatePrimary, FlushContext), ``boot`` those of this boot's
    NV_ReadPublic, NV_DefineSpace, NV_Write (``-`` when the index
    existed), NV_Read and PCR_Extend; each is 8 hex digits (``00000000``
    is success) or a word saying why there is none.
    """

    seq: int
    nv: str | None
    pcr16: str | None
    ek: str | None
    rc: tuple[str, ...]
    boot: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """All periodic TPM commands succeeded and gave values."""
        return (all(c == RC_OK for c in self.rc)
                and None not in (self.nv, self.pcr16, self.ek))

    @property
    def pcr_consistent(self) -> bool:
        """PCR 16 holds exactly one extend with the NV nonce."""
        return (self.nv is not None
                and self.pcr16 == expected_pcr16(self.nv))


def expected_pcr16(nonce_hex: str) -> str:
    """PCR 16 after one SHA-256 extend of a reset PCR with the nonce."""
    return hashlib.sha256(bytes(32) + bytes.fromhex(nonce_hex)).hexdigest()


def mismatches(before: CheckLine, after: CheckLine) -> list[str]:
    """What differs between a vTPM's check lines before and after a move.

    Empty when *after* shows the same NV nonce and EK, PCR 16 holds
    exactly the one extend with that nonce, and every return code is
    success.
    """
    problems = []
    for line, when in ((before, 'before'), (after, 'after')):
        if not line.ok:
            problems.append(f'{when}: failed TPM commands or missing '
                            f'values: rc={line.rc} {line}')
        if not line.pcr_consistent:
            problems.append(f'{when}: PCR 16 {line.pcr16} is not '
                            f'sha256(0*32 || nonce {line.nv})')
    if after.nv != before.nv:
        problems.append(f'NV nonce changed: {before.nv} -> {after.nv}')
    if after.ek != before.ek:
        problems.append(f'EK changed: {before.ek} -> {after.ek}')
    if after.pcr16 != before.pcr16:
        problems.append(f'PCR 16 changed: {before.pcr16} -> {after.pcr16}')
    return problems


def parse_line(line: str) -> CheckLine | None:
    """Parse one console line; ``None`` when it is not a check line."""
    match = _LINE.search(line)
    if match is None:
        return None

    def value(name: str) -> str | None:
        text = match.group(name)
        return None if text == '-' else text

    return CheckLine(seq=int(match.group('seq')), nv=value('nv'),
                     pcr16=value('pcr16'), ek=value('ek'),
                     rc=tuple(match.group('rc').split(',')),
                     boot=tuple(match.group('boot').split(',')))


def parse_console(text: str) -> list[CheckLine]:
    """Every check line of a console log, in order."""
    lines = (parse_line(line) for line in text.splitlines())
    return [line for line in lines if line is not None]


# -- initramfs ---------------------------------------------------------------

def _cpio_entry(name: str, mode: int, data: bytes = b'', ino: int = 0,
                rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b'\0'
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
              len(encoded), 0)
    header = b'070701' + b''.join(b'%08x' % f for f in fields)
    out = header + encoded
    out += b'\0' * (-len(out) % 4)
    out += data + b'\0' * (-len(data) % 4)
    return out


def build_initramfs(busybox: str) -> bytes:
    """Return the gzip'd newc cpio initramfs of the self-checking guest.

    :param busybox: path of a statically linked busybox binary.
    """
    with open(busybox, 'rb') as f:
        busybox_data = f.read()
    entries = [('bin', 0o40755, b''), ('cmd', 0o40755, b''),
               ('dev', 0o40755, b''), ('proc', 0o40755, b''),
               ('sys', 0o40755, b''), ('tmp', 0o41777, b''),
               ('bin/busybox', 0o100755, busybox_data),
               ('bin/sh', 0o120777, b'busybox'),
               ('init', 0o100755, INIT_SCRIPT.encode())]
    entries += [(f'cmd/{name}', 0o100644, data)
                for name, data in sorted(tpm_commands().items())]
    archive = io.BytesIO()
    for ino, (name, mode, data) in enumerate(entries, start=1):
        archive.write(_cpio_entry(name, mode, data, ino))
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    archive.write(_cpio_entry('dev/console', 0o20600, ino=len(entries) + 1,
                              rdev=(5, 1)))
    archive.write(_cpio_entry('TRAILER!!!', 0))
    # mtime=0: the same inputs give the same bytes.
    return gzip.compress(archive.getvalue(), mtime=0)


# -- packages and the cache --------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GuestArtifacts:
    """The guest's kernel, initramfs and kernel command line."""

    kernel: str
    initrd: str
    cmdline: str
    key: str


def _run(args: list[str], cwd: str | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def _candidate(package: str) -> str | None:
    for line in _run(['apt-cache', 'policy', package]).splitlines():
        line = line.strip()
        if line.startswith('Candidate:'):
            version = line.split(':', 1)[1].strip()
            return None if version == '(none)' else version
    return None


def _kernel_package() -> str:
    """The versioned cloud kernel package the meta-package depends on."""
    for line in _run(['apt-cache', 'depends', KERNEL_META]).splitlines():
        match = re.match(r'\s*Depends:\s*(linux-image-\S+-cloud-amd64)\s*$',
                         line)
        if match:
            return match.group(1)
    raise RuntimeError(f'apt-cache depends {KERNEL_META}: no versioned '
                       'linux-image-*-cloud-amd64 dependency')


def resolve_packages() -> dict[str, str]:
    """package name -> candidate version of the kernel and busybox.

    Runs ``apt-get update`` once when apt has no candidate yet.
    """
    if _candidate(KERNEL_META) is None or _candidate(BUSYBOX) is None:
        _run(['apt-get', 'update', '-qq'])
    kernel = _kernel_package()
    versions = {kernel: _candidate(kernel), BUSYBOX: _candidate(BUSYBOX)}
    missing = [name for name, v in versions.items() if v is None]
    if missing:
        raise RuntimeError(f'apt has no candidate for {missing}')
    return {name: str(v) for name, v in versions.items()}


def _content_hash() -> str:
    digest = hashlib.sha256(INIT_SCRIPT.encode())
    for name, data in sorted(tpm_commands().items()):
        digest.update(name.encode() + data)
    return digest.hexdigest()[:12]


def _key(versions: dict[str, str]) -> str:
    parts = [f'{name}_{version}' for name, version in sorted(
        versions.items())]
    text = '+'.join(parts) + '+' + _content_hash()
    return re.sub(r'[^A-Za-z0-9._+-]', '_', text)


def _build(versions: dict[str, str], target: str) -> None:
    work = tempfile.mkdtemp(prefix='nvm-guest-')
    try:
        _run(['apt-get', 'download', '-q'] + [
            f'{name}={version}' for name, version in versions.items()],
            cwd=work)
        root = os.path.join(work, 'root')
        for deb in sorted(os.listdir(work)):
            if deb.endswith('.deb'):
                _run(['dpkg-deb', '-x', os.path.join(work, deb), root])
        boot = os.path.join(root, 'boot')
        kernels = [k for k in os.listdir(boot) if k.startswith('vmlinuz-')]
        if len(kernels) != 1:
            raise RuntimeError(f'expected one kernel in {boot}: {kernels}')
        shutil.copyfile(os.path.join(boot, kernels[0]),
                        os.path.join(target, 'vmlinuz'))
        initrd = build_initramfs(os.path.join(root, 'bin', 'busybox'))
        with open(os.path.join(target, 'initrd.img'), 'wb') as f:
            f.write(initrd)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_into(versions: dict[str, str], target: str) -> None:
    tmp = target + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        _build(versions, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, target)


def ensure_artifacts(cache_root: str = CACHE_ROOT) -> GuestArtifacts:
    """Return the guest artifacts, building them on first use.

    Safe against concurrent callers (a lock file in the cache). When apt
    cannot be asked, the newest cached build is used.
    """
    cache = os.path.join(cache_root, 'guest')
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        versions: dict[str, str] | None = None
        try:
            versions = resolve_packages()
            key = _key(versions)
        except (OSError, RuntimeError, subprocess.CalledProcessError):
            builds = sorted(
                (d for d in os.listdir(cache)
                 if not d.startswith('.') and not d.endswith('.tmp')),
                key=lambda d: os.path.getmtime(os.path.join(cache, d)))
            if not builds:
                raise
            key = builds[-1]
        target = os.path.join(cache, key)
        if not os.path.exists(os.path.join(target, 'initrd.img')):
            if versions is None:
                raise RuntimeError(f'no cached guest build {key}')
            try:
                _build_into(versions, target)
            except subprocess.CalledProcessError:
                # Stale apt lists: the mirror no longer has that version.
                _run(['apt-get', 'update', '-qq'])
                versions = resolve_packages()
                key = _key(versions)
                target = os.path.join(cache, key)
                if not os.path.exists(os.path.join(target, 'initrd.img')):
                    _build_into(versions, target)
    return GuestArtifacts(kernel=os.path.join(target, 'vmlinuz'),
                          initrd=os.path.join(target, 'initrd.img'),
                          cmdline=CMDLINE, key=key)
