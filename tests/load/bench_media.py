"""Media benchmark (a script, not a test): uploads/s and downloads/s for 100 KB and 5 MB files,
and thumbnail generation time for a 4000x3000 JPEG.

By default it starts its own homeserver (embedded PostgreSQL, rate limits off) in a temporary
folder as a separate process, so client and server do not share a CPU core's GIL:

    python tests/load/bench_media.py
    python tests/load/bench_media.py --set media.store=s3 --set media.s3.bucket=... (any config key)
    python tests/load/bench_media.py --url http://host:8008 --token ACCESS_TOKEN   (an existing server;
                                                                                  its upload rate limit applies)

Results are printed as a Markdown table (see spec/benchmarks.md, section "Media repository").
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from homeserver.services import thumbnailer
from homeserver.services.media import COMMON_THUMBNAILS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def photo_like_jpeg(width: int, height: int) -> bytes:
    """A JPEG with detail everywhere (noise over gradients), so it decodes like a photo."""
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 64)
    im = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


class Server:
    def __init__(self, sets: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="parley-bench-media-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "homeserver", "run", "--data-dir", str(self.dir),
                "--listen", f"127.0.0.1:{self.port}", "--set", "rate_limits.enabled=false",
                "--set", "auth.bcrypt_rounds=4", "--set", "logging.level=WARNING"]
        for item in sets:
            args += ["--set", item]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "server.log", "wb"))  # noqa: SIM115

    async def wait(self) -> None:
        async with httpx.AsyncClient() as c:
            for _ in range(600):
                if self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "server.log").read_text())
                try:
                    await c.get(self.url + "/_matrix/client/versions")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def register(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        r = await c.post("/_matrix/client/v3/register", json={
            "username": "bench" + uuid.uuid4().hex[:6], "password": "bench password",
            "auth": {"type": "m.login.dummy"},
        })
        r.raise_for_status()
        return str(r.json()["access_token"])


async def run_parallel(count: int, concurrency: int, one: Any) -> tuple[float, list[float]]:
    """Run `one(i)` `count` times, `concurrency` at once; (seconds, per-request latencies)."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def bench_transfer(url: str, token: str, size: int, count: int, concurrency: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    base = os.urandom(size)
    uris: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        async def up(i: int) -> None:
            # Distinct bytes per upload, so content de-duplication does not skip the write.
            body = i.to_bytes(8, "big") + base[8:]
            r = await c.post("/_matrix/media/v3/upload", content=body, headers=headers)
            r.raise_for_status()
            uris.append(r.json()["content_uri"])

        up_s, up_lat = await run_parallel(count, concurrency, up)

        async def down(i: int) -> None:
            server_name, media_id = uris[i % len(uris)][len("mxc://"):].split("/")
            r = await c.get(f"/_matrix/client/v1/media/download/{server_name}/{media_id}",
                            headers={"Authorization": f"Bearer {token}"})
            r.raise_for_status()
            assert len(r.content) == size

        down_s, down_lat = await run_parallel(count, concurrency, down)
    return {
        "size": size, "count": count, "concurrency": concurrency,
        "uploads_per_s": count / up_s, "downloads_per_s": count / down_s,
        "upload_p50_ms": statistics.median(up_lat) * 1000, "download_p50_ms": statistics.median(down_lat) * 1000,
        "upload_mb_s": count * size / up_s / 1e6, "download_mb_s": count * size / down_s / 1e6,
    }


def bench_thumbnail_cpu(data: bytes, repeat: int) -> dict[str, float]:
    """Pillow work alone, in this process: the five common sizes from one decode, and one size."""
    specs = list(COMMON_THUMBNAILS)
    all_times, one_times = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        thumbnailer.make_thumbnails(data, specs, 32_000_000)
        all_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        thumbnailer.make_thumbnails(data, [thumbnailer.ThumbnailSpec("scale", 1024, 768, False)], 32_000_000)
        one_times.append(time.perf_counter() - t0)
    return {"common_five_ms": statistics.median(all_times) * 1000,
            "scale_1024x768_ms": statistics.median(one_times) * 1000}


