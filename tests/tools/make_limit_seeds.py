#!/usr/bin/env python3
"""Writes the fuzz seeds that lead to the decoder's limits (limit-* in
tests/fuzz/corpus/<target>/): one input per limit, built by hand from the
formats, each under 4 KB (tests/run.sh fuzzes with -max_len=4096), so that
the fuzzers start at each refusal and mutate around it.

  fuzz_binlog_decode  TABLE_MAPs of more than 4096 columns, of a SET of 65
                      members, of an ENUM of 65536, of a field given twice,
                      of 4096 character columns and their charset pairs; a
                      ROWS event of 4097 columns; compressed events claiming
                      more than 1 GiB, and one inflating to 2 MiB (the
                      buffer grows as it inflates)
  fuzz_payload        an inner event claiming more than 1 GiB (stored, and
                      zstd-compressed by the target), a 5 MiB inner event
                      in two hand-made frames of RLE blocks and a frame
                      asking for a 128 MiB window (both past what the
                      reader keeps between payloads)
  fuzz_binlog_json    a document whose size bounds its text (the target
                      does so for every size divisible by 4) and whose text
                      is longer

Usage: tests/tools/make_limit_seeds.py   (from the repository root)
"""

import struct
import zlib

CORPUS = "tests/fuzz/corpus"

TINY, VARCHAR, LONG_BLOB, STRING, ENUM, SET = 1, 15, 251, 254, 247, 248
WRITE_ROWS_V2, XID = 30, 16
ROWS_KNOB = {"WRITE_ROWS_V2": 3, "WRITE_ROWS_COMPRESSED": 9}


def write(target, name, data):
    assert len(data) <= 4096, (name, len(data))
    with open(f"{CORPUS}/{target}/limit-{name}", "wb") as f:
        f.write(data)


def packed(v):
    if v < 251:
        return bytes([v])
    if v < 1 << 16:
        return b"\xfc" + struct.pack("<H", v)
    if v < 1 << 24:
        return b"\xfd" + struct.pack("<I", v)[:3]
    return b"\xfe" + struct.pack("<Q", v)


