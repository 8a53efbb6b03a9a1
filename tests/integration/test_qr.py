"""QR codes through the real app: the SVG and the PNG each encode the link's short URL (their modules are
compared with segno's matrix for that URL, the PNG decoded by hand: no imaging library), at the asked
size, with the same access rules as `GET /api/links/{code}`."""

from __future__ import annotations

import asyncio
import re
import struct
import zlib

import pytest
import segno

from redirector.qr import QUIET_ZONE_MODULES, png_scale
from tests.integration.apphelp import ADMIN, make_link, running_app

pytestmark = pytest.mark.redis


def expected_modules(short_url: str) -> list[list[int]]:
    """segno's matrix for the URL, with the quiet zone, 1 = dark."""
    code = segno.make(short_url, error="m", micro=False)
    size = code.symbol_size(scale=1, border=QUIET_ZONE_MODULES)[0]
    grid = [[0] * size for _ in range(size)]
    for y, row in enumerate(code.matrix):
        for x, value in enumerate(row):
            grid[y + QUIET_ZONE_MODULES][x + QUIET_ZONE_MODULES] = 1 if value else 0
    return grid


def png_pixels(png: bytes) -> tuple[int, list[list[int]]]:
    """Width and 0/1 rows (1 = dark) of a grayscale or palette PNG of bit depth 1 or 8, filter 0 or 1/2."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, chunk = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert color_type in (0, 3) and depth in (1, 8) and not interlace
    raw = zlib.decompress(idat)
    stride = (width * depth + 7) // 8
    rows, previous = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(1, stride):
                line[i] = (line[i] + line[i - 1]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        else:
            assert kind == 0, kind
        previous = bytes(line)
        if depth == 1:
            bits = [(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)]
        else:
            bits = [1 if line[x] else 0 for x in range(width)]
        rows.append(bits)
    # Grayscale: 0 is black. segno's palette puts dark first too: index 0 = dark.
    return width, [[1 - b for b in row] for row in rows]


def svg_modules(svg: str, size: int) -> list[list[int]]:
    """The modules an SVG path of segno's (M absolute, m relative, h runs on row y - 0.5) makes dark."""
    grid = [[0] * size for _ in range(size)]
    d = re.search(r'<path class="qrline"[^>]* d="([^"]+)"', svg)[1]  # not the light background's
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", d):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            for column in range(int(x), int(x + float(a))):
                grid[int(y)][column] = 1
            x += float(a)
    return grid


async def creator_key(client, creator_id: str) -> dict:
    response = await client.post("/api/keys", json={"creator_id": creator_id}, headers=ADMIN)
    return {"authorization": f"Bearer {response.json()['key']}"}


def test_svg_and_png_encode_the_short_url(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_app, client):
            link = await make_link(client, "alice", "https://shop.example.com/p/42")
            expected = expected_modules(link["short_url"])
            modules = len(expected)

            svg = await client.get(f"/api/links/{link['code']}/qr.svg", headers=ADMIN)
            assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
            assert svg.headers["cache-control"] == "private, max-age=3600"
            assert '<svg width="400" height="400" ' in svg.text
            assert f'viewBox="0 0 {modules} {modules}"' in svg.text
            assert svg_modules(svg.text, modules) == expected

            for size in (64, 400, 2048, 150):
                png = await client.get(f"/api/links/{link['code']}/qr.png?size={size}", headers=ADMIN)
                assert png.status_code == 200 and png.headers["content-type"] == "image/png"
                width, pixels = png_pixels(png.content)
                scale = png_scale(modules, size)
                assert width == len(pixels) == modules * scale and (width <= size or scale == 1)
                sampled = [[pixels[y * scale + scale // 2][x * scale + scale // 2] for x in range(modules)]
                           for y in range(modules)]  # fmt: skip
                assert sampled == expected, size
            small = await client.get(f"/api/links/{link['code']}/qr.svg?size=64", headers=ADMIN)
            assert '<svg width="64" height="64" ' in small.text

    asyncio.run(scenario())


def test_access_and_bad_sizes(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_app, client):
            link = await make_link(client, "alice", "https://shop.example.com/p/42")
            alice, bob = await creator_key(client, "alice"), await creator_key(client, "bob")
            for kind in ("svg", "png"):
                path = f"/api/links/{link['code']}/qr.{kind}"
                assert (await client.get(path, headers=alice)).status_code == 200
                assert (await client.get(path, headers=bob)).status_code == 403
                assert (await client.get(path)).status_code == 401
                assert (
                    await client.get(f"/api/links/nosuchcode/qr.{kind}", headers=ADMIN)
                ).status_code == 404
                for size in ("63", "2049", "0", "", "abc", "400px", "+400", "4e2", "٤٠٠", "00400", "-1"):
                    response = await client.get(path, params={"size": size}, headers=ADMIN)
                    assert response.status_code == 400, size
                    assert response.json()["error"]["code"] == "bad_size"
            assert (await client.get(f"/api/links/{link['code']}/qr.gif", headers=ADMIN)).status_code == 404

    asyncio.run(scenario())
