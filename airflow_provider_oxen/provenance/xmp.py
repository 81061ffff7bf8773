"""XMP marking: the provenance facts written into a stored image or clip, losslessly.

One packet goes where each container keeps XMP (PNG ``iTXt``, JPEG APP1, WebP ``XMP `` chunk;
MP4/MOV: an appended ``uuid`` box, so no ``stco`` offset moves), everything else copied byte for
byte. A packet already there is replaced, and marking the same file again gives the same bytes
(the transfer's exactly-once skip needs that).

Hand-written: pyexiv2 (GPL-3.0) and exiv2 (GPL-2.0-or-later) do not fit an Apache-2.0 provider,
and exiv2 does not write MP4.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from airflow_provider_oxen.provenance.facts import Provenance

_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_KEYWORD = b"XML:com.adobe.xmp\0"
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\0"
_JPEG_EXTENDED_XMP = b"http://ns.adobe.com/xmp/extension/\0"
_XMP_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
# First boxes of an MP4 or QuickTime file (a QuickTime movie need not start with ``ftyp``).
_BMFF_FIRST = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}
_BLOCK = 256 * 1024
# A marked image is built in memory up to this size, then in a temporary file: a large one
# arrives spooled to disk, and marking must not hold it in memory either.
_IN_MEMORY = 1024 * 1024


def xmp_packet(facts: Provenance) -> bytes:
    """The XMP packet for ``facts`` (UTF-8, no padding; equal facts give equal bytes)."""
    ingredients = "".join(
        f'<rdf:li rdf:parseType="Resource"><stRef:filePath>{escape(i.uri)}</stRef:filePath></rdf:li>'
        for i in facts.ingredients
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        ' xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"'
        ' xmlns:stRef="http://ns.adobe.com/xap/1.0/sType/ResourceRef#"'
        f" Iptc4xmpExt:DigitalSourceType={quoteattr(facts.digital_source_type)}"
        f" Iptc4xmpExt:AISystemUsed={quoteattr(facts.model)}"
        f" xmpMM:DocumentID={quoteattr('oxen:generation:' + facts.generation_id)}"
        f" xmp:CreatorTool={quoteattr(facts.software_agent)}>"
        + (f"<xmpMM:Ingredients><rdf:Bag>{ingredients}</rdf:Bag></xmpMM:Ingredients>" if ingredients else "")
        + '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="r"?>'
    ).encode()


def mark(data: bytes, facts: Provenance) -> bytes | None:
    """``data`` with the XMP packet; None when it is no PNG, JPEG, WebP, MP4 or MOV (or is damaged)."""
    file = io.BytesIO(data)
    return file.getvalue() if mark_file(file, facts) else None


def mark_file(file: IO[bytes], facts: Provenance) -> bool:
    """Mark the file in place, never holding it in memory; False (untouched) for an unknown container."""
    packet = xmp_packet(facts)
    end = file.seek(0, os.SEEK_END)
    file.seek(0)
    head = file.read(12)
    try:
        if len(head) >= 8 and head[4:8] in _BMFF_FIRST:
            return _append_bmff(file, packet)
        if head.startswith(_PNG):
            pieces = _png(file, end, packet)
        elif head.startswith(b"\xff\xd8"):
            pieces = _jpeg(file, end, packet)
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            pieces = _webp(file, end, packet)
        else:
            return False
    except (ValueError, IndexError, struct.error):
        return False  # a damaged file: its checks say so; it is stored as it came
    with tempfile.SpooledTemporaryFile(_IN_MEMORY) as marked:
        for piece in pieces:
            if isinstance(piece, bytes):
                marked.write(piece)
            else:
                _copy(file, marked, *piece)
        size = marked.tell()
        file.seek(0)
        file.truncate(0)
        _copy(marked, file, 0, size)
    return True


# What a marked image is made of: new bytes, or a (start, end) range of the original to copy.
_Piece = bytes | tuple[int, int]


def _at(file: IO[bytes], offset: int, size: int) -> bytes:
    file.seek(offset)
    data = file.read(size)
    if len(data) < size:
        raise ValueError("the file ends early")
    return data


def _copy(source: IO[bytes], target: IO[bytes], start: int, end: int) -> None:
    source.seek(start)
    while start < end:
        block = source.read(min(_BLOCK, end - start))
        if not block:
            raise ValueError("the file ends early")
        target.write(block)
        start += len(block)


def _png(file: IO[bytes], end: int, packet: bytes) -> list[_Piece]:
    body = _PNG_KEYWORD + b"\0\0\0\0" + packet  # uncompressed, no language, no translated keyword
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    out: list[_Piece] = [(0, len(_PNG))]
    pos, inserted = len(_PNG), False
    while pos < end:
        length, kind = struct.unpack(">I4s", _at(file, pos, 8))
        stop = pos + 12 + length
        if stop > end:
            raise ValueError("PNG chunk runs past the end")
        if (
            kind == b"iTXt"
            and length >= len(_PNG_KEYWORD)
            and _at(file, pos + 8, len(_PNG_KEYWORD)) == _PNG_KEYWORD
        ):
            pos = stop  # the old packet
            continue
        if kind == b"IDAT" and not inserted:
            out.append(chunk)
            inserted = True
        out.append((pos, stop))
        pos = stop
        if kind == b"IEND":
            out.append((pos, end))
            break
    if not inserted:
        raise ValueError("PNG without image data")
    return out


def _jpeg(file: IO[bytes], end: int, packet: bytes) -> list[_Piece]:
    payload = _JPEG_XMP + packet
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("XMP packet too large for one JPEG segment")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    lead: list[_Piece] = [(0, 2)]
    rest: list[_Piece] = []
    pos = 2
    while True:
        marker = _at(file, pos, 2)
        if marker[0] != 0xFF:
            raise ValueError("JPEG marker expected")
        if marker[1] == 0xFF:  # fill byte
            pos += 1
            continue
        if marker[1] in (0xDA, 0xD9):  # start of scan, end of image: the rest is image data
            break
        length = struct.unpack(">H", _at(file, pos + 2, 2))[0]
        stop = pos + 2 + length
        if length < 2 or stop > end:
            raise ValueError("JPEG segment runs past the end")
        body = _at(file, pos + 4, min(stop - pos - 4, len(_JPEG_EXTENDED_XMP)))
        piece, pos = (pos, stop), stop
        if marker[1] == 0xE1 and body.startswith((_JPEG_XMP, _JPEG_EXTENDED_XMP)):
            continue  # the old packet
        # JFIF's APP0 and Exif's APP1 stay first, where readers look for them.
        if not rest and (marker[1] == 0xE0 or (marker[1] == 0xE1 and body.startswith(b"Exif\0"))):
            lead.append(piece)
        else:
            rest.append(piece)
    return [*lead, segment, *rest, (pos, end)]


def _webp(file: IO[bytes], end: int, packet: bytes) -> list[_Piece]:
    riff_end = min(end, 8 + struct.unpack("<I", _at(file, 4, 4))[0])
    chunks: list[tuple[bytes, int, _Piece]] = []  # kind, size, body
    pos = 12
    while pos + 8 <= riff_end:
        kind, size = struct.unpack("<4sI", _at(file, pos, 8))
        if pos + 8 + size > riff_end:
            raise ValueError("WebP chunk runs past the end")
        if kind != b"XMP ":  # the old packet is dropped
            chunks.append((kind, size, (pos + 8, pos + 8 + size)))
        pos += 8 + size + (size & 1)
    first, size, body = chunks[0]
    assert isinstance(body, tuple)
    if first == b"VP8X":
        header = _at(file, body[0], 10)
        chunks[0] = (first, 10, bytes([header[0] | 0x04]) + header[1:])
    else:
        chunks.insert(0, (b"VP8X", 10, _vp8x_for(first, _at(file, body[0], min(size, 10)))))
    chunks.append((b"XMP ", len(packet), packet))
    out: list[_Piece] = []
    for kind, size, body in chunks:
        out += [kind + struct.pack("<I", size), body, b"\0" * (size & 1)]
    riff_size = 4 + sum(8 + size + (size & 1) for _, size, _ in chunks)
    return [b"RIFF" + struct.pack("<I", riff_size) + b"WEBP", *out, (riff_end, end)]


def _vp8x_for(kind: bytes, body: bytes) -> bytes:
    """The extended header a simple WebP needs to carry XMP: its canvas size, and alpha if any."""
    if kind == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", body[6:10]))
        flags = 0x04
    elif kind == b"VP8L" and body[0] == 0x2F:
        bits = struct.unpack("<I", body[1:5])[0]
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        flags = 0x04 | (0x10 if bits >> 28 & 1 else 0)
    else:
        raise ValueError("WebP without a VP8X, VP8 or VP8L header")
    return bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


def _append_bmff(file: IO[bytes], packet: bytes) -> bool:
    """Append the XMP ``uuid`` box; an old one at the end is cut, one elsewhere becomes ``free`` space."""
    end = file.seek(0, os.SEEK_END)
    boxes: list[tuple[int, int, int]] = []  # offset, size, and header size if it is an XMP uuid box
    offset, open_ended = 0, None
    while offset < end:
        file.seek(offset)
        header = file.read(32)
        if len(header) < 8:
            return False
        size, kind = struct.unpack(">I4s", header[:8])
        start = 8
        if size == 1:
            size, start = struct.unpack(">Q", header[8:16])[0], 16
        elif size == 0:  # runs to the end of the file: given its size, or the new box would join it
            size, open_ended = end - offset, offset
        if size < start or offset + size > end or (not boxes and kind not in _BMFF_FIRST):
            return False
        xmp = kind == b"uuid" and header[start : start + 16] == _XMP_UUID
        boxes.append((offset, size, start if xmp else 0))
        offset += size
    if open_ended is not None:
        if end - open_ended > 0xFFFFFFFF:
            return False  # its size would need 8 more bytes inside the file
        file.seek(open_ended)
        file.write(struct.pack(">I", end - open_ended))
    while boxes and boxes[-1][2]:
        end = boxes.pop()[0]
    for offset, size, start in boxes:
        if start:  # blanked too, so no packet scanner finds the old facts
            file.seek(offset + 4)
            file.write(b"free")
            file.seek(offset + start)
            file.write(bytes(size - start))
    file.seek(end)
    file.truncate(end)
    file.write(struct.pack(">I", 24 + len(packet)) + b"uuid" + _XMP_UUID + packet)
    return True