def table_map(types, meta, opt=b"", ncols=None):
    """shop.t (table id 77), every column nullable."""
    n = len(types) if ncols is None else ncols
    return (struct.pack("<Q", 77)[:6] + b"\x01\x00" + b"\x04shop\x00" +
            b"\x01t\x00" + packed(n) + bytes(types) + packed(len(meta)) +
            meta + b"\xff" * ((len(types) + 7) // 8) + opt)


def opt_field(kind, value):
    return bytes([kind]) + packed(len(value)) + value


def names(n):
    return packed(n) + b"".join(packed(len(s)) + s for s in
                                (b"m%d" % i for i in range(n)))


def rows_head(width, present=None):
    present = present or b"\xff" * ((width + 7) // 8)
    return (struct.pack("<Q", 77)[:6] + b"\x01\x00" + b"\x02\x00" +
            packed(width) + present)


def pair(rows_type, tmap, rows):
    """fuzz_binlog_decode's pair: knobs, TABLE_MAP length, both bodies."""
    return (bytes([ROWS_KNOB[rows_type]]) + struct.pack("<H", len(tmap)) +
            tmap + rows)


def zblock(data, claim=None):
    """MariaDB's compressed block: 0x84, 4 bytes of length, zlib."""
    claim = len(data) if claim is None else claim
    return b"\x84" + struct.pack(">I", claim) + zlib.compress(data, 9)


def decode_seeds():
    t = "fuzz_binlog_decode"
    one_tiny = table_map([TINY], b"")
    # More columns than a table has, with a few of their types.
    write(t, "columns-4097", pair("WRITE_ROWS_V2",
          table_map([TINY] * 8, b"", ncols=4097), rows_head(1) + b"\x00\x01"))
    write(t, "rows-width-4097", pair("WRITE_ROWS_V2", one_tiny,
          rows_head(4097, b"\x01" + b"\x00" * 512) + b"\x00\x01"))
    # A SET of 65 members; a row with its first and last bits.
    set_map = table_map([STRING], bytes([SET, 8]),
                        opt_field(5, names(65)))
    write(t, "set-65", pair("WRITE_ROWS_V2", set_map, rows_head(1) +
          b"\x00" + struct.pack("<Q", 1 | 1 << 63)))
    # An ENUM of 65536 members, only a few of them there.
    write(t, "enum-65536", pair("WRITE_ROWS_V2", table_map(
          [STRING], bytes([ENUM, 2]), opt_field(6, packed(65536) +
                                                names(3)[1:])),
          rows_head(1) + b"\x00\x01\x00"))
    # 600 VARCHARs, DEFAULT_CHARSET with pairs, then the field again.
    n = 600
    pairs = packed(33) + b"".join(packed(i) + packed(8)
                                  for i in range(n - 1, n - 300, -3))
    cs_map = table_map([VARCHAR] * n, b"\x2c\x01" * n, opt_field(2, pairs))
    write(t, "charset-pairs", pair("WRITE_ROWS_V2", cs_map,
          rows_head(1) + b"\x00"))
    write(t, "charset-twice", pair("WRITE_ROWS_V2", cs_map +
          opt_field(2, packed(8)), rows_head(1) + b"\x00"))
    # A compressed QUERY claiming one byte more than any event (the whole
    # input is fed as a QUERY_COMPRESSED body too).
    write(t, "query-claim", b"\x01\x00\x00\x00" + b"\x00" * 4 + b"\x00" +
          b"\x00\x00" + b"\x00\x00" + b"\x00" +
          zblock(b"COMMIT", claim=(1 << 30) + 1))
    # Compressed rows: a claim past any event, and a 2 MiB LONGBLOB value
    # in one row (its buffer grows from 1 MiB).
    blob_map = table_map([LONG_BLOB], b"\x04")
    write(t, "rows-claim", pair("WRITE_ROWS_COMPRESSED", blob_map,
          rows_head(1) + zblock(b"\x00\x00\x00\x00\x00",
                                claim=(1 << 30) + 1)))
    big = (2 << 20) - 5
    write(t, "rows-inflate-2m", pair("WRITE_ROWS_COMPRESSED", blob_map,
          rows_head(1) + zblock(b"\x00" + struct.pack("<I", big) +
                                b"\x00" * big)))


# zstd frames by hand: magic, no content size, the window; raw and RLE
# blocks (3-byte headers: size << 3 | type << 1 | last).
def frame(window_log, blocks):
    out = struct.pack("<I", 0xFD2FB528) + bytes([0, (window_log - 10) << 3])
    for b in blocks:
        out += b
    return out + struct.pack("<I", 1)[:3]        # empty last raw block


def raw_block(data):
    return struct.pack("<I", len(data) << 3)[:3] + data


def rle_blocks(byte, n):
    out = b""
    while n > 0:
        k = min(n, 128 << 10)
        out += struct.pack("<I", k << 3 | 1 << 1)[:3] + bytes([byte])
        n -= k
    return out


def event_header(type_, size):
    return struct.pack("<IBIIIH", 1700000000, type_, 7, size, 0, 0)


def payload_body(compression, usize, data):
    """The fields (long packed form past 250), the end mark, the data."""
    def field(kind, v):
        return packed(kind) + packed(len(packed(v))) + packed(v)
    head = field(2, compression)
    if compression == 0:
        head += field(3, usize)
    return head + field(1, len(data)) + b"\x00" + data


def payload_seeds():
    t = "fuzz_payload"
    over = event_header(WRITE_ROWS_V2, (1 << 30) + 1) + b"\x00" * 16
    # Byte 0: odd, the rest is events that the target wraps, stored (1)
    # or zstd-compressed (3).
    write(t, "event-over-1g-stored", b"\x01" + over)
    write(t, "event-over-1g-zstd", b"\x03" + over)
    # Byte 0 even: the rest is a payload body as it comes.  5 MiB in
    # two frames, the first 100 bytes short of the event.
    size = 5 << 20
    data = (frame(17, [raw_block(event_header(WRITE_ROWS_V2, size)),
                       rle_blocks(0xab, size - 19 - 100)]) +
            frame(17, [rle_blocks(0xab, 100)]))
    write(t, "event-5m-two-frames", b"\x00" + payload_body(0, size, data))
    data = frame(27, [raw_block(event_header(XID, 27)), rle_blocks(0, 8)])
    write(t, "window-128m", b"\x00" + payload_body(0, 27, data))


def json_seeds():
    # [s, s, s, s] sharing one 40-byte string: 84 bytes, text of 175.
    s = b"x" * 40
    hdr = 4 + 4 * 3
    size = hdr + 1 + len(s)
    doc = (b"\x02" + struct.pack("<HH", 4, size) +
           b"".join(b"\x0c" + struct.pack("<H", hdr) for _ in range(4)) +
           bytes([len(s)]) + s)
    doc += b"\x00" * (-len(doc) % 4)
    assert len(doc) % 4 == 0
    write("fuzz_binlog_json", "text-over-size", doc)


decode_seeds()
payload_seeds()
json_seeds()