async def bench_thumbnail_http(url: str, token: str, data: bytes, repeat: int) -> dict[str, float]:
    """End to end: upload the JPEG, then time on-demand thumbnails of sizes not made at upload."""
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        t0 = time.perf_counter()
        r = await c.post("/_matrix/media/v3/upload", content=data, headers={**auth, "Content-Type": "image/jpeg"})
        r.raise_for_status()
        upload_ms = (time.perf_counter() - t0) * 1000
        server_name, media_id = r.json()["content_uri"][len("mxc://"):].split("/")
        path = f"/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}"
        fresh, cached = [], []
        for i in range(repeat):
            params = {"width": 1024 + 32 * i, "height": 768 + 32 * i, "method": "scale"}
            t0 = time.perf_counter()
            r = await c.get(path, params=params, headers=auth)
            r.raise_for_status()
            fresh.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = await c.get(path, params=params, headers=auth)
            r.raise_for_status()
            cached.append(time.perf_counter() - t0)
        # A pre-generated size (made in the background after the upload).
        await asyncio.sleep(2)
        t0 = time.perf_counter()
        r = await c.get(path, params={"width": 96, "height": 96, "method": "crop"}, headers=auth)
        r.raise_for_status()
        pregen_ms = (time.perf_counter() - t0) * 1000
    return {"upload_4000x3000_ms": upload_ms, "on_demand_ms": statistics.median(fresh) * 1000,
            "cached_ms": statistics.median(cached) * 1000, "pregenerated_ms": pregen_ms}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="an existing homeserver (default: start one)")
    parser.add_argument("--token", default=None, help="access token for --url (default: register a user)")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="config for the started server")
    parser.add_argument("--small-count", type=int, default=300)
    parser.add_argument("--large-count", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        server = Server(args.sets)
        await server.wait()
        url = server.url
    try:
        token = args.token or await register(url)
        jpeg = photo_like_jpeg(4000, 3000)
        print(f"# media benchmark against {url} ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
        print(f"4000x3000 JPEG: {len(jpeg) / 1e6:.1f} MB")
        print()
        print("| file | uploads/s | upload p50 | upload MB/s | downloads/s | download p50 | download MB/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for size, count in ((100 * 1024, args.small_count), (5 * 1024 * 1024, args.large_count)):
            res = await bench_transfer(url, token, size, count, args.concurrency)
            label = f"{size // 1024} KB" if size < 1024 * 1024 else f"{size // (1024 * 1024)} MB"
            print(f"| {label} x{count}, {args.concurrency} concurrent | {res['uploads_per_s']:.0f} | "
                  f"{res['upload_p50_ms']:.0f} ms | {res['upload_mb_s']:.0f} | {res['downloads_per_s']:.0f} | "
                  f"{res['download_p50_ms']:.0f} ms | {res['download_mb_s']:.0f} |")
        print()
        cpu = bench_thumbnail_cpu(jpeg, args.repeat)
        http = await bench_thumbnail_http(url, token, jpeg, args.repeat)
        print("| thumbnails of a 4000x3000 JPEG | ms |")
        print("| --- | --- |")
        print(f"| Pillow: the five common sizes from one decode (in-process) | {cpu['common_five_ms']:.0f} |")
        print(f"| Pillow: one 1024x768 scale (in-process) | {cpu['scale_1024x768_ms']:.0f} |")
        print(f"| HTTP: upload of the JPEG | {http['upload_4000x3000_ms']:.0f} |")
        print(f"| HTTP: on-demand thumbnail (new size, made and stored) | {http['on_demand_ms']:.0f} |")
        print(f"| HTTP: same thumbnail again (cached) | {http['cached_ms']:.1f} |")
        print(f"| HTTP: pre-generated 96x96 crop | {http['pregenerated_ms']:.1f} |")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
